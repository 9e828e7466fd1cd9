"""The objectives of learning from a renderer's free labels across two domains.

Ren, Lee. "Cross-Domain Self-supervised Multi-task Feature Learning using Synthetic Imagery."
CVPR 2018, eq. 1-3; Ganin, Lempitsky. "Unsupervised Domain Adaptation by Backpropagation." ICML 2015.

    L = w_mask L_mask + w_depth L_depth + w_count L_count + L_domain(d(R_lambda(f(x))), domain)

on the labelled (synthetic, clean) images x_s for the three tasks, and on both domains for
the domain term. Each task loss here matches its target's kind:

    L_mask   binary cross-entropy of each cell's logit against the fraction of the cell an object covers
    L_depth  binary cross-entropy of "object i is in front of object j", over the labelled pairs only
    L_count  cross-entropy over the counts 1..K (class count - 1)
    L_domain binary cross-entropy of "this feature comes from the shifted domain"

The paper regresses dense depth, surface normals and edges with L2/L1 losses and trains its
discriminator with a least-squares GAN loss in alternating steps; here the targets are the
world's (coarse mask, depth order, count) and the adversary is Ganin's gradient reversal.
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def mask_loss(logits: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """(N, cells, cells) logits and coverage fractions in [0, 1] -> mean binary cross-entropy."""
    check_tensor(logits, "logits", floating=True)
    if coverage.shape != logits.shape:
        raise ValueError(f"coverage must have the logits' shape {tuple(logits.shape)}, got {tuple(coverage.shape)}")
    if ((coverage < 0) | (coverage > 1)).any():
        raise ValueError("coverage must hold fractions in [0, 1]")
    return F.binary_cross_entropy_with_logits(logits, coverage.to(logits.dtype))


def depth_order_loss(logits: torch.Tensor, front: torch.Tensor) -> torch.Tensor:
    """(N, P) logits of "i in front of j" per object pair, and (N, P) labels in {1, 0, -1 = no label}
    -> mean binary cross-entropy over the labelled pairs (0, with a gradient, when none is labelled)."""
    check_tensor(logits, "logits", ndim=2, floating=True)
    if front.shape != logits.shape or front.is_floating_point() or ((front < -1) | (front > 1)).any():
        raise ValueError(f"front must be integers in {{-1, 0, 1}} of shape {tuple(logits.shape)}, "
                         f"got {front.dtype} {tuple(front.shape)}")
    labelled = front >= 0
    if not labelled.any():
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits[labelled], front[labelled].to(logits.dtype))


def count_loss(logits: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """(N, K) logits over the counts 1..K and (N,) counts in 1..K -> mean cross-entropy."""
    check_tensor(logits, "logits", ndim=2, floating=True)
    if count.shape != logits.shape[:1] or count.is_floating_point() or (count < 1).any() \
            or (count > logits.shape[1]).any():
        raise ValueError(f"count must be ({len(logits)},) integers in 1..{logits.shape[1]}, "
                         f"got {count.dtype} {tuple(count.shape)}")
    return F.cross_entropy(logits, count - 1)


def domain_loss(logits: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """(M,) discriminator logits and (M,) domains (0 = clean/source, 1 = shifted/target) -> mean BCE."""
    check_tensor(logits, "logits", ndim=1, floating=True)
    if domain.shape != logits.shape or ((domain != 0) & (domain != 1)).any():
        raise ValueError(f"domain must be 0/1 of shape {tuple(logits.shape)}, got {tuple(domain.shape)}")
    return F.binary_cross_entropy_with_logits(logits, domain.to(logits.dtype))
