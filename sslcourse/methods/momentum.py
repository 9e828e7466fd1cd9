"""The two pieces of MoCo's dictionary (also BYOL's target): a momentum encoder and a FIFO queue.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation
Learning." CVPR 2020, Sec. 3.2:

    theta_k <- m theta_k + (1 - m) theta_q        (eq. 2, m = 0.999)

The key encoder follows the query encoder slowly, so the keys in the queue, encoded by
the last few hundred versions of it, stay consistent with one another. The queue holds
the keys of the last K / N batches: the dictionary size K is decoupled from the batch size N.
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import check_tensor


def momentum_copy(online: nn.Module) -> nn.Module:
    """A frozen copy of ``online`` to be moved by :func:`momentum_update` (no gradients)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """theta_target <- m theta_target + (1 - m) theta_online, in place; buffers (BN statistics) are copied."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    for p_target, p_online in zip(target.parameters(), online.parameters(), strict=True):
        p_target.mul_(momentum).add_(p_online.detach(), alpha=1.0 - momentum)
    for b_target, b_online in zip(target.buffers(), online.buffers(), strict=True):
        b_target.copy_(b_online)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule (Grill et al. 2020, Sec. 3.2): m rises from ``base`` to 1 as training ends."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def enqueue(queue: torch.Tensor, pointer: int, keys: torch.Tensor) -> int:
    """Write ``keys`` (N, D) into the ring buffer ``queue`` (K, D) from ``pointer``, wrapping
    around its end, overwriting the oldest keys; return the next pointer."""
    check_tensor(keys, "keys", ndim=2, floating=True)
    size, n = queue.shape[0], keys.shape[0]
    if keys.shape[1] != queue.shape[1]:
        raise ValueError(f"keys must be (N, {queue.shape[1]}) like the queue, got {tuple(keys.shape)}")
    if n > size:
        raise ValueError(f"a batch of {n} keys does not fit a queue of {size}; use a queue at least as large "
                         f"as the batch")
    slots = (pointer + torch.arange(n, device=queue.device)) % size
    queue[slots] = keys.detach().to(queue.dtype)
    return int((pointer + n) % size)


class Queue(nn.Module):
    """MoCo's dictionary of negative keys: K l2-normalised vectors, oldest overwritten first.

    Starts with random unit vectors, as MoCo's code does, so the first batches have negatives.
    """

    def __init__(self, size: int, dim: int, enqueue_fn=enqueue):
        """``enqueue_fn(queue, pointer, keys) -> next pointer`` writes the keys; lab 06 passes the student's own."""
        super().__init__()
        if not isinstance(size, int) or size < 1 or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"queue size and dim must be positive integers, got size={size!r}, dim={dim!r}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))   # (K, D)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.enqueue_fn = enqueue_fn

    def push(self, keys: torch.Tensor) -> None:
        self.pointer.fill_(self.enqueue_fn(self.keys, int(self.pointer), F.normalize(keys.detach(), dim=1)))
