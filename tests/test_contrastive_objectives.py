"""DrLIM, triplet, DCL, debiased, HCL, SupCon, distance polarisation and the low-rank penalty:
each against a slow loop over its paper's equation (values and gradients, float64), the
relations between them, invariances, edge cases and bad input."""
import math

import numpy as np
import pytest
import torch

from sslcourse.losses import (contrastive_margin, dcl, debiased_nt_xent, distance_polarization, hcl,
                              low_rank_penalty, nt_xent, supcon, triplet)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.double)


def cos(a, b):
    return (a * b).sum() / (a.norm() * b.norm())


def views(z1, z2):
    """The 2N anchors in NT-Xent's order and, for each, the index of its positive."""
    n = len(z1)
    return list(z1) + list(z2), [(i + n) % (2 * n) for i in range(2 * n)]


# ---- references: one pair, triplet or anchor at a time, in scalar torch arithmetic ----

def drlim_reference(x1, x2, same, m):
    total = 0
    for a, b, s in zip(x1, x2, same):
        d = ((a - b) ** 2).sum().sqrt()
        total = total + (d**2 / 2 if s else torch.clamp(m - d, min=0) ** 2 / 2)
    return total / len(x1)


def triplet_reference(a, p, n, alpha):
    total = 0
    for ai, pi, ni in zip(a, p, n):
        ai, pi, ni = ai / ai.norm(), pi / pi.norm(), ni / ni.norm()
        total = total + torch.clamp(((ai - pi) ** 2).sum() - ((ai - ni) ** 2).sum() + alpha, min=0)
    return total / len(a)


def dcl_reference(z1, z2, tau, sigma=None):
    z, partner = views(z1, z2)
    pair_weight = [1.0] * len(z)
    if sigma is not None:
        cosines = [cos(a, b) for a, b in zip(z1, z2)]
        mean = sum(torch.exp(c / sigma) for c in cosines) / len(cosines)
        pair_weight = [2 - torch.exp(cosines[i % len(z1)] / sigma) / mean for i in range(len(z))]
    total = 0
    for i, j in enumerate(partner):
        negatives = sum(torch.exp(cos(z[i], z[k]) / tau) for k in range(len(z)) if k not in (i, j))
        total = total - pair_weight[i] * cos(z[i], z[j]) / tau + torch.log(negatives)
    return total / len(z)


def hcl_reference(z1, z2, t, beta, tau_plus):
    """Robinson et al. 2021 with importance weights exp(beta s / t); beta = 0 is Chuang et al. 2020."""
    z, partner = views(z1, z2)
    total = 0
    for i, j in enumerate(partner):
        positive = torch.exp(cos(z[i], z[j]) / t)
        others = [k for k in range(len(z)) if k not in (i, j)]
        weights = [torch.exp(beta * cos(z[i], z[k]) / t) for k in others]
        mean = sum(w * torch.exp(cos(z[i], z[k]) / t) for w, k in zip(weights, others)) / sum(weights)
        g = torch.clamp((mean - tau_plus * positive) / (1 - tau_plus), min=math.exp(-1 / t))
        total = total - torch.log(positive / (positive + len(others) * g))
    return total / len(z)


def supcon_reference(z, labels, tau):
    """Khosla et al. eq. (2): anchors are (image, view); A(i) all others; P(i) those with i's label."""
    anchors = [(i, v) for v in range(z.shape[1]) for i in range(z.shape[0])]
    losses = []
    for a in anchors:
        others = [b for b in anchors if b != a]
        positives = [b for b in others if labels[b[0]] == labels[a[0]]]
        if not positives:
            continue
        denominator = sum(torch.exp(cos(z[a], z[b]) / tau) for b in others)
        losses.append(-sum(torch.log(torch.exp(cos(z[a], z[p]) / tau) / denominator) for p in positives)
                      / len(positives))
    return sum(losses) / len(losses)


def polarization_reference(z, delta_plus, delta_minus):
    penalties = []
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            d = (1 - cos(z[i], z[j])) / 2
            penalties.append(torch.clamp(d - delta_plus, min=0) * torch.clamp(delta_minus - d, min=0))
    return sum(penalties) / len(penalties)


def l21_reference(w):
    return sum(math.sqrt(sum(float(x) ** 2 for x in row)) for row in w)


def nuclear_reference(w):
    """The sum of singular values: square roots of the eigenvalues of W^T W."""
    eigenvalues = np.linalg.eigvalsh(w.detach().double().numpy().T @ w.detach().double().numpy())
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def assert_value_and_gradient(fast, reference, *inputs):
    inputs = [x.detach().double().requires_grad_(True) for x in inputs]
    value, expected = fast(*inputs), reference(*inputs)
    assert value.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)
    got = torch.autograd.grad(value, inputs)
    want = torch.autograd.grad(expected, inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12)


# ---- loops vs vectorised: values and gradients ----

@pytest.mark.parametrize("n,d,margin", [(1, 3, 1.0), (6, 4, 0.5), (9, 2, 3.0)])
def test_contrastive_margin_matches_loop(n, d, margin):
    same = torch.arange(n) % 2 == 0
    assert_value_and_gradient(lambda a, b: contrastive_margin(a, b, same, margin),
                              lambda a, b: drlim_reference(a, b, same, margin), randn(n, d), randn(n, d, seed=1))


@pytest.mark.parametrize("n,d,alpha", [(1, 3, 0.2), (8, 5, 0.2), (5, 2, 1.5)])
def test_triplet_matches_loop(n, d, alpha):
    assert_value_and_gradient(lambda a, p, q: triplet(a, p, q, alpha),
                              lambda a, p, q: triplet_reference(a, p, q, alpha),
                              randn(n, d), randn(n, d, seed=1), randn(n, d, seed=2))


@pytest.mark.parametrize("n,d,tau,sigma", [(2, 3, 0.1, None), (5, 8, 0.5, None), (7, 4, 0.2, 0.5), (3, 6, 1.0, 2.0)])
def test_dcl_matches_loop(n, d, tau, sigma):
    assert_value_and_gradient(lambda a, b: dcl(a, b, tau, sigma), lambda a, b: dcl_reference(a, b, tau, sigma),
                              randn(n, d), randn(n, d, seed=1))


@pytest.mark.parametrize("n,d,t,tau_plus", [(2, 3, 0.5, 0.1), (6, 5, 0.5, 0.1), (5, 8, 0.2, 0.3), (4, 4, 1.0, 0.0)])
def test_debiased_matches_loop(n, d, t, tau_plus):
    assert_value_and_gradient(lambda a, b: debiased_nt_xent(a, b, t, tau_plus),
                              lambda a, b: hcl_reference(a, b, t, 0.0, tau_plus), randn(n, d), randn(n, d, seed=1))


@pytest.mark.parametrize("n,d,t,beta,tau_plus", [(2, 3, 0.5, 1.0, 0.1), (6, 5, 0.5, 1.0, 0.1), (5, 8, 0.2, 0.5, 0.05),
                                                 (4, 4, 0.5, 3.0, 0.0)])
def test_hcl_matches_loop(n, d, t, beta, tau_plus):
    assert_value_and_gradient(lambda a, b: hcl(a, b, t, beta, tau_plus),
                              lambda a, b: hcl_reference(a, b, t, beta, tau_plus), randn(n, d), randn(n, d, seed=1))


@pytest.mark.parametrize("labels,views,tau", [([0, 1, 2, 3], 2, 0.1), ([0, 1, 0, 2, 1, 0], 2, 0.5),
                                              ([3, 3, 1, 1, 2], 3, 0.2), ([0, 0, 1, 2, 2, 5], 1, 0.3)])
def test_supcon_matches_loop(labels, views, tau):
    labels = torch.tensor(labels)
    assert_value_and_gradient(lambda z: supcon(z, labels, tau), lambda z: supcon_reference(z, labels, tau),
                              randn(len(labels), views, 4))


@pytest.mark.parametrize("n,d,band", [(2, 3, (0.0, 1.0)), (7, 4, (0.2, 0.4)), (10, 2, (0.3, 0.8))])
def test_distance_polarization_matches_loop(n, d, band):
    z = randn(n, d)
    assert distance_polarization(z, *band).item() > 0   # random pairs fall in these bands: the test can fail
    assert_value_and_gradient(lambda x: distance_polarization(x, *band), lambda x: polarization_reference(x, *band), z)


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (6, 2)])
def test_low_rank_penalties_match_their_definitions(shape):
    w = randn(*shape)
    assert low_rank_penalty(w, "l21").item() == pytest.approx(l21_reference(w), rel=1e-10)
    assert low_rank_penalty(w, "nuclear").item() == pytest.approx(nuclear_reference(w), rel=1e-8)
    w.requires_grad_(True)
    (grad_l21,) = torch.autograd.grad(low_rank_penalty(w, "l21"), w)
    torch.testing.assert_close(grad_l21, w / w.norm(dim=1, keepdim=True))       # each row's unit direction
    (grad_nuclear,) = torch.autograd.grad(low_rank_penalty(w, "nuclear"), w)
    u, _, vh = np.linalg.svd(w.detach().numpy(), full_matrices=False)
    torch.testing.assert_close(grad_nuclear, torch.from_numpy(u @ vh))         # d ||W||_* = U V^T at full rank


def test_gradcheck_of_the_new_objectives():
    z1, z2 = randn(5, 4).requires_grad_(), randn(5, 4, seed=1).requires_grad_()
    for loss in (lambda a, b: dcl(a, b, 0.3, 0.5), lambda a, b: hcl(a, b, 0.5, 1.0, 0.1),
                 lambda a, b: supcon(torch.stack([a, b], dim=1), torch.tensor([0, 1, 0, 2, 1]), 0.2),
                 lambda a, b: distance_polarization(torch.cat([a, b]), 0.1, 0.6)):
        assert torch.autograd.gradcheck(loss, (z1, z2))


# ---- relations between the objectives ----

def test_supcon_with_distinct_labels_and_two_views_is_nt_xent():
    z1, z2 = randn(9, 6).float(), randn(9, 6, seed=1).float()
    for tau in (0.1, 0.5):
        expected = nt_xent(z1, z2, tau).item()
        assert supcon(torch.stack([z1, z2], dim=1), torch.arange(9), tau).item() == pytest.approx(expected, rel=1e-5)
    # a shared label adds positives: no longer NT-Xent
    labels = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7])
    assert supcon(torch.stack([z1, z2], dim=1), labels, 0.1).item() != pytest.approx(nt_xent(z1, z2, 0.1).item())


def test_hcl_with_beta_zero_is_the_debiased_loss():
    z1, z2 = randn(8, 5), randn(8, 5, seed=1)
    for tau_plus in (0.0, 0.1, 0.4):
        assert hcl(z1, z2, 0.5, 0.0, tau_plus).item() == pytest.approx(debiased_nt_xent(z1, z2, 0.5, tau_plus).item(),
                                                                     rel=1e-12)
    assert hcl(z1, z2, 0.5, 1.0, 0.1).item() > debiased_nt_xent(z1, z2, 0.5, 0.1).item()   # hard negatives weigh more


def test_debiased_with_no_class_prior_is_nt_xent_with_the_positive_in_the_denominator():
    """tau+ = 0: the estimate is the plain negative sum and the clamp never binds (cos >= -1), so
    the loss is NT-Xent, not DCL: the positive stays in the denominator."""
    z1, z2 = randn(8, 5), randn(8, 5, seed=1)
    for t in (0.2, 0.5):
        assert debiased_nt_xent(z1, z2, t, 0.0).item() == pytest.approx(nt_xent(z1, z2, t).item(), rel=1e-12)
        assert debiased_nt_xent(z1, z2, t, 0.0).item() > dcl(z1, z2, t).item()


def test_dcl_is_nt_xent_plus_log_one_minus_the_positive_probability():
    z1, z2 = randn(6, 4), randn(6, 4, seed=1)
    tau = 0.3
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    positive = torch.cat([torch.arange(6, 12), torch.arange(6)])
    p_positive = logits.softmax(dim=1)[torch.arange(12), positive]
    expected = nt_xent(z1, z2, tau) + torch.log1p(-p_positive).mean()
    assert dcl(z1, z2, tau).item() == pytest.approx(expected.item(), rel=1e-10)


def test_dclw_with_a_huge_sigma_weighs_every_pair_by_one():
    z1, z2 = randn(6, 4), randn(6, 4, seed=1)
    assert dcl(z1, z2, 0.1, sigma=1e9).item() == pytest.approx(dcl(z1, z2, 0.1).item(), rel=1e-8)
    assert dcl(z1, z2, 0.1, sigma=0.5).item() != pytest.approx(dcl(z1, z2, 0.1).item(), rel=1e-3)


def test_hcl_with_a_large_beta_attends_to_the_hardest_negative():
    z1, z2 = randn(5, 3), randn(5, 3, seed=1)
    t, n = 0.5, 5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    expected = 0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        hardest = max(sim[i, k] for k in range(2 * n) if k not in (i, j))
        expected += -torch.log(sim[i, j].exp() / (sim[i, j].exp() + (2 * n - 2) * hardest.exp())) / (2 * n)
    assert hcl(z1, z2, t, beta=200.0, tau_plus=0.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_debiased_estimate_is_clamped_at_its_smallest_possible_value():
    """Views that agree and a large class prior: mean negative - tau+ positive < 0, so g = e^{-1/t}."""
    z1 = torch.eye(3, dtype=torch.double)
    t, tau_plus = 0.5, 0.9
    positive = math.exp(1 / t)
    expected = -math.log(positive / (positive + 4 * math.exp(-1 / t)))
    assert debiased_nt_xent(z1, z1.clone(), t, tau_plus).item() == pytest.approx(expected, rel=1e-12)
    assert hcl(z1, z1.clone(), t, 1.0, tau_plus).item() == pytest.approx(expected, rel=1e-12)


# ---- invariances ----

@pytest.mark.parametrize("loss", [
    lambda a, b: dcl(a, b, 0.2, 0.5), lambda a, b: debiased_nt_xent(a, b), lambda a, b: hcl(a, b),
    lambda a, b: supcon(torch.stack([a, b], dim=1), torch.tensor([0, 1, 1, 2, 0, 3, 3])),
    lambda a, b: distance_polarization(torch.cat([a, b]), 0.1, 0.7), lambda a, b: triplet(a, b, b.roll(1, 0)),
])
def test_only_directions_matter(loss):
    z1, z2 = randn(7, 5), randn(7, 5, seed=1)
    assert loss(3 * z1, 0.25 * z2).item() == pytest.approx(loss(z1, z2).item(), rel=1e-10)


def test_view_order_and_image_order_do_not_matter():
    z1, z2 = randn(7, 5), randn(7, 5, seed=1)
    labels = torch.tensor([0, 1, 1, 2, 0, 3, 3])
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    for loss in (dcl, debiased_nt_xent, hcl):
        assert loss(z2, z1).item() == pytest.approx(loss(z1, z2).item(), rel=1e-10)
        assert loss(z1[order], z2[order]).item() == pytest.approx(loss(z1, z2).item(), rel=1e-10)
    z = torch.stack([z1, z2], dim=1)
    assert supcon(z[order], labels[order]).item() == pytest.approx(supcon(z, labels).item(), rel=1e-10)
    assert supcon(z.flip(1), labels).item() == pytest.approx(supcon(z, labels).item(), rel=1e-10)
    assert distance_polarization(z1[order]).item() == pytest.approx(distance_polarization(z1).item(), rel=1e-10)


def test_drlim_margin_behaviour():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.6, 0.8]])
    same = torch.tensor([True, False, False])
    # similar identical pair: 0; dissimilar pair 5 apart with margin 2: 0; dissimilar pair 1 apart: (2 - 1)^2 / 2
    loss = contrastive_margin(x, y, same, margin=2.0)
    assert loss.item() == pytest.approx(0.5 / 3)
    (grad,) = torch.autograd.grad(loss, x)
    assert grad[0].abs().sum() == 0 and grad[1].abs().sum() == 0 and grad[2].abs().sum() > 0
    assert grad[2] @ y[2] > 0   # descending moves x[2] away from y[2]
    # an identical dissimilar pair: finite loss m^2 / 2 and a finite (zero) gradient
    z = torch.zeros(1, 3, requires_grad=True)
    loss = contrastive_margin(z, torch.zeros(1, 3), torch.tensor([0]), margin=1.0)
    assert loss.item() == pytest.approx(0.5)
    assert torch.isfinite(torch.autograd.grad(loss, z)[0]).all()
    assert contrastive_margin(x, y, torch.tensor([1, 0, 0]), 2.0).item() == pytest.approx(0.5 / 3)  # 0/1 ints too


def test_triplet_is_zero_once_the_margin_is_met():
    a = torch.tensor([[1.0, 0.0]])
    assert triplet(a, torch.tensor([[1.0, 0.1]]), torch.tensor([[-1.0, 0.0]])).item() == 0
    # positive and negative equally far: the loss is the margin
    assert triplet(a, torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, -1.0]]), margin=0.3).item() == pytest.approx(0.3)


def test_polarization_is_zero_outside_the_band_and_pushes_to_the_nearer_edge():
    angle = torch.tensor([0.0, 0.3, 2.5])             # distances (1 - cos) / 2: 0, 0.022, 0.90
    z = torch.stack([angle.cos(), angle.sin()], dim=1)
    assert distance_polarization(z, 0.2, 0.4).item() == 0
    # two unit vectors at cosine 0.5: distance 0.25, in (0.2, 0.4), nearer to 0.2
    a = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]], requires_grad=True)
    loss = distance_polarization(a, 0.2, 0.4)
    assert loss.item() == pytest.approx(0.05 * 0.15)
    (grad,) = torch.autograd.grad(loss, a)
    with torch.no_grad():
        stepped = a - 0.1 * grad
    assert torch.nn.functional.cosine_similarity(stepped[0], stepped[1], dim=0) > 0.5   # pulled together


def test_low_rank_penalty_of_simple_matrices():
    rank_one = torch.outer(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.0, 0.0]))   # ||u|| ||v|| = 5
    assert low_rank_penalty(rank_one, "nuclear").item() == pytest.approx(5.0)
    assert low_rank_penalty(rank_one, "l21").item() == pytest.approx(7.0)             # rows 3 and 4
    w = torch.zeros(3, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(low_rank_penalty(w, "l21"), w)
    assert torch.isfinite(grad).all()                                                 # zero rows: no NaN


# ---- edge cases ----

@pytest.mark.parametrize("loss", [lambda a, b: dcl(a, b), lambda a, b: debiased_nt_xent(a, b), lambda a, b: hcl(a, b),
                                  lambda a, b: supcon(torch.stack([a, b], dim=1), torch.arange(len(a))),
                                  lambda a, b: distance_polarization(torch.cat([a, b]))])
def test_smallest_batches_and_zero_vectors_give_finite_values_and_gradients(loss):
    for z1, z2 in [(randn(2, 3), randn(2, 3, seed=1)), (torch.zeros(3, 4, dtype=torch.double), randn(3, 4))]:
        z1, z2 = z1.requires_grad_(), z2.requires_grad_()
        value = loss(z1, z2)
        assert torch.isfinite(value)
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(value, (z1, z2)))


def test_supcon_leaves_out_anchors_without_a_positive_and_rejects_a_batch_with_none():
    z = randn(4, 1, 3)
    labels = torch.tensor([0, 0, 1, 2])   # only the two 0s have a positive
    only_pair = supcon_reference(z[:2], labels[:2], 0.1)
    assert supcon(z, labels, 0.1).item() != pytest.approx(only_pair.item())      # the others stay in the denominator
    assert supcon(z, labels, 0.1).item() == pytest.approx(supcon_reference(z, labels, 0.1).item(), rel=1e-10)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supcon(z, torch.tensor([0, 1, 2, 3]))


# ---- bad input ----

@pytest.mark.parametrize("call,message", [
    (lambda: contrastive_margin(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([1, 0])), r"same must be \(N,\)"),
    (lambda: contrastive_margin(torch.randn(3, 2), torch.randn(3, 2), torch.tensor([1, 0, 2])), "only 0/1"),
    (lambda: contrastive_margin(torch.randn(3, 2), torch.randn(3, 2), torch.ones(3), margin=0), "margin"),
    (lambda: contrastive_margin(torch.randn(3, 2), torch.randn(3, 3), torch.ones(3)), "same shape"),
    (lambda: triplet(torch.randn(3, 2), torch.randn(3, 2), torch.randn(2, 2)), "negative must have"),
    (lambda: triplet(torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2), margin=-1), "margin"),
    (lambda: dcl(torch.randn(1, 4), torch.randn(1, 4)), "at least 2"),
    (lambda: dcl(torch.randn(3, 4), torch.randn(3, 4), temperature=0), "temperature"),
    (lambda: dcl(torch.randn(3, 4), torch.randn(3, 4), sigma=-0.5), "sigma"),
    (lambda: debiased_nt_xent(torch.randn(3, 4), torch.randn(3, 4), tau_plus=1.0), r"tau_plus.*\[0, 1\)"),
    (lambda: debiased_nt_xent(torch.randn(3, 4), torch.randn(3, 5)), "same shape"),
    (lambda: hcl(torch.randn(3, 4), torch.randn(3, 4), beta=-1), "beta"),
    (lambda: hcl(torch.randn(3, 4), torch.randn(3, 4), tau_plus=-0.1), "tau_plus"),
    (lambda: hcl(torch.ones(3, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long)), "floating"),
    (lambda: supcon(torch.randn(4, 8), torch.arange(4)), "3 dimensions"),
    (lambda: supcon(torch.randn(4, 2, 8), torch.arange(3)), r"labels must be \(N,\) with N=4"),
    (lambda: supcon(torch.randn(4, 2, 8), torch.zeros(4)), "integer"),
    (lambda: supcon(torch.randn(1, 1, 8), torch.zeros(1, dtype=torch.long)), "at least 2 embeddings"),
    (lambda: supcon(torch.randn(4, 2, 8), torch.arange(4), temperature=float("inf")), "temperature"),
    (lambda: distance_polarization(torch.randn(1, 4)), "at least 2"),
    (lambda: distance_polarization(torch.randn(4, 4), 0.5, 0.3), "delta_plus < delta_minus"),
    (lambda: distance_polarization(torch.randn(4, 4), 0.1, 1.5), r"delta_minus must be a number in \[0, 1\]"),
    (lambda: low_rank_penalty(torch.randn(4), "l21"), "2 dimensions"),
    (lambda: low_rank_penalty(torch.randn(4, 4), "trace"), "kind must be one of"),
])
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
