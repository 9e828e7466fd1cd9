"""sslcourse.profiling: the measurements behind the benchmarks and the lectures' cost figures."""
import time

import pytest
import torch
from torch import nn

from sslcourse.profiling import best_seconds, forward_flops, seconds_per_call


def test_forward_flops_counts_a_matrix_product_and_a_linear_layer():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert forward_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    layer = nn.Linear(16, 32)
    assert forward_flops(lambda: layer(a)) == 2 * 8 * 16 * 32
    assert forward_flops(lambda: a + 1) == 0          # elementwise work is not counted


def test_seconds_per_call_skips_the_warmup_and_averages_the_calls():
    durations = iter([0.2, 0.01, 0.03])             # a slow first call (warm-up), then two timed ones

    def fn():
        time.sleep(next(durations))

    seconds = seconds_per_call(fn, calls=2, warmup=1)
    assert 0.019 <= seconds < 0.1, seconds


def test_best_seconds_keeps_each_case_best_round_and_interleaves_the_cases():
    order, slow_first = [], iter([0.05, 0.005])

    def a():
        order.append("a")
        time.sleep(next(slow_first))

    def b():
        order.append("b")

    best = best_seconds({"a": a, "b": b}, rounds=2, calls=1, warmup=0)
    assert order == ["a", "b", "a", "b"]
    assert best["a"] < 0.04 and best["b"] < best["a"]


@pytest.mark.parametrize("kwargs,message", [({"calls": 0}, "calls"), ({"warmup": -1}, "warmup"),
                                            ({"calls": 1.5}, "calls")])
def test_seconds_per_call_rejects_bad_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        seconds_per_call(lambda: None, **kwargs)


def test_best_seconds_rejects_bad_cases():
    with pytest.raises(ValueError, match="cases"):
        best_seconds({})
    with pytest.raises(ValueError, match="cases"):
        best_seconds({"x": 3})
    with pytest.raises(ValueError, match="rounds"):
        best_seconds({"x": lambda: None}, rounds=0)
