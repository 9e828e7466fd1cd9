"""Cosine similarity and the input checks every objective shares."""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def check_pair(z1, z2, min_batch: int = 1) -> None:
    """Two (N, D) float embeddings of the same shape with N >= ``min_batch``."""
    check_tensor(z1, "z1", ndim=2, floating=True)
    check_tensor(z2, "z2", ndim=2, floating=True)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < min_batch:
        raise ValueError(f"need a batch of at least {min_batch} pairs, got N={z1.shape[0]}")


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D) x (M, D) -> (N, M) matrix of cosine similarities a_i . b_j / (|a_i| |b_j|)."""
    check_tensor(a, "a", ndim=2, floating=True)
    check_tensor(b, "b", ndim=2, floating=True)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must share the feature dimension, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
