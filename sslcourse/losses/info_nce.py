"""InfoNCE for a query, its positive key and a queue of negative keys.

van den Oord, Li, Vinyals. "Representation Learning with Contrastive Predictive Coding."
2018, eq. (4); in the dictionary form of He et al. "Momentum Contrast for Unsupervised
Visual Representation Learning." CVPR 2020, eq. (1):

    L_q = -log  exp(q . k+ / tau) / (exp(q . k+ / tau) + sum_{k-} exp(q . k- / tau))

a (K+1)-way softmax classification of the positive key, whose logit sits at index 0.
"""
import torch
import torch.nn.functional as F

from ..utils import check_positive, check_tensor
from .similarity import check_pair


def info_nce_logits(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
                    temperature: float = 0.07) -> torch.Tensor:
    """(N, 1 + K) logits, the positive first; inputs are l2-normalised here."""
    check_pair(query, key)
    check_tensor(queue, "queue", ndim=2, floating=True)
    if queue.shape[1] != query.shape[1]:
        raise ValueError(f"queue must be (K, D) with D={query.shape[1]} like the query, got {tuple(queue.shape)}")
    tau = check_positive(temperature, "temperature")
    q, k, negatives = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(queue, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)                # (N, 1)
    negative = q @ negatives.T                                  # (N, K)
    return torch.cat([positive, negative], dim=1) / tau


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor,
             temperature: float = 0.07) -> torch.Tensor:
    """Mean InfoNCE over N queries. query, key: (N, D); queue: (K, D) negatives.

    MoCo's default temperature is 0.07. Keys carry no gradient in MoCo; this function
    does not detach them, so that it also serves symmetric objectives.
    """
    logits = info_nce_logits(query, key, queue, temperature)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
