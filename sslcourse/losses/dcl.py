"""Decoupled contrastive loss: NT-Xent without the positive in the denominator.

Yeh, Hong, Hsu, Liu, Chen, LeCun. "Decoupled Contrastive Learning." ECCV 2022, Sec. 3:

    L_i = -s(z_i, z_i+) / tau + log  sum_{k != i, i+} exp(s(z_i, z_k) / tau)

with s the cosine similarity. In NT-Xent the gradient of every term is scaled by
1 - p(positive): an easy positive (p near 1) switches learning off, which is why NT-Xent
needs large batches. Removing the positive from the denominator removes that factor
(the "negative-positive coupling"), so DCL learns with small batches. Averaged, as NT-Xent,
over the 2N anchors (the authors' code sums the two directions: twice this value).

DCLW also weighs each positive term by w_i = 2 - exp(s_i / sigma) / mean_j exp(s_j / sigma),
with s_i the similarity of pair i (sigma = 0.5): pairs that are far apart count more.
The paper's temperature is 0.1.
"""
import torch

from ..utils import check_positive
from .debiased import two_view_logits


def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, sigma: float | None = None) -> torch.Tensor:
    """Mean decoupled loss over the 2N anchors; ``z1[i]`` and ``z2[i]`` are views of image i.

    z1, z2: (N, D) embeddings, N >= 2. ``sigma`` (e.g. 0.5) turns on DCLW's weighting. The loss
    can be negative: without the positive, the log-ratio is no longer a probability.
    """
    positive, negatives = two_view_logits(z1, z2, temperature)      # (2N,), (2N, 2N-2), cosine / t
    if sigma is not None:
        sigma = check_positive(sigma, "sigma")
        cosine = positive * temperature                              # (2N,); each pair appears twice
        positive = positive * (2 - len(cosine) * torch.softmax(cosine / sigma, dim=0))
    return (-positive + torch.logsumexp(negatives, dim=1)).mean()
