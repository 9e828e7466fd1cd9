"""Barlow Twins: make the cross-correlation of two views' embeddings the identity.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction." ICML 2021, eqs. (1)-(2). With z^A, z^B (N, D) the embeddings of
two views of the same N images, each centred along the batch,

    C_ij = sum_b z^A_bi z^B_bj / ( sqrt(sum_b (z^A_bi)^2) sqrt(sum_b (z^B_bj)^2) )     (2)
    L    = sum_i (1 - C_ii)^2  +  lambda sum_i sum_{j != i} C_ij^2                        (1)

C is the (D, D) matrix of Pearson correlations between dimension i of one view and
dimension j of the other. The first term (invariance) makes each dimension agree across
the views; the second (redundancy reduction) decorrelates the dimensions, so the
embedding cannot collapse to a constant or to a few directions. The paper's lambda is
5e-3 (Sec. 4, for D = 8192).

As in the authors' code (a BatchNorm without affine parameters), each dimension is
standardised with its batch mean and biased variance plus ``eps``:

    zn = (z - mean) / sqrt(var + eps),    C = zn^A^T zn^B / N

which is eq. (2) up to ``eps``. Defined behaviour on a constant (zero-variance)
dimension: it standardises to 0, so its C_ii = 0 and it costs (1 - 0)^2 = 1, the value
of a dimension uncorrelated across views. Its gradient is finite (of order 1/sqrt(eps))
and pulls it towards the other view's dimension; if both views' dimension is constant, the
gradient is 0, as at any exact collapse.
Correlations need a batch statistic: N >= 2.
"""
import torch

from ..utils import check_positive
from .similarity import check_pair
from ..utils import check_weight


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(N, D) -> (N, D), each column with batch mean 0 and (biased) variance var / (var + eps)."""
    centred = z - z.mean(dim=0)
    return centred / (centred.pow(2).mean(dim=0) + eps).sqrt()


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The (D, D) cross-correlation matrix C of eq. (2) between two (N, D) embeddings, N >= 2."""
    check_pair(z1, z2, min_batch=2)
    eps = check_positive(eps, "eps")
    return standardize(z1, eps).T @ standardize(z2, eps) / z1.shape[0]     # (D, D)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2 for z1, z2: (N, D) views of N images, N >= 2.

    ``lambd`` (the paper's lambda, 5e-3; >= 0) weighs redundancy reduction against invariance;
    ``eps`` (BatchNorm's 1e-5) keeps a constant dimension finite (see the module docstring).
    """
    c = cross_correlation(z1, z2, eps)                                     # (D, D)
    lambd = check_weight(lambd, "lambd")
    on_diagonal = (1 - c.diagonal()).pow(2).sum()
    off_diagonal = c.pow(2).sum() - c.diagonal().pow(2).sum()
    return on_diagonal + lambd * off_diagonal
