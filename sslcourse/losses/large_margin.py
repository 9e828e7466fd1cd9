"""Distance polarisation: push every pairwise distance out of an ambiguous band.

Chen, Niu, Gong, Li, Yang, Sugiyama. "Large-Margin Contrastive Learning with Distance
Polarization Regularizer." ICML 2021 (LMCL). A contrastive loss pushes apart every pair
that is not a positive, including pairs of the same class, and its optimum can put a pair
at any distance: intra- and inter-class distances overlap in a middle band. In metric
learning, good embeddings have a gap there (small intra-class, large inter-class
distances), so LMCL adds a regulariser that is zero outside a band (delta+, delta-) and
positive inside it:

    d_ij = ||u_i - u_j||^2 / 4 = (1 - cos(z_i, z_j)) / 2  in [0, 1]      u = z / ||z||
    R(z) = mean_{i<j}  max(0, d_ij - delta+) * max(0, delta- - d_ij)
    L = L_contrastive + lambda R

Inside the band the penalty is a downward parabola, so its gradient pushes a distance to
the nearer edge: near pairs become nearer (a cluster), far pairs farther, a margin of
delta- - delta+ opens between them. Pairs outside the band are left to the contrastive loss.

Provenance. The copies of the paper this course could reach held its abstract only, so
this form (a product of two hinges, zero outside the band) follows the abstract's and the
syllabus's description; it has not been checked against the paper's equation. The band
(0.2, 0.4), cosines between 0.6 and 0.2, is this course's choice for the world.
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def distance_polarization(z: torch.Tensor, delta_plus: float = 0.2, delta_minus: float = 0.4) -> torch.Tensor:
    """Mean polarisation penalty over the N(N-1)/2 pairs of rows of z: (N, D), N >= 2 (normalised here).

    0 <= delta_plus < delta_minus <= 1 bound the ambiguous band of normalised distances.
    """
    check_tensor(z, "z", ndim=2, floating=True)
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings to form a pair, got N={z.shape[0]}")
    for value, name in ((delta_plus, "delta_plus"), (delta_minus, "delta_minus")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1] (a normalised distance), got {value!r}")
    if not delta_plus < delta_minus:
        raise ValueError(f"need delta_plus < delta_minus, got {delta_plus!r} and {delta_minus!r}")
    u = F.normalize(z, dim=1)
    distance = (1 - u @ u.T) / 2                                     # (N, N), in [0, 1]
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    d = distance[i, j]                                               # (N(N-1)/2,) each pair once
    return ((d - delta_plus).clamp(min=0) * (delta_minus - d).clamp(min=0)).mean()
