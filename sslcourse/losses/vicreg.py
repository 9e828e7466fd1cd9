"""VICReg: variance, invariance and covariance terms on two views' embeddings.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning." ICLR 2022, eqs. (1)-(6). For a batch Z of N embeddings in D
dimensions (z^j: its column j),

    v(Z)     = (1/D) sum_j max(0, gamma - S(z^j, eps)),   S(x, eps) = sqrt(Var(x) + eps)     (1)
    C(Z)     = 1/(N-1) sum_i (z_i - zbar)(z_i - zbar)^T                                    (3)
    c(Z)     = (1/D) sum_{i != j} C(Z)_ij^2                                                (4)
    s(Z, Z') = mean squared difference of z_i and z'_i                                     (5)
    L = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]                             (6)

with gamma = 1, eps = 1e-4, Var the unbiased variance, and the paper's weights
lambda = mu = 25, nu = 1. The variance term keeps every dimension's std above gamma (no
collapse to a point), the covariance term decorrelates the dimensions (no collapse to a
subspace), and the invariance term pulls the two views together.

Two details follow the paper's pseudo-code (Algorithm 1), for which those weights were
tuned: s is ``F.mse_loss``, the mean over all N x D entries (eq. (5) as printed sums over
the D dimensions, which would make it D times larger); and v is summed over the two
branches, as in eq. (6) (the authors' released code halves it).
Variances need a batch statistic: N >= 2.
"""
import torch
import torch.nn.functional as F

from ..utils import check_weight
from .similarity import check_pair

GAMMA, EPS = 1.0, 1e-4


def variance_term(z: torch.Tensor) -> torch.Tensor:
    """v(Z) of eq. (1): mean hinge on the per-dimension std of z (N, D)."""
    std = (z.var(dim=0) + EPS).sqrt()                                      # (D,), unbiased variance
    return F.relu(GAMMA - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) of eq. (4): sum of squared off-diagonal covariances of z (N, D), divided by D."""
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)                                    # (D, D)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
           cov_weight: float = 1.0) -> torch.Tensor:
    """lambda s(z1, z2) + mu [v(z1) + v(z2)] + nu [c(z1) + c(z2)] for (N, D) views, N >= 2.

    ``sim_weight``, ``var_weight`` and ``cov_weight`` are the paper's lambda, mu and nu;
    each must be >= 0 (0 switches a term off, for ablations).
    """
    check_pair(z1, z2, min_batch=2)
    for value, name in ((sim_weight, "sim_weight"), (var_weight, "var_weight"), (cov_weight, "cov_weight")):
        check_weight(value, name)
    invariance = F.mse_loss(z1, z2)
    variance = variance_term(z1) + variance_term(z2)
    covariance = covariance_term(z1) + covariance_term(z2)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance
