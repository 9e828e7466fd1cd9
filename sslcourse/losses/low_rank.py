"""Low-rank (or sparse) penalty on a learned projection, for low-dimensional contrastive embeddings.

Chen, Gong, Li, Yang, Niu, Sugiyama. "Learning Contrastive Embedding in Low-Dimensional
Space." NeurIPS 2022 (CLLR). In high dimension the pairwise distances concentrate: the
ratio (D_max - D_min) / D_min of an anchor's distances tends to 0, and nearest neighbours
stop meaning much. CLLR adds a linear projection z -> W z before the contrastive loss and
regularises W so that it keeps few directions:

    L = L_contrastive(W z) + lambda R(W)
    R(W) = ||W||_{2,1} = sum_i ||W_i,:||_2        sparse: whole rows (output dimensions) go to 0
    R(W) = ||W||_*     = sum_k sigma_k(W)          low rank: the sum of singular values

Both are convex surrogates of "few dimensions" (the number of non-zero rows, the rank),
as the l1 norm is of the number of non-zeros. The copies of the paper this course could
reach held its abstract only: this is the regulariser as the abstract and the syllabus
describe it, with the two norms' textbook definitions; the paper's exact objective (its
weights, where W sits, any reconstruction term) has not been checked.
"""
import torch

from ..utils import check_tensor

KINDS = ("l21", "nuclear")


def low_rank_penalty(weight: torch.Tensor, kind: str = "nuclear") -> torch.Tensor:
    """||W||_{2,1} (sum of row norms, ``kind="l21"``) or ||W||_* (sum of singular values, ``"nuclear"``).

    weight: (out_features, in_features), as ``nn.Linear.weight``: row i makes output dimension i.
    """
    check_tensor(weight, "weight", ndim=2, floating=True)
    if kind == "l21":
        return torch.linalg.vector_norm(weight, dim=1).sum()
    if kind == "nuclear":
        return torch.linalg.svdvals(weight).sum()
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
