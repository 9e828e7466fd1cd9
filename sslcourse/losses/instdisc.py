"""Instance discrimination: every image is its own class, recognised against a memory bank.

Wu, Xiong, Yu, Lin. "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination." CVPR 2018.

Each image i has a feature f_i = f(x_i) on the unit sphere (128-d) and an entry v_i in a
memory bank V of all n training images (the entry is f_i as computed the last time image i
was visited). The non-parametric softmax (Sec. 3.1, eq. 2) classifies f_i among all n instances:

    P(i | f_i) = exp(v_i . f_i / tau) / sum_{j=1..n} exp(v_j . f_i / tau),     tau = 0.07
    J = -sum_i log P(i | f_i)

For n in the millions the sum is too costly, so noise-contrastive estimation (Sec. 3.2)
turns it into n binary problems, data (the entry v_i) against m noise entries v_j drawn
uniformly, P_n = 1/n (m = 4096):

    P(i | v) = exp(v . f_i / tau) / Z,      Z ~ n E_j[exp(v_j . f_i / tau)]   (Monte Carlo)
    h(i, v)  = P(i | v) / (P(i | v) + m P_n)
    J_NCE    = -log h(i, v_i) - sum_{k=1..m} log(1 - h(i, v_jk))     averaged over the batch

h is a sigmoid of log P(i | v) - log(m / n), so both terms are softplus: stable for any tau.
The paper estimates Z once, at the first iteration, and keeps it; here ``normalizer=None``
estimates it on each batch from that batch's noise (no gradient), and the method
(``sslcourse.methods.instdisc``) fixes it at the first step as the paper does.
"""
import math

import torch
import torch.nn.functional as F

from ..utils import check_positive, check_tensor


def _check_bank_inputs(features, index, bank) -> None:
    check_tensor(features, "features", ndim=2, floating=True)
    check_tensor(bank, "bank", ndim=2, floating=True)
    check_tensor(index, "index", ndim=1)
    if bank.shape[1] != features.shape[1]:
        raise ValueError(f"bank must be (n, D) with D={features.shape[1]} like the features, "
                         f"got {tuple(bank.shape)}")
    if index.shape[0] != features.shape[0]:
        raise ValueError(f"index must hold one bank position per feature ({features.shape[0]}), "
                         f"got shape {tuple(index.shape)}")
    _check_positions(index, "index", len(bank))


def _check_positions(index, name: str, n: int) -> None:
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer tensor of bank positions, got dtype {index.dtype}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise ValueError(f"{name} must hold positions in [0, {n}) of the bank, got values in "
                         f"[{int(index.min())}, {int(index.max())}]")


def nonparametric_softmax(features: torch.Tensor, index: torch.Tensor, bank: torch.Tensor,
                          temperature: float = 0.07) -> torch.Tensor:
    """Mean of -log P(i | f_i) over the batch, the full softmax of eq. (2).

    features: (N, D), l2-normalised here; index: (N,) each image's row in ``bank``;
    bank: (n, D) memory of unit vectors (kept unit length by its refresh).
    """
    _check_bank_inputs(features, index, bank)
    tau = check_positive(temperature, "temperature")
    logits = F.normalize(features, dim=1) @ bank.T / tau          # (N, n): v_j . f_i / tau
    return F.cross_entropy(logits, index)


def nce_normalizer(features: torch.Tensor, bank: torch.Tensor, noise_index: torch.Tensor,
                   temperature: float = 0.07) -> torch.Tensor:
    """Z ~ n E_j[exp(v_j . f / tau)], the mean over the batch and its m noise entries; no gradient.

    features: (N, D); noise_index: (N, m) bank rows drawn uniformly.
    """
    check_tensor(features, "features", ndim=2, floating=True)
    check_tensor(noise_index, "noise_index", ndim=2)
    _check_positions(noise_index, "noise_index", len(bank))
    tau = check_positive(temperature, "temperature")
    with torch.no_grad():
        noise = torch.einsum("nmd,nd->nm", bank[noise_index], F.normalize(features, dim=1)) / tau
        return len(bank) * noise.exp().mean()


def instdisc_nce(features: torch.Tensor, index: torch.Tensor, bank: torch.Tensor, noise_index: torch.Tensor,
                 temperature: float = 0.07, normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """J_NCE averaged over the batch: the positive entry against m uniform noise entries.

    features: (N, D), l2-normalised here; index: (N,) each image's row in ``bank`` (n, D);
    noise_index: (N, m) noise rows, drawn uniformly by the caller from its generator.
    ``normalizer``: the constant Z; None estimates it from this batch (:func:`nce_normalizer`).
    """
    _check_bank_inputs(features, index, bank)
    check_tensor(noise_index, "noise_index", ndim=2)
    if noise_index.shape[0] != features.shape[0]:
        raise ValueError(f"noise_index must be (N, m) with N={features.shape[0]}, got {tuple(noise_index.shape)}")
    _check_positions(noise_index, "noise_index", len(bank))
    tau = check_positive(temperature, "temperature")
    if normalizer is None:
        normalizer = nce_normalizer(features, bank, noise_index, tau)
    elif not isinstance(normalizer, torch.Tensor):
        normalizer = check_positive(normalizer, "normalizer")
    n, m = bank.shape[0], noise_index.shape[1]
    f = F.normalize(features, dim=1)                                             # (N, D)
    positive = (bank[index] * f).sum(dim=1) / tau                                # (N,)   v_i . f_i / tau
    noise = torch.einsum("nmd,nd->nm", bank[noise_index], f) / tau               # (N, m) v_j . f_i / tau
    # Z is large (n times a mean of exponentials): its log at least in float32, also under bf16 autocast.
    log_z = torch.log(torch.as_tensor(normalizer, dtype=torch.promote_types(f.dtype, torch.float32),
                                      device=f.device))
    log_m_pn = math.log(m / n)                                                   # log(m P_n)
    # log h = -softplus(log m P_n - log P), log(1 - h) = -softplus(log P - log m P_n)
    data_term = F.softplus(log_m_pn - (positive - log_z))                       # (N,)
    noise_term = F.softplus((noise - log_z) - log_m_pn).sum(dim=1)               # (N,)
    return (data_term + noise_term).mean()
