"""Debiased contrastive loss: correcting for the negatives that share the anchor's class.

Chuang, Robinson, Lin, Torralba, Jegelka. "Debiased Contrastive Learning." NeurIPS 2020,
Sec. 3, with one positive (M = 1). In-batch "negatives" are drawn from all the data, so a
fraction tau+ of them (the class prior) are in fact of the anchor's class. With N negatives
u_j and the positive v, the negative term N E[e^{s(x, u)}] is replaced by an estimate of
the sum over true negatives only:

    g = max( (1/N sum_j e^{s(x, u_j) / t} - tau+ e^{s(x, v) / t}) / (1 - tau+),  e^{-1/t} )
    L = -log  e^{s(x, v) / t} / (e^{s(x, v) / t} + N g)

with s the cosine similarity. The clamp keeps the estimate at or above its smallest
possible value (every cosine >= -1). In a SimCLR batch of B images each of the 2B anchors
has N = 2(B - 1) negatives. The paper's CIFAR-10 values: t = 0.5, tau+ = 0.1.

With tau+ = 0, g is the plain mean of the negatives and L is NT-Xent exactly: the positive
stays in the denominator (compare the decoupled loss, ``dcl``, which removes it).
"""
import math

import torch
import torch.nn.functional as F

from ..utils import check_positive
from .similarity import check_pair


def two_view_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine / t of each of the 2N anchors with its positive, (2N,), and its 2(N-1) negatives, (2N, 2N-2).

    Anchor i < N is z1[i], anchor N + i is z2[i]; the negatives of an anchor are every other
    embedding but itself and its positive, in their original order.
    """
    check_pair(z1, z2, min_batch=2)
    tau = check_positive(temperature, "temperature")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                      # (2N, D)
    logits = z @ z.T / tau                                           # (2N, 2N)
    rows = torch.arange(2 * n, device=z.device)
    partner = (rows + n) % (2 * n)                                   # i <-> i + N
    positive = logits[rows, partner]                                 # (2N,)
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[rows, rows] = False
    keep[rows, partner] = False
    return positive, logits[keep].view(2 * n, 2 * n - 2)


def check_tau_plus(tau_plus) -> float:
    if isinstance(tau_plus, bool) or not isinstance(tau_plus, (int, float)) or not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus (the class prior) must be a number in [0, 1), got {tau_plus!r}")
    return float(tau_plus)


def debiased_negatives(mean_negative: torch.Tensor, positive: torch.Tensor, n_negatives: int,
                       temperature: float, tau_plus: float) -> torch.Tensor:
    """N g: the estimated sum of e^{s/t} over true negatives, from their (weighted) mean and the positive."""
    estimate = (mean_negative - tau_plus * positive) / (1 - tau_plus)
    return n_negatives * estimate.clamp(min=math.exp(-1 / temperature))


def debiased_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                     tau_plus: float = 0.1) -> torch.Tensor:
    """Mean debiased loss over the 2N anchors; ``z1[i]`` and ``z2[i]`` are views of image i.

    z1, z2: (N, D) embeddings, N >= 2; ``tau_plus`` in [0, 1) is the assumed class prior.
    """
    tau_plus = check_tau_plus(tau_plus)
    positive, negatives = two_view_logits(z1, z2, temperature)      # (2N,), (2N, 2N-2)
    positive, negatives = positive.exp(), negatives.exp()
    n_neg = negatives.shape[1]
    total_negative = debiased_negatives(negatives.mean(dim=1), positive, n_neg, temperature, tau_plus)
    return -torch.log(positive / (positive + total_negative)).mean()
