"""What a computation costs: seconds per call and forward FLOPs.

The benchmarks and the lectures' cost figures measure with these, side by side in one run:
``best_seconds`` interleaves the cases round by round and keeps each one's best round, so
that a slow moment of a shared machine (another process, a CPU frequency change) does not
decide the comparison. On a GPU, work is asynchronous, so the clock is read after
``torch.cuda.synchronize()``.
"""
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .utils import check_dim


def _synchronize(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], calls: int = 1, warmup: int = 1, device=None) -> float:
    """Mean wall-clock seconds of ``calls`` calls of ``fn()``, after ``warmup`` untimed calls."""
    calls = check_dim(calls, "calls")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a number of calls >= 0, got {warmup!r}")
    for _ in range(warmup):
        fn()
    _synchronize(device)
    tic = time.perf_counter()
    for _ in range(calls):
        fn()
    _synchronize(device)
    return (time.perf_counter() - tic) / calls


def best_seconds(cases: dict, rounds: int = 3, calls: int = 1, warmup: int = 1, device=None) -> dict:
    """``{name: fn}`` -> ``{name: best seconds per call over rounds}``; the cases take turns in each round."""
    if not cases or not all(callable(fn) for fn in cases.values()):
        raise ValueError(f"cases must map names to functions of no argument, got {cases!r}")
    rounds = check_dim(rounds, "rounds")
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], seconds_per_call(fn, calls, warmup, device))
    return best


def forward_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn()``, counted by ``torch.utils.flop_counter``
    (matrix products and convolutions; an elementwise operation counts as zero)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
