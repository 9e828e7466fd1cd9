"""BYOL's and SimSiam's objective: bring a prediction p towards a target z, by angle only.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot,
Kavukcuoglu, Munos, Valko. "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning." NeurIPS 2020, eq. (2):

    L(p, z) = || p / |p| - z / |z| ||^2 = 2 - 2 cos(p, z)

Chen and He. "Exploring Simple Siamese Representation Learning." CVPR 2021, eq. (1):

    D(p, z) = - cos(p, z)

The two differ by an affine map, L = 2 + 2 D, so they give the same gradients up to a
factor 2. Both average over the batch; both are symmetrised by the method, which swaps
the views: L(p1, z2) + L(p2, z1) for BYOL, D(p1, z2) / 2 + D(p2, z1) / 2 for SimSiam.
Neither loss detaches z: the stop-gradient on the target is the method's business
(``z.detach()``), so that a lecture can remove it and watch the outputs collapse.

There are no negatives, so nothing here needs more than one pair: N = 1 is allowed.
A zero vector has no direction; it is given cosine 0 with everything (the convention
of ``F.normalize``, which divides by max(|x|, 1e-12)).
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def check_prediction_target(p, z) -> None:
    """p and z: (N, D) float tensors of the same shape, N >= 1."""
    check_tensor(p, "p", ndim=2, floating=True)
    check_tensor(z, "z", ndim=2, floating=True)
    if p.shape != z.shape:
        raise ValueError(f"p and z must have the same shape (N, D), got {tuple(p.shape)} and {tuple(z.shape)}")
    if p.shape[0] < 1:
        raise ValueError(f"need a batch of at least 1 pair, got N={p.shape[0]}")


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D = -(1/N) sum_i cos(p_i, z_i), in [-1, 1]; p: predictions, z: targets, (N, D)."""
    check_prediction_target(p, z)
    cosine = (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)   # (N,)
    return -cosine.mean()


def byol(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's (1/N) sum_i || p_i/|p_i| - z_i/|z_i| ||^2 = 2 - 2 cos, in [0, 4]; p, z: (N, D)."""
    return 2 + 2 * negative_cosine(p, z)
