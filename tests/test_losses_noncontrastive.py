"""BYOL / SimSiam, SwAV with Sinkhorn-Knopp, Barlow Twins and VICReg: each against a slow loop
over its paper's equation (values and gradients, float64), invariances, edge cases (a batch of
1 or 2, zero variance, identical views) and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from sslcourse.losses import barlow_twins, byol, cross_correlation, negative_cosine, sinkhorn, swav, vicreg


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.double)


def leaves(*shapes, seed=0):
    return [randn(*shape, seed=seed + i).requires_grad_() for i, shape in enumerate(shapes)]


def assert_same_value_and_gradients(value, expected, inputs):
    assert value.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)
    for got, want in zip(torch.autograd.grad(value, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def whitened(n, d, seed=0):
    """(n, d) with every column of batch mean 0 and biased variance 1, and columns uncorrelated."""
    x = randn(n, d, seed=seed)
    q, _ = torch.linalg.qr(x - x.mean(dim=0))      # orthonormal columns, still centred
    return q * math.sqrt(n)


# ---- references: one image, dimension or entry at a time, in scalar torch arithmetic ----

def norm(v):
    return sum(x * x for x in v) ** 0.5


def negative_cosine_reference(p, z):
    """Chen and He 2021, eq. (1): D(p, z) = -p/|p| . z/|z|, averaged over the batch."""
    total = 0
    for pi, zi in zip(p, z):
        total = total - sum(a * b for a, b in zip(pi, zi)) / (norm(pi) * norm(zi))
    return total / len(p)


def byol_reference(p, z):
    """Grill et al. 2020, eq. (2): || p/|p| - z/|z| ||^2, averaged over the batch."""
    total = 0
    for pi, zi in zip(p, z):
        total = total + sum((a / norm(pi) - b / norm(zi)) ** 2 for a, b in zip(pi, zi))
    return total / len(p)


def correlation_reference(za, zb, eps):
    """Zbontar et al. 2021, eq. (2), on batch-centred columns; eps inside the norms as the BN of their code."""
    n, d = za.shape
    columns = []
    for z in (za, zb):
        centred = [[z[b, i] - sum(z[c, i] for c in range(n)) / n for b in range(n)] for i in range(d)]
        scale = [(sum(x * x for x in col) / n + eps) ** 0.5 for col in centred]
        columns.append((centred, scale))
    (a, sa), (b, sb) = columns
    return [[sum(a[i][k] * b[j][k] for k in range(n)) / (n * sa[i] * sb[j]) for j in range(d)] for i in range(d)]


def barlow_twins_reference(za, zb, lambd, eps=1e-5):
    """Eq. (1): sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2."""
    c = correlation_reference(za, zb, eps)
    d = len(c)
    return (sum((1 - c[i][i]) ** 2 for i in range(d))
            + lambd * sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j))


def vicreg_reference(za, zb, lam, mu, nu, gamma=1.0, eps=1e-4):
    """Bardes et al. 2022, eqs. (1)-(6), with s the mean over the N x D entries (their Algorithm 1)."""
    n, d = za.shape
    invariance = sum((za[b, i] - zb[b, i]) ** 2 for b in range(n) for i in range(d)) / (n * d)
    variance = covariance = 0
    for z in (za, zb):
        mean = [sum(z[b, i] for b in range(n)) / n for i in range(d)]
        cov = [[sum((z[b, i] - mean[i]) * (z[b, j] - mean[j]) for b in range(n)) / (n - 1) for j in range(d)]
               for i in range(d)]
        variance = variance + sum(torch.clamp(gamma - (cov[j][j] + eps) ** 0.5, min=0) for j in range(d)) / d
        covariance = covariance + sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return lam * invariance + mu * variance + nu * covariance


def sinkhorn_reference(scores, epsilon, iterations):
    """Caron et al. 2020, Alg. 1, with Python floats: Q = exp(scores / eps)^T (K, B), then
    alternately rows sum to 1/K and columns to 1/B, and finally Q * B, transposed back."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(float(scores[i][j]) / epsilon) for i in range(b)] for j in range(k)]
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        q = [[x / sum(row) / k for x in row] for row in q]
        columns = [sum(q[j][i] for j in range(k)) for i in range(b)]
        q = [[q[j][i] / columns[i] / b for i in range(b)] for j in range(k)]
    return torch.tensor([[q[j][i] * b for j in range(k)] for i in range(b)], dtype=torch.double)


def swav_reference(scores, codes, tau):
    """Eq. (1)-(2): for each global view s and other view v, - sum_k q_s log softmax(x_v / tau), averaged."""
    total, pairs = 0, 0
    for s, q in enumerate(codes):
        for v, x in enumerate(scores):
            if v == s:
                continue
            for b in range(len(x)):
                log_normaliser = torch.log(sum(torch.exp(x[b, j] / tau) for j in range(x.shape[1])))
                total = total - sum(q[b, j] * (x[b, j] / tau - log_normaliser) for j in range(x.shape[1])) / len(x)
            pairs += 1
    return total / pairs


def prototype_scores(b, k, d=16, seed=0):
    """Cosines between b normalised embeddings and k normalised prototypes, as SwAV computes them."""
    z, c = F.normalize(randn(b, d, seed=seed), dim=1), F.normalize(randn(k, d, seed=seed + 1), dim=1)
    return z @ c.T


# ---- BYOL and SimSiam ------------------------------------------------------------------

@pytest.mark.parametrize("n,d", [(1, 3), (2, 5), (7, 4)])
def test_byol_and_negative_cosine_match_loop_references(n, d):
    p, z = leaves((n, d), (n, d), seed=n)
    assert_same_value_and_gradients(negative_cosine(p, z), negative_cosine_reference(p, z), [p, z])
    assert_same_value_and_gradients(byol(p, z), byol_reference(p, z), [p, z])


def test_byol_is_two_plus_twice_negative_cosine_and_invariant_to_positive_scaling():
    p, z = randn(6, 8, seed=1), randn(6, 8, seed=2)
    assert byol(p, z).item() == pytest.approx(2 + 2 * negative_cosine(p, z).item(), rel=1e-12)
    row_scales = torch.rand(6, 1, generator=torch.Generator().manual_seed(3), dtype=torch.double) * 5 + 0.1
    for loss in (byol, negative_cosine):
        assert loss(row_scales * p, 3.0 * z).item() == pytest.approx(loss(p, z).item(), rel=1e-12)
    # a negative scale flips the direction: cos -> -cos
    assert byol(-p, z).item() == pytest.approx(4 - byol(p, z).item(), rel=1e-12)


def test_byol_and_negative_cosine_bounds_and_zero_vectors():
    z = randn(4, 3)
    assert negative_cosine(z, z).item() == pytest.approx(-1.0)
    assert byol(z, 2 * z).item() == pytest.approx(0.0, abs=1e-12)
    assert byol(z, -z).item() == pytest.approx(4.0)
    # a zero vector has no direction: it counts as cosine 0, a finite, defined value
    zero = torch.zeros(4, 3, dtype=torch.double)
    assert negative_cosine(zero, z).item() == 0.0
    assert byol(zero, z).item() == pytest.approx(2.0)


def test_negative_cosine_does_not_stop_the_gradient_to_the_target():
    """The method detaches the target, not the loss: a lecture removes the stop-gradient there."""
    p, z = leaves((3, 4), (3, 4))
    grad_p, grad_z = torch.autograd.grad(negative_cosine(p, z), [p, z])
    assert grad_p.abs().sum() > 0 and grad_z.abs().sum() > 0


# ---- Barlow Twins ------------------------------------------------------------------------

@pytest.mark.parametrize("n,d,lambd", [(2, 3, 5e-3), (5, 4, 0.1), (9, 6, 1.0)])
def test_barlow_twins_matches_loop_reference(n, d, lambd):
    z1, z2 = leaves((n, d), (n, d), seed=10 + n)
    assert_same_value_and_gradients(barlow_twins(z1, z2, lambd), barlow_twins_reference(z1, z2, lambd), [z1, z2])


def test_cross_correlation_is_the_pearson_correlation_of_eq_2():
    z1, z2 = randn(50, 4, seed=4), randn(50, 4, seed=5)
    c = cross_correlation(z1, z2, eps=1e-12)
    pearson = torch.corrcoef(torch.cat([z1, z2], dim=1).T)[:4, 4:]   # rows: z1's dims, columns: z2's
    torch.testing.assert_close(c, pearson, rtol=1e-9, atol=1e-9)
    assert barlow_twins(z1, z2, 0.3, eps=1e-12).item() == pytest.approx(
        barlow_twins_reference(z1, z2, 0.3, eps=0.0).item(), rel=1e-9)


def test_barlow_twins_is_invariant_to_per_dimension_scale_and_shift_and_to_permutations():
    z1, z2 = randn(16, 5, seed=6), randn(16, 5, seed=7)
    g = torch.Generator().manual_seed(8)
    scale1, scale2 = [torch.rand(5, generator=g, dtype=torch.double) * 3 + 0.5 for _ in range(2)]
    shift1, shift2 = [torch.randn(5, generator=g, dtype=torch.double) * 10 for _ in range(2)]
    base = barlow_twins(z1, z2, 0.1).item()
    assert barlow_twins(scale1 * z1 + shift1, scale2 * z2 + shift2, 0.1).item() == pytest.approx(base, rel=1e-4)
    perm = torch.randperm(5, generator=g)
    assert barlow_twins(z1[:, perm], z2[:, perm], 0.1).item() == pytest.approx(base, rel=1e-12)
    assert barlow_twins(z2, z1, 0.1).item() == pytest.approx(base, rel=1e-12)


def test_barlow_twins_is_zero_for_identical_decorrelated_views_and_penalises_redundancy():
    z = whitened(8, 4)
    assert barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-8)
    redundant = torch.cat([z[:, :2], z[:, :2]], dim=1)    # dims 2-3 copy dims 0-1: 4 off-diagonal ones
    assert barlow_twins(redundant, redundant, lambd=0.5).item() == pytest.approx(0.5 * 4, rel=1e-4)


def test_barlow_twins_zero_variance_dimension_has_a_defined_finite_value_and_gradient():
    z1, z2 = leaves((6, 3), (6, 3), seed=20)
    constant = torch.cat([z1[:, :2], torch.full((6, 1), 2.5, dtype=torch.double)], dim=1)
    loss = barlow_twins(constant, z2, 0.1)
    assert torch.isfinite(loss)
    assert_same_value_and_gradients(loss, barlow_twins_reference(constant, z2, 0.1), [z1, z2])
    # the constant dimension standardises to 0: its row of C is 0, so it costs (1 - C_22)^2 = 1 and nothing off-diagonal
    c = cross_correlation(constant, z2)
    assert torch.equal(c[2], torch.zeros(3, dtype=torch.double))
    others = (1 - c.diagonal()[:2]).pow(2).sum() + 0.1 * (c[:2].pow(2).sum() - c.diagonal()[:2].pow(2).sum())
    assert loss.item() == pytest.approx(others.item() + 1.0, rel=1e-12)
    column = torch.full((6, 1), 2.5, dtype=torch.double, requires_grad=True)
    grads = torch.autograd.grad(barlow_twins(torch.cat([z1[:, :2], column], dim=1), z2, 0.1), [z1, z2, column])
    assert all(torch.isfinite(g).all() for g in grads)
    assert grads[2].abs().max() > 1       # of order 1/sqrt(eps): the constant dimension is pulled to vary
    everything_constant = torch.ones(4, 3, dtype=torch.double)
    assert barlow_twins(everything_constant, everything_constant).item() == pytest.approx(3.0)


# ---- VICReg ------------------------------------------------------------------------------

@pytest.mark.parametrize("n,d,weights", [(2, 3, (25.0, 25.0, 1.0)), (6, 4, (1.0, 2.0, 3.0)), (9, 5, (0.5, 0, 10.0))])
def test_vicreg_matches_loop_reference(n, d, weights):
    # scaled to 0.5: some dimensions' std below gamma = 1 and some above, so the hinge acts on a few
    z1, z2 = [(0.5 * t).detach().requires_grad_() for t in leaves((n, d), (n, d), seed=30 + n)]
    assert_same_value_and_gradients(vicreg(z1, z2, *weights), vicreg_reference(z1, z2, *weights), [z1, z2])


def test_vicreg_terms_separately():
    z = whitened(10, 4) * 2                                # std 2 * sqrt(10/9) > 1, uncorrelated
    assert vicreg(z, z).item() == pytest.approx(0.0, abs=1e-12)
    z1, z2 = randn(10, 4, seed=9), randn(10, 4, seed=10)
    assert vicreg(z1, z2, 1, 0, 0).item() == pytest.approx(F.mse_loss(z1, z2).item(), rel=1e-12)
    collapsed = torch.zeros(10, 4, dtype=torch.double)
    # variance term: each branch (1/D) sum_j (1 - sqrt(0 + 1e-4)) = 0.99, summed over the two branches
    assert vicreg(collapsed, collapsed, 0, 1, 0).item() == pytest.approx(2 * 0.99, rel=1e-12)
    assert vicreg(collapsed, collapsed, 0, 0, 1).item() == 0.0


def test_vicreg_is_invariant_to_a_common_shift_and_symmetric():
    z1, z2 = randn(12, 6, seed=11), randn(12, 6, seed=12)
    shift = randn(6, seed=13) * 10
    base = vicreg(z1, z2).item()
    assert vicreg(z1 + shift, z2 + shift).item() == pytest.approx(base, rel=1e-10)
    assert vicreg(z2, z1).item() == pytest.approx(base, rel=1e-12)


def test_vicreg_zero_variance_is_finite_and_its_gradient_vanishes_at_exact_collapse():
    """At a constant output the variance hinge is at its maximum but its gradient is 0:
    Var's derivative is proportional to z - mean. VICReg prevents collapse, it cannot undo it."""
    z = torch.ones(5, 3, dtype=torch.double, requires_grad=True)
    loss = vicreg(z, z.detach())
    assert torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.equal(grad, torch.zeros_like(grad))


# ---- SwAV: Sinkhorn-Knopp codes and the swapped prediction ----------------------------------

@pytest.mark.parametrize("b,k,epsilon,iterations", [(1, 3, 0.05, 3), (6, 4, 0.05, 3), (5, 7, 0.5, 10), (8, 2, 0.05, 1)])
def test_sinkhorn_matches_algorithm_1(b, k, epsilon, iterations):
    scores = prototype_scores(b, k, seed=b * k)
    codes = sinkhorn(scores, epsilon, iterations)
    torch.testing.assert_close(codes, sinkhorn_reference(scores.tolist(), epsilon, iterations), rtol=1e-9, atol=1e-12)


def test_sinkhorn_rows_sum_to_one_and_columns_to_batch_over_k():
    scores = prototype_scores(64, 8, seed=1).float().requires_grad_()
    codes = sinkhorn(scores, iterations=30)
    assert codes.dtype == torch.float32 and not codes.requires_grad
    assert (codes >= 0).all()
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(64), rtol=0, atol=1e-5)
    torch.testing.assert_close(codes.sum(dim=0), torch.full((8,), 64 / 8), rtol=0, atol=1e-2)


def test_sinkhorn_spreads_a_degenerate_batch_where_argmax_picks_one_cluster():
    b, k = 64, 8
    scores = (prototype_scores(b, k, seed=2) + torch.tensor([0.5] + [0.0] * (k - 1), dtype=torch.double)).clamp(-1, 1)
    assert scores.argmax(dim=1).bincount(minlength=k)[0] >= 0.7 * b       # argmax: most images in cluster 0
    deviations = [(sinkhorn(scores, iterations=t).sum(dim=0) - b / k).abs().max().item() for t in (1, 3, 10, 30)]
    assert all(later < earlier for earlier, later in zip(deviations, deviations[1:]))   # more iterations, closer
    assert deviations[-1] < 0.01
    assert sinkhorn(scores, iterations=30).argmax(dim=1).bincount(minlength=k).max() <= 2 * b / k
    # identical images: argmax would send all of them to one prototype; the codes share them equally
    same = prototype_scores(1, k, seed=3).expand(b, k)
    torch.testing.assert_close(sinkhorn(same), torch.full((b, k), 1 / k, dtype=torch.double))


def test_sinkhorn_invariances():
    scores = prototype_scores(10, 5, seed=4)
    codes = sinkhorn(scores)
    per_prototype_shift = randn(5, seed=5)                  # cancelled by the prototypes' normalisation
    torch.testing.assert_close(sinkhorn(scores + per_prototype_shift), codes)
    torch.testing.assert_close(sinkhorn(3 * scores, epsilon=0.15), codes)   # only scores / epsilon counts
    # a sharper epsilon makes harder codes
    hardness = [sinkhorn(scores, epsilon=e).max(dim=1).values.mean() for e in (0.01, 0.05, 0.5)]
    assert hardness[0] > hardness[1] > hardness[2]
    # large scores do not overflow
    assert torch.isfinite(sinkhorn(scores * 1e4)).all()


@pytest.mark.parametrize("n_views,n_global,b,k", [(2, 2, 3, 4), (4, 2, 2, 3), (3, 1, 1, 5)])
def test_swav_matches_loop_reference(n_views, n_global, b, k):
    scores = [prototype_scores(b, k, seed=40 + v).requires_grad_() for v in range(n_views)]
    codes = [sinkhorn(s) for s in scores[:n_global]]
    used = scores if n_global > 1 else scores[1:]   # with one code, view 0 is only a target: no gradient
    assert_same_value_and_gradients(swav(scores, codes, 0.1), swav_reference(scores, codes, 0.1), used)


def test_swav_is_invariant_to_per_image_shifts_and_low_when_views_predict_each_other():
    scores = [prototype_scores(6, 4, seed=s) for s in (50, 51, 52)]
    codes = [sinkhorn(s) for s in scores[:2]]
    shifted = [s + randn(6, 1, seed=i) for i, s in enumerate(scores)]   # softmax ignores a per-row constant
    assert swav(shifted, codes).item() == pytest.approx(swav(scores, codes).item(), rel=1e-12)
    one_hot = F.one_hot(torch.arange(4).repeat(2)[:6], 4).double()
    agree = swav([one_hot, one_hot], [one_hot, one_hot], temperature=0.01).item()
    disagree = swav([one_hot, one_hot.roll(1, dims=1)], [one_hot, one_hot.roll(1, dims=1)], temperature=0.01).item()
    assert agree < 1e-20 and disagree == pytest.approx(100.0, rel=1e-9)


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: byol(torch.randn(3, 4), torch.randn(3, 5)), r"p and z must have the same shape.*\(3, 4\) and \(3, 5\)"),
    (lambda: negative_cosine(torch.randn(0, 4), torch.randn(0, 4)), "at least 1 pair, got N=0"),
    (lambda: negative_cosine(torch.randn(3), torch.randn(3)), "p must have 2 dimensions"),
    (lambda: byol(torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4)), "p must be a floating-point"),
    (lambda: byol(torch.randn(3, 4), [[1.0]]), "z must be a torch.Tensor"),
    (lambda: barlow_twins(torch.randn(1, 4), torch.randn(1, 4)), "at least 2 pairs, got N=1"),
    (lambda: barlow_twins(torch.randn(3, 4), torch.randn(3, 5)), "same shape"),
    (lambda: barlow_twins(torch.randn(3, 4), torch.randn(3, 4), lambd=-1), "lambd must be a finite number >= 0"),
    (lambda: barlow_twins(torch.randn(3, 4), torch.randn(3, 4), eps=0), "eps must be a finite number > 0"),
    (lambda: vicreg(torch.randn(1, 4), torch.randn(1, 4)), "at least 2 pairs, got N=1"),
    (lambda: vicreg(torch.randn(3, 4, 1), torch.randn(3, 4, 1)), "2 dimensions"),
    (lambda: vicreg(torch.randn(3, 4), torch.randn(3, 4), var_weight=float("nan")), "var_weight must be"),
    (lambda: vicreg(torch.randn(3, 4), torch.randn(3, 4), cov_weight=-1.0), "cov_weight must be a finite number >= 0"),
    (lambda: sinkhorn(torch.randn(3, 4), epsilon=0), "epsilon must be a finite number > 0"),
    (lambda: sinkhorn(torch.randn(3, 4), iterations=0), "iterations must be a positive integer, got 0"),
    (lambda: sinkhorn(torch.randn(3, 4), iterations=2.5), "iterations must be a positive integer"),
    (lambda: sinkhorn(torch.randn(3, 4, 2)), "scores must have 2 dimensions"),
    (lambda: sinkhorn(torch.ones(3, 4, dtype=torch.long)), "floating-point"),
    (lambda: sinkhorn(torch.randn(0, 4)), r"B, K >= 1, got shape \(0, 4\)"),
    (lambda: swav(torch.randn(3, 4), [torch.randn(3, 4)]), "lists of \\(B, K\\) tensors"),
    (lambda: swav([torch.randn(3, 4)], [torch.randn(3, 4)]), "at least 2 views' scores, got 1"),
    (lambda: swav([torch.randn(3, 4)] * 2, [torch.randn(3, 4)] * 3), "between 1 and 2 codes"),
    (lambda: swav([torch.randn(3, 4)] * 2, []), "between 1 and 2 codes"),
    (lambda: swav([torch.randn(3, 4), torch.randn(3, 5)], [torch.randn(3, 4)]), r"got scores\[1\] of shape \(3, 5\)"),
    (lambda: swav([torch.randn(3, 4)] * 2, [torch.randn(2, 4)]), r"codes\[0\] of shape \(2, 4\)"),
    (lambda: swav([torch.randn(3, 4)] * 2, [torch.randn(3, 4)], temperature=0), "temperature"),
])
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
