"""Instance discrimination: the non-parametric softmax, its NCE approximation, the memory bank, the method."""
import copy
import math

import pytest
import torch

from sslcourse.data.world import load_world
from sslcourse.losses import instdisc_nce, nce_normalizer, nonparametric_softmax
from sslcourse.methods import METHODS
from sslcourse.methods.instdisc import InstDisc, MemoryBank
from sslcourse.models import build_backbone


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def softmax_reference(features, index, bank, tau):
    """Wu et al. 2018, eq. (2): -log exp(v_i . f / tau) / sum_j exp(v_j . f / tau), one image at a time."""
    total = 0
    for f, i in zip(features, index):
        f = unit(f)
        scores = [torch.exp(torch.dot(v, f) / tau) for v in bank]
        total = total - torch.log(scores[int(i)] / sum(scores))
    return total / len(features)


def nce_reference(features, index, bank, noise_index, tau, z):
    """Sec. 3.2: h = P / (P + m P_n) with P = exp(v . f / tau) / Z; -log h(data) - sum log(1 - h(noise))."""
    n, m = len(bank), noise_index.shape[1]
    total = 0
    for f, i, noise in zip(features, index, noise_index):
        f = unit(f)
        p = torch.exp(torch.dot(bank[int(i)], f) / tau) / z
        total = total - torch.log(p / (p + m / n))
        for j in noise:
            p_noise = torch.exp(torch.dot(bank[int(j)], f) / tau) / z
            total = total - torch.log(1 - p_noise / (p_noise + m / n))
    return total / len(features)


def normalizer_reference(features, bank, noise_index, tau):
    """Z ~ (n / m) sum_k exp(v_jk . f / tau), averaged over the batch."""
    values = [math.exp(float(torch.dot(bank[int(j)], unit(f))) / tau) for f, noise in zip(features, noise_index)
              for j in noise]
    return len(bank) * sum(values) / len(values)


def draw(seed, n=5, d=6, bank_size=9, m=7):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.double)
    bank = unit(torch.randn(bank_size, d, generator=g, dtype=torch.double))
    index = torch.randperm(bank_size, generator=g)[:n]
    noise_index = torch.randint(bank_size, (n, m), generator=g)
    return features, index, bank, noise_index


@pytest.mark.parametrize("seed,tau", [(0, 0.07), (1, 0.5), (2, 1.0)])
def test_nonparametric_softmax_matches_loop_reference_values_and_gradients(seed, tau):
    features, index, bank, _ = draw(seed)
    features.requires_grad_(True)
    loss = nonparametric_softmax(features, index, bank, tau)
    expected = softmax_reference(features, index, bank, tau)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    (grad,) = torch.autograd.grad(loss, features)
    (expected_grad,) = torch.autograd.grad(expected, features)
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("seed,tau,z", [(0, 0.07, 5000.0), (1, 0.5, 3.0), (2, 1.0, 40.0)])
def test_instdisc_nce_matches_loop_reference_values_and_gradients(seed, tau, z):
    features, index, bank, noise_index = draw(seed)
    features.requires_grad_(True)
    loss = instdisc_nce(features, index, bank, noise_index, tau, normalizer=z)
    expected = nce_reference(features, index, bank, noise_index, tau, z)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    (grad,) = torch.autograd.grad(loss, features)
    (expected_grad,) = torch.autograd.grad(expected, features)
    torch.testing.assert_close(grad, expected_grad)


def test_nce_estimates_the_normalizer_per_batch_without_gradient():
    features, index, bank, noise_index = draw(3)
    z = nce_normalizer(features, bank, noise_index, 0.3)
    assert z.item() == pytest.approx(normalizer_reference(features, bank, noise_index, 0.3), rel=1e-10)
    assert not z.requires_grad
    features.requires_grad_(True)
    per_batch = instdisc_nce(features, index, bank, noise_index, 0.3)
    fixed = instdisc_nce(features, index, bank, noise_index, 0.3, normalizer=z.item())
    assert per_batch.item() == pytest.approx(fixed.item(), rel=1e-10)
    # Z is a constant in the loss: the gradients agree too.
    torch.testing.assert_close(torch.autograd.grad(per_batch, features)[0], torch.autograd.grad(fixed, features)[0])


def test_losses_ignore_the_scale_of_the_features_and_reward_matching_the_bank():
    features, index, bank, noise_index = draw(4)
    assert nonparametric_softmax(3 * features, index, bank).item() == pytest.approx(
        nonparametric_softmax(features, index, bank).item(), rel=1e-10)
    assert instdisc_nce(0.2 * features, index, bank, noise_index, normalizer=10.0).item() == pytest.approx(
        instdisc_nce(features, index, bank, noise_index, normalizer=10.0).item(), rel=1e-10)
    # Features equal to their own bank entries: the softmax loss is lower than for random features.
    matching = bank[index]
    assert nonparametric_softmax(matching, index, bank).item() < nonparametric_softmax(features, index, bank).item()
    # A one-image batch and a one-entry bank still work.
    assert torch.isfinite(nonparametric_softmax(bank[:1], torch.tensor([0]), bank[:1]))


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_memory_bank_refresh_writes_only_the_visited_rows(momentum):
    bank = MemoryBank(10, 4, momentum=momentum)
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(10))
    before = bank.features.clone()
    index, features = torch.tensor([7, 2, 5]), torch.randn(3, 4) * 4
    bank.refresh(index, features)
    for row in range(10):
        if row in index.tolist():
            new = features[index.tolist().index(row)]
            expected = unit(momentum * before[row] + (1 - momentum) * unit(new))
            torch.testing.assert_close(bank.features[row], expected)
        else:
            torch.testing.assert_close(bank.features[row], before[row])
    with pytest.raises(ValueError, match="refresh needs"):
        bank.refresh(torch.tensor([0]), torch.randn(1, 3))
    with pytest.raises(ValueError, match="momentum"):
        MemoryBank(10, 4, momentum=1.0)
    with pytest.raises(ValueError, match="positive integers"):
        MemoryBank(0, 4)


@pytest.mark.parametrize("call,message", [
    (lambda: nonparametric_softmax(torch.randn(2, 4), torch.tensor([0, 9]), torch.randn(5, 4)), r"\[0, 5\)"),
    (lambda: nonparametric_softmax(torch.randn(2, 4), torch.tensor([0.0, 1.0]), torch.randn(5, 4)), "integer"),
    (lambda: nonparametric_softmax(torch.randn(2, 4), torch.tensor([0]), torch.randn(5, 4)), "one bank position"),
    (lambda: nonparametric_softmax(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(5, 3)), "D=4"),
    (lambda: nonparametric_softmax(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(5, 4), 0), "temperature"),
    (lambda: instdisc_nce(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(5, 4), torch.zeros(3, 2).long()),
     r"\(N, m\) with N=2"),
    (lambda: instdisc_nce(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(5, 4), torch.full((2, 3), 5)),
     "noise_index"),
    (lambda: instdisc_nce(torch.randn(2, 4), torch.tensor([0, 1]), torch.randn(5, 4), torch.zeros(2, 3).long(),
                          normalizer=-1.0), "normalizer"),
])
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def build(data, **hparams):
    torch.manual_seed(0)
    return InstDisc.for_data(build_backbone("convnet"), data, **hparams)


def test_instdisc_is_registered_and_for_data_sizes_the_bank_to_the_training_set(small_world):
    assert METHODS["instdisc"] is InstDisc and InstDisc.batch_extras == ("index",)
    method = build(small_world)
    assert method.bank.features.shape == (len(small_world.train_images), 128)
    rebuilt = InstDisc(build_backbone("convnet"), **method.hparams())
    assert rebuilt.hparams() == method.hparams()
    with pytest.raises(ValueError, match="num_noise"):
        build(small_world, num_noise=0)


@pytest.mark.parametrize("num_noise,fixed", [(16, True), (16, False), (None, True)])
def test_a_step_refreshes_the_visited_bank_rows_and_fixes_z_once(small_world, num_noise, fixed):
    method = build(small_world, num_noise=num_noise, fixed_normalizer=fixed)
    index = torch.tensor([3, 100, 7, 42])
    before = method.bank.features.clone()
    g = torch.Generator().manual_seed(0)
    loss = method.training_step(small_world.train_images[index], g, index=index)
    loss.backward()
    assert torch.isfinite(loss) and method.head.weight.grad is not None
    changed = (method.bank.features != before).any(dim=1)
    assert changed[index].all() and changed.sum() == len(index)
    torch.testing.assert_close(method.bank.features.norm(dim=1), torch.ones(len(before)))
    if num_noise is None or not fixed:
        assert method.normalizer.item() == 0   # the exact softmax needs no Z; per batch, none is kept
        return
    z = method.normalizer.item()
    assert z > 0
    method.training_step(small_world.train_images[index], g, index=index)
    assert method.normalizer.item() == z     # estimated once, as in the paper


def test_noise_comes_from_the_generator_not_the_global_rng(small_world):
    method = build(small_world, num_noise=32)
    twin = copy.deepcopy(method)
    index = torch.arange(8)
    images = small_world.train_images[index]
    torch.manual_seed(1)
    first = method.training_step(images, torch.Generator().manual_seed(5), index=index)
    torch.manual_seed(2)
    second = twin.training_step(images, torch.Generator().manual_seed(5), index=index)
    assert first.item() == second.item()
    other = copy.deepcopy(twin).training_step(images, torch.Generator().manual_seed(6), index=index)
    assert other.item() != second.item()


@pytest.mark.slow
def test_instdisc_beats_random_init_on_the_world(tmp_path, knn_before_after):
    data = load_world(n_train=1000, n_test=500, seed=0, root=tmp_path)
    # One view per step and one bank refresh per epoch: more epochs than the two-view methods' tests
    # (measured: kNN 0.132 -> 0.158 after 8 epochs, 0.174 after 16, 0.184 after 20).
    _, before, after = knn_before_after(build(data), data, epochs=20)
    assert after > before + 0.03, f"kNN accuracy {before:.3f} at random init, {after:.3f} after instdisc"
