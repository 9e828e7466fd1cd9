"""Deep InfoMax: a global summary of an image against the local features of the same and other images.

Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler, Bengio. "Learning Deep
Representations by Mutual Information Estimation and Maximization." ICLR 2019.

An encoder gives an M x M map of local features C^(i) (the receptive field of each sees a
patch) and, further up, a global vector y = E(x). A score T(C^(i), y), here a dot product
of the two (after small heads, the paper's "encoder-and-dot" architecture), is pushed up
for the locations i of the same image and down for those of other images. Two estimators
of the local mutual information, averaged over the M^2 locations (Sec. 3.1, 3.2):

    infoNCE:  E[ T(C_i(x), y(x)) - log sum_{x' in {x} u negatives} exp T(C_i(x'), y(x)) ]
    JSD:      E_P[ -softplus(-T(C_i(x), y(x))) ] - E_{P x P~}[ softplus(T(C_i(x'), y(x))) ]

The losses below are their negatives. For the infoNCE of image n at location i, the
negatives are the local features of the other N - 1 images at all locations, as in the
authors' code. The paper's prior-matching term (an adversary on y) is left out.
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor

ESTIMATORS = ("infonce", "jsd")


def deep_infomax(global_features: torch.Tensor, local_features: torch.Tensor,
                 estimator: str = "infonce") -> torch.Tensor:
    """Local DIM loss. global_features: (N, D), y per image; local_features: (N, D, H, W), C per location.

    N >= 2: the other images are the negatives.
    """
    check_tensor(global_features, "global_features", ndim=2, floating=True)
    check_tensor(local_features, "local_features", ndim=4, floating=True)
    n, dim = global_features.shape
    if local_features.shape[:2] != (n, dim):
        raise ValueError(f"local_features must be (N, D, H, W) with N={n}, D={dim} like global_features, "
                         f"got {tuple(local_features.shape)}")
    if n < 2:
        raise ValueError(f"need a batch of at least 2 images (the others are the negatives), got N={n}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    scores = torch.einsum("nd,mdl->nml", global_features, local_features.flatten(2))  # (N, N, HW): y_n . C_l(x_m)
    same = torch.eye(n, dtype=torch.bool, device=scores.device)[:, :, None]           # (N, N, 1)
    positive = scores.diagonal(dim1=0, dim2=1).T                                       # (N, HW)
    if estimator == "jsd":
        negative = scores.masked_select(~same.expand_as(scores))                       # (N (N-1) HW,)
        return F.softplus(-positive).mean() + F.softplus(negative).mean()
    negative = scores.masked_fill(same, float("-inf")).flatten(1)                      # (N, N HW)
    log_sum_negative = negative.logsumexp(dim=1, keepdim=True)                         # (N, 1)
    return (torch.logaddexp(positive, log_sum_negative) - positive).mean()
