"""Contrastive multiview coding: each view of an image must pick out the other view of it.

Tian, Krishnan, Isola. "Contrastive Multiview Coding." ECCV 2020.

Two views of the same scene (e.g. the L and the ab channels of an image) go through two
encoders f_1, f_2; a pair (v1_i, v2_i) is positive, (v1_i, v2_j) with j != i negative.
With scores h(v1, v2) = exp(f_1(v1) . f_2(v2) / tau) on the unit sphere (Sec. 3.1, 3.2):

    L^{V1,V2} = -E[ log h(v1_i, v2_i) / sum_j h(v1_i, v2_j) ]     anchor in view 1, candidates in view 2
    L(V1, V2) = L^{V1,V2} + L^{V2,V1}

Negatives come from the other view only (unlike NT-Xent, which also contrasts within a
view). The paper draws 16,384 negatives from a memory bank per view, with NCE or the
full softmax; here they are the batch's other images.
"""
import torch
import torch.nn.functional as F

from ..utils import check_positive
from .similarity import check_pair


def cmc(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """L^{V1,V2} + L^{V2,V1}, each a mean over the batch. z1, z2: (N, D), row i of both from image i.

    N >= 2. The paper's temperature is 0.07.
    """
    check_pair(z1, z2, min_batch=2)
    tau = check_positive(temperature, "temperature")
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / tau     # (N, N): view-1 i vs view-2 j
    positive = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, positive) + F.cross_entropy(logits.T, positive)
