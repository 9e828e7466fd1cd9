"""Metric learning before InfoNCE: DrLIM's margin loss on pairs and FaceNet's triplet loss.

Hadsell, Chopra, LeCun. "Dimensionality Reduction by Learning an Invariant Mapping."
CVPR 2006, eq. (4), with D = ||G(x1) - G(x2)||_2 the Euclidean distance of the embeddings:

    L = (1 - Y) 1/2 D^2  +  Y 1/2 max(0, m - D)^2        Y = 0: similar pair, Y = 1: dissimilar

Similar pairs are pulled together; dissimilar pairs are pushed apart until they are m
apart, and then left alone: without the margin, pushing would never stop.

Schroff, Kalenichenko, Philbin. "FaceNet: A Unified Embedding for Face Recognition and
Clustering." CVPR 2015, Sec. 3.1, on embeddings on the unit sphere, ||f(x)||_2 = 1:

    L = max(0, ||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha)      alpha = 0.2

The anchor must be closer to its positive than to its negative by the margin alpha.
Both papers sum over pairs or triplets; here the loss is their mean, so that the learning
rate does not depend on the batch size.
"""
import torch
import torch.nn.functional as F

from ..utils import check_positive, check_tensor
from .similarity import check_pair


def contrastive_margin(x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean DrLIM loss over N pairs. x1, x2: (N, D) embeddings, not normalised; same: (N,) bool or 0/1,
    True where x1[i] and x2[i] are similar (the paper's Y = 1 - same)."""
    check_pair(x1, x2)
    m = check_positive(margin, "margin")
    check_tensor(same, "same", ndim=1)
    if same.shape[0] != x1.shape[0]:
        raise ValueError(f"same must be (N,) with N={x1.shape[0]} like x1, got shape {tuple(same.shape)}")
    if not ((same == 0) | (same == 1)).all():
        raise ValueError("same must hold only 0/1 or False/True (1: similar pair, 0: dissimilar)")
    similar = same.to(x1.dtype)
    distance = torch.linalg.vector_norm(x1 - x2, dim=1)              # D, (N,); its gradient at D = 0 is 0
    return (similar * distance.pow(2) / 2 + (1 - similar) * (m - distance).clamp(min=0).pow(2) / 2).mean()


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Mean FaceNet triplet loss over N triplets of (N, D) embeddings, l2-normalised here as in the paper."""
    check_pair(anchor, positive)
    check_tensor(negative, "negative", ndim=2, floating=True)
    if negative.shape != anchor.shape:
        raise ValueError(f"negative must have the anchor's shape {tuple(anchor.shape)}, got {tuple(negative.shape)}")
    alpha = check_positive(margin, "margin")
    a, p, n = (F.normalize(x, dim=1) for x in (anchor, positive, negative))
    to_positive = (a - p).pow(2).sum(dim=1)                         # (N,)
    to_negative = (a - n).pow(2).sum(dim=1)                         # (N,)
    return (to_positive - to_negative + alpha).clamp(min=0).mean()
