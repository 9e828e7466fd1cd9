"""The gradient reversal layer: identity going forward, -lambda times the gradient going back.

Ganin, Lempitsky. "Unsupervised Domain Adaptation by Backpropagation." ICML 2015, eq. 9-10:

    R_lambda(x) = x                        forward
    dR_lambda / dx = -lambda I             backward

Put between a feature extractor f and a domain classifier d, one backward pass trains d to
tell the domains apart (it gets the plain gradient of its loss) and f to make them
indistinguishable (it gets the reversed one): the min-max of adversarial training without
alternating steps. The paper grows lambda from 0 to 1 over training (Sec. 5.2.2),

    lambda_p = 2 / (1 + exp(-gamma p)) - 1,    gamma = 10, p = training progress in [0, 1]

so that early, noisy discriminator gradients do not disturb the features (``dann_lambda``).
"""
import math

import torch


class GradientReversal(torch.autograd.Function):
    """``GradientReversal.apply(x, lambda_)``: returns x; its gradient is -lambda_ times the incoming one."""

    @staticmethod
    def forward(ctx, x, lambda_):
        ctx.lambda_ = lambda_
        return x.view_as(x)               # a new tensor object, so autograd records this node

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.lambda_ * grad_output, None     # no gradient for lambda_


def _check_lambda(value, name="lambda_"):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """R_lambda(x): the identity on ``x`` (any shape), with the gradient reversed and scaled by ``lambda_`` >= 0."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return GradientReversal.apply(x, _check_lambda(lambda_))


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The paper's schedule 2 / (1 + exp(-gamma p)) - 1: 0 at p = 0, 0.987 at p = 0.5, -> 1."""
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 1:
        raise ValueError(f"progress must be a number in [0, 1], got {progress!r}")
    gamma = _check_lambda(gamma, "gamma")
    return 2 / (1 + math.exp(-gamma * progress)) - 1
