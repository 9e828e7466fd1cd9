"""SwAV: swapped prediction of cluster codes, balanced by Sinkhorn-Knopp.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments." NeurIPS 2020, eqs. (1)-(5) and Alg. 1.

Each view's normalised embedding z is scored against K learnable prototypes c_k:
scores = z C (B, K). A view's code q (B, K) is a soft assignment of each image to the
prototypes, computed from the scores without gradient, under the constraint that the
prototypes are used equally in the batch (equipartition, eq. (3)-(4)):

    max_Q  Tr(Q^T C^T Z) + eps H(Q)   over   Q >= 0,  Q 1_B = 1_K / K,  Q^T 1_K = 1_B / B

Its solution (eq. (5)) is diag(u) exp(C^T Z / eps) diag(v), where u and v come from a few
Sinkhorn-Knopp iterations: alternately normalise the rows (prototypes) and the columns
(images) of exp(scores / eps). The paper uses eps = 0.05 and 3 iterations. Without the
constraint, the trivial solution puts every image in one cluster.

The swapped prediction (eq. (1)-(2)) predicts one view's code from another view's scores,
with p = softmax(scores / tau), tau = 0.1:

    L = - mean over global views s, views v != s, images b of  sum_k q_s[b, k] log p_v[b, k]

Codes come from the global (full-resolution) views only; the small multi-crop views
(Sec. 3.2) only predict. That is the paper's code: each global view's loss averages over
the V - 1 other views, then over the global views.
"""
import math

import torch

from ..utils import check_positive, check_tensor


def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Equal-partition soft codes (B, K) of prototype scores (B, K), without gradient.

    Each row sums to 1 (a distribution over prototypes); each column sums to about B / K
    (every prototype used equally), exactly in the limit of many iterations. Computed in
    log space, which is Alg. 1 of the paper up to rounding and never overflows exp(scores / eps).
    """
    check_tensor(scores, "scores", ndim=2, floating=True)
    if scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (B, K) with B, K >= 1, got shape {tuple(scores.shape)}")
    epsilon = check_positive(epsilon, "epsilon")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    b, k = scores.shape
    with torch.no_grad():
        log_q = scores.detach().to(torch.promote_types(scores.dtype, torch.float32)).T / epsilon  # (K, B)
        for _ in range(iterations):
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(k)  # each prototype: mass 1/K
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(b)  # each image: mass 1/B
        return (log_q + math.log(b)).exp().T.to(scores.dtype)                         # (B, K), rows sum to 1


def swav(scores, codes, temperature: float = 0.1) -> torch.Tensor:
    """Swapped-prediction cross-entropy; ``scores``: V tensors (B, K), one per view, global
    views first; ``codes``: the S <= V global views' codes (B, K) (from :func:`sinkhorn`).

    Every pair (s, v != s) counts once: the mean over S (V - 1) pairs and the B images of
    -sum_k codes[s][b, k] log softmax(scores[v][b] / temperature)[k]. V >= 2.
    """
    if not isinstance(scores, (list, tuple)) or not isinstance(codes, (list, tuple)):
        raise TypeError(f"scores and codes must be lists of (B, K) tensors, one per view, got "
                        f"{type(scores).__name__} and {type(codes).__name__}")
    if len(scores) < 2:
        raise ValueError(f"swapped prediction needs at least 2 views' scores, got {len(scores)}")
    if not 1 <= len(codes) <= len(scores):
        raise ValueError(f"need between 1 and {len(scores)} codes (one per global view, global views first), "
                         f"got {len(codes)}")
    for name, tensors in (("scores", scores), ("codes", codes)):
        for i, t in enumerate(tensors):
            check_tensor(t, f"{name}[{i}]", ndim=2, floating=True)
            if t.shape != scores[0].shape:
                raise ValueError(f"every view's scores and codes must have the shape of scores[0] "
                                 f"{tuple(scores[0].shape)} (B, K), got {name}[{i}] of shape {tuple(t.shape)}")
    tau = check_positive(temperature, "temperature")
    log_p = [torch.log_softmax(s / tau, dim=1) for s in scores]            # V x (B, K)
    losses = [-(q * log_p[v]).sum(dim=1).mean()                            # one (s, v) pair
              for s, q in enumerate(codes) for v in range(len(scores)) if v != s]
    return torch.stack(losses).mean()
