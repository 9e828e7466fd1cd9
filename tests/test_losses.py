"""Each objective against a slow loop over the paper's equation, plus gradients and bad input."""
import math

import pytest
import torch

from sslcourse.losses import cosine_similarity_matrix, info_nce, info_nce_logits, nt_xent


def cos(a, b):
    return float(a @ b) / (a.norm().item() * b.norm().item())


def nt_xent_reference(z1, z2, tau):
    """Chen et al. 2020, eq. (1), one anchor at a time, in plain Python arithmetic."""
    z = list(z1.double()) + list(z2.double())
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        numerator = math.exp(cos(z[i], z[j]) / tau)
        denominator = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


def info_nce_reference(q, k, queue, tau):
    total = 0.0
    for qi, ki in zip(q.double(), k.double()):
        positive = math.exp(cos(qi, ki) / tau)
        negatives = sum(math.exp(cos(qi, kn) / tau) for kn in queue.double())
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.5), (5, 8, 0.1), (16, 4, 1.0), (7, 32, 2.0)])
def test_nt_xent_matches_loop_reference(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(nt_xent_reference(z1, z2, tau), rel=1e-5)


def test_nt_xent_gradient_matches_double_precision_autograd():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 5, generator=g, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(6, 5, generator=g, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.3), (z1, z2))


def test_nt_xent_is_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)
    assert nt_xent(3 * z1, 0.5 * z2).item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-5)


def test_nt_xent_bounds():
    """Identical views far from each other: loss near its minimum; random views: near log(2N - 1)."""
    n = 4
    z = torch.eye(n) * 10
    low = nt_xent(z, z, temperature=0.05).item()
    assert low < 1e-6
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(512, 256, generator=g), torch.randn(512, 256, generator=g)
    assert nt_xent(z1, z2, temperature=1.0).item() == pytest.approx(math.log(2 * 512 - 1), rel=0.01)


@pytest.mark.parametrize("k", [1, 4, 50])
def test_info_nce_matches_loop_reference(k):
    g = torch.Generator().manual_seed(k)
    q, key, queue = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(k, 8, generator=g)
    assert info_nce(q, key, queue, 0.07).item() == pytest.approx(info_nce_reference(q, key, queue, 0.07), rel=1e-5)
    logits = info_nce_logits(q, key, queue, 0.07)
    assert logits.shape == (5, 1 + k)
    assert torch.allclose(logits[:, 0], torch.nn.functional.cosine_similarity(q, key) / 0.07, atol=1e-5)


def test_info_nce_gradient():
    g = torch.Generator().manual_seed(3)
    args = [torch.randn(s, 6, generator=g, dtype=torch.double, requires_grad=True) for s in (4, 4, 9)]
    assert torch.autograd.gradcheck(lambda q, k, queue: info_nce(q, k, queue, 0.2), args)


def test_cosine_similarity_matrix():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g)
    s = cosine_similarity_matrix(a, b)
    assert s.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert s[i, j].item() == pytest.approx(cos(a[i], b[j]), abs=1e-6)


@pytest.mark.parametrize("call,message", [
    (lambda: nt_xent(torch.randn(1, 4), torch.randn(1, 4)), "at least 2"),
    (lambda: nt_xent(torch.randn(3, 4), torch.randn(3, 5)), "same shape"),
    (lambda: nt_xent(torch.randn(3, 4, 2), torch.randn(3, 4, 2)), "2 dimensions"),
    (lambda: nt_xent(torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long)), "floating"),
    (lambda: nt_xent(torch.randn(3, 4), torch.randn(3, 4), temperature=0), "temperature"),
    (lambda: nt_xent(torch.randn(3, 4), torch.randn(3, 4), temperature=float("nan")), "temperature"),
    (lambda: nt_xent([[1.0]], [[1.0]]), "torch.Tensor"),
    (lambda: info_nce(torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 3)), "queue"),
    (lambda: info_nce(torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4), temperature=-1), "temperature"),
    (lambda: cosine_similarity_matrix(torch.randn(3, 4), torch.randn(3, 5)), "feature dimension"),
])
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
