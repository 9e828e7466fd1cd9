"""A 1-D toy world for sequence models: noisy sums of sinusoids whose frequencies are the class.

Class c is a pair of frequencies; a signal of class c is

    x(t) = a_1 sin(2 pi f_1 t / L + phi_1) + a_2 sin(2 pi f_2 t / L + phi_2) + sigma eps(t)

with random amplitudes a in [0.5, 1.5], phases phi in [0, 2 pi), a small random detuning of
each frequency and white Gaussian noise. Each frequency is shared by several classes, so
one frequency alone does not give the class: a model must hear both. Signals are generated
in a blink from a seed, so a lecture can show CPC (``sslcourse.methods.cpc``) learning on
sequences in seconds.
"""
import itertools
import math
from dataclasses import dataclass

import torch

# Cycles per signal length; distinct enough for a 256-sample signal to resolve them.
FREQUENCIES = (3.0, 5.0, 8.0, 12.0, 18.0)


@dataclass
class Signals:
    signals: torch.Tensor          # (N, 1, L) float32
    labels: torch.Tensor           # (N,) int64
    classes: list                  # class c -> its (f_1, f_2) in cycles per signal

    def __len__(self):
        return len(self.labels)


def make_signals(n: int, length: int = 256, noise: float = 0.5, detune: float = 0.03, seed: int = 0) -> Signals:
    """``n`` signals of ``length`` samples, classes equally frequent (10 pairs of FREQUENCIES).

    ``noise``: standard deviation of the white noise; ``detune``: relative frequency jitter.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 8:
        raise ValueError(f"length must be an integer >= 8, got {length!r}")
    if not 0 <= noise < math.inf or not 0 <= detune < 1:
        raise ValueError(f"noise must be >= 0 and detune in [0, 1), got noise={noise!r}, detune={detune!r}")
    g = torch.Generator().manual_seed(seed)
    classes = list(itertools.combinations(FREQUENCIES, 2))
    labels = torch.arange(n) % len(classes)
    labels = labels[torch.randperm(n, generator=g)]
    freqs = torch.tensor(classes)[labels]                                       # (N, 2)
    freqs = freqs * (1 + detune * (2 * torch.rand(n, 2, generator=g) - 1))
    amplitude = 0.5 + torch.rand(n, 2, 1, generator=g)                          # (N, 2, 1)
    phase = 2 * math.pi * torch.rand(n, 2, 1, generator=g)
    t = torch.arange(length, dtype=torch.float32) / length                      # (L,)
    waves = amplitude * torch.sin(2 * math.pi * freqs[:, :, None] * t + phase)  # (N, 2, L)
    x = waves.sum(dim=1, keepdim=True) + noise * torch.randn(n, 1, length, generator=g)
    return Signals(x.float(), labels, classes)
