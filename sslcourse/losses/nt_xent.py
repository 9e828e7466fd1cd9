"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of
Visual Representations." ICML 2020, eq. (1).

For a batch of N images, two views give 2N embeddings. For a positive pair (i, j),

    l(i, j) = -log  exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau)

with sim the cosine similarity. The loss averages l over all 2N anchors, so each
anchor has one positive and 2(N - 1) negatives: the other images' views.
"""
import torch
import torch.nn.functional as F

from ..utils import check_positive
from .similarity import check_pair


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors; ``z1[i]`` and ``z2[i]`` are views of image i.

    z1, z2: (N, D) embeddings, N >= 2 (with one image there are no negatives).
    SimCLR's default temperature is 0.5 for CIFAR-10 (0.1 with LARS on ImageNet).
    """
    check_pair(z1, z2, min_batch=2)
    tau = check_positive(temperature, "temperature")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                 # (2N, D) on the unit sphere
    logits = z @ z.T / tau                                      # (2N, 2N) cosine / tau
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))       # k != i in the denominator
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # i <-> i + N
    return F.cross_entropy(logits, positive)
