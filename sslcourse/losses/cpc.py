"""Contrastive predictive coding: predict future latents from a context, contrast them with others.

van den Oord, Li, Vinyals. "Representation Learning with Contrastive Predictive Coding." 2018.

An encoder maps a sequence to latents z_t, an autoregressive model summarises z_{<=t} into
a context c_t, and a linear map W_k per step ahead k = 1..K scores a candidate z by

    f_k(z, c_t) = exp(z . W_k c_t)                                         (eq. 3, no temperature)
    L_k = -E[ log f_k(z_{t+k}, c_t) / sum_{z_j in Z} f_k(z_j, c_t) ]        (eq. 4, InfoNCE)

Here Z holds the true z_{t+k} and, as negatives, the latents k steps after every other
position of every sequence in the batch (B (T - k) - 1 of them). The loss is the mean of
L_k over k (the paper sums them: the same up to the factor K).
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def cpc(context: torch.Tensor, latents: torch.Tensor, predictors) -> torch.Tensor:
    """Mean over k of InfoNCE for predicting z_{t+k} with W_k c_t.

    context: (B, T, C), c_t from z_{<=t} only; latents: (B, T, D);
    predictors: K callables (e.g. ``nn.Linear(C, D, bias=False)``), the k-th maps c_t to a
    prediction of z_{t+k} (..., C) -> (..., D). Needs T > K and at least 2 candidates per k.
    """
    check_tensor(context, "context", ndim=3, floating=True)
    check_tensor(latents, "latents", ndim=3, floating=True)
    if context.shape[:2] != latents.shape[:2]:
        raise ValueError(f"context (B, T, C) and latents (B, T, D) must share B and T, "
                         f"got {tuple(context.shape)} and {tuple(latents.shape)}")
    batch, steps, dim = latents.shape
    k_max = len(predictors)
    if k_max < 1:
        raise ValueError("predictors must hold at least one W_k (k = 1..K)")
    if steps <= k_max or batch * (steps - k_max) < 2:
        raise ValueError(f"predicting {k_max} steps ahead needs T > {k_max} and B (T - K) >= 2 candidates, "
                         f"got B={batch}, T={steps}")
    losses = []
    for k, predict in enumerate(predictors, start=1):
        prediction = predict(context[:, :-k])                             # (B, T-k, D)  W_k c_t
        if prediction.shape != (batch, steps - k, dim):
            raise ValueError(f"predictor {k} must map (B, T, C) to (B, T, {dim}), "
                             f"got {tuple(prediction.shape)}")
        target = latents[:, k:].reshape(-1, dim)                          # (B (T-k), D)  z_{t+k}
        logits = prediction.reshape(-1, dim) @ target.T                   # (B (T-k), B (T-k))
        positive = torch.arange(len(logits), device=logits.device)        # z_{t+k} of the same (b, t)
        losses.append(F.cross_entropy(logits, positive))
    return torch.stack(losses).mean()
