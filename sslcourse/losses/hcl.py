"""Hard negative sampling: the debiased loss, with negatives weighted by how close they are.

Robinson, Chuang, Sra, Jegelka. "Contrastive Learning with Hard Negative Samples." ICLR 2021,
Sec. 3. Negatives are drawn from q_beta(u) ~ e^{beta s(x, u)} p(u) restricted to
the other classes: the closer to the anchor, the more a negative counts. In a batch, this is
importance sampling of the N in-batch negatives with weights w_j ~ e^{beta s_j / t},

    E_q[e^{s/t}] ~ sum_j w_j e^{s(x, u_j) / t} / sum_j w_j
    g = max( (E_q[e^{s/t}] - tau+ e^{s(x, v) / t}) / (1 - tau+),  e^{-1/t} )
    L = -log  e^{s(x, v) / t} / (e^{s(x, v) / t} + N g)

followed by the debiasing of Chuang et al. 2020 (``debiased.py``) with class prior tau+.
beta = 0 weighs all negatives equally: the debiased loss. As in the authors' code, beta
multiplies s / t (the paper's equation writes e^{beta s}; its reported beta values are the
code's). CIFAR-10 values: t = 0.5, beta = 1.0, tau+ = 0.1.
"""
import math

import torch

from .debiased import check_tau_plus, debiased_negatives, two_view_logits


def hcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, beta: float = 1.0,
        tau_plus: float = 0.1) -> torch.Tensor:
    """Mean hard-negative loss over the 2N anchors; ``z1[i]`` and ``z2[i]`` are views of image i.

    z1, z2: (N, D) embeddings, N >= 2; ``beta`` >= 0 sets how hard; ``tau_plus`` in [0, 1).
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta (the hardness) must be a finite number >= 0, got {beta!r}")
    tau_plus = check_tau_plus(tau_plus)
    positive, negatives = two_view_logits(z1, z2, temperature)      # (2N,), (2N, 2N-2), cosine / t
    weights = torch.softmax(beta * negatives, dim=1)                 # w_j / sum w, each row sums to 1
    hard_mean = (weights * negatives.exp()).sum(dim=1)               # E_q[e^{s/t}], (2N,)
    positive = positive.exp()
    total_negative = debiased_negatives(hard_mean, positive, negatives.shape[1], temperature, tau_plus)
    return -torch.log(positive / (positive + total_negative)).mean()
