"""CPC: the loss against a loop over the paper's equation, the upward-looking context, the image method,
and the 1-D signals on which it learns in seconds."""
import copy

import pytest
import torch
from torch import nn

from sslcourse.data.signals import FREQUENCIES, make_signals
from sslcourse.data.world import load_world
from sslcourse.evaluation import linear_probe
from sslcourse.losses import cpc
from sslcourse.methods import METHODS
from sslcourse.methods.cpc import (CPC, SequenceCPC, UpwardContext, columns_as_sequences, patch_grid,
                                   train_sequence_cpc)
from sslcourse.models import build_backbone
from sslcourse.transforms import to_float


def cpc_reference(context, latents, weights):
    """van den Oord et al. 2018, eq. (3-4), one prediction at a time: the candidates for z_{t+k} of
    sequence b are the latents k steps after every position t' of every sequence b'."""
    batch, steps, _ = latents.shape
    per_k = []
    for k, w in enumerate(weights, start=1):
        terms = []
        for b in range(batch):
            for t in range(steps - k):
                prediction = w @ context[b, t]
                scores = [torch.exp(torch.dot(latents[b2, t2 + k], prediction))
                          for b2 in range(batch) for t2 in range(steps - k)]
                terms.append(-torch.log(torch.exp(torch.dot(latents[b, t + k], prediction)) / sum(scores)))
        per_k.append(sum(terms) / len(terms))
    return sum(per_k) / len(per_k)


@pytest.mark.parametrize("batch,steps,k_max,c_dim,d_dim", [(2, 4, 1, 3, 5), (3, 5, 3, 4, 2), (1, 6, 2, 3, 3)])
def test_cpc_matches_loop_reference_values_and_gradients(batch, steps, k_max, c_dim, d_dim):
    g = torch.Generator().manual_seed(batch * 10 + steps)
    context = (0.5 * torch.randn(batch, steps, c_dim, generator=g, dtype=torch.double)).requires_grad_(True)
    latents = (0.5 * torch.randn(batch, steps, d_dim, generator=g, dtype=torch.double)).requires_grad_(True)
    weights = [torch.randn(d_dim, c_dim, generator=g, dtype=torch.double, requires_grad=True) for _ in range(k_max)]
    predictors = [lambda c, w=w: c @ w.T for w in weights]      # W_k c_t, any callable will do
    loss = cpc(context, latents, predictors)
    expected = cpc_reference(context, latents, weights)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    inputs = [context, latents, *weights]
    for got, want in zip(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(got, want)


def test_cpc_is_low_when_predictions_point_at_their_own_future():
    g = torch.Generator().manual_seed(0)
    latents = 10 * torch.nn.functional.one_hot(torch.arange(12)).float().view(2, 6, 12)  # all distinct
    identity = nn.Linear(12, 12, bias=False)
    nn.init.eye_(identity.weight)
    future = torch.cat([latents[:, 1:], torch.zeros(2, 1, 12)], dim=1)   # c_t = z_{t+1}
    assert cpc(future, latents, [identity]).item() < 1e-6
    assert cpc(torch.randn(2, 6, 12, generator=g), latents, [identity]).item() > 0.5


@pytest.mark.parametrize("call,message", [
    (lambda: cpc(torch.randn(2, 3, 4), torch.randn(2, 3, 5), [nn.Linear(4, 5)] * 3), "T > 3"),
    (lambda: cpc(torch.randn(2, 3, 4), torch.randn(2, 4, 5), [nn.Linear(4, 5)]), "share B and T"),
    (lambda: cpc(torch.randn(2, 3, 4), torch.randn(2, 3, 5), [nn.Linear(4, 6)]), r"\(B, T, 5\)"),
    (lambda: cpc(torch.randn(2, 3, 4), torch.randn(2, 3, 5), []), "at least one"),
    (lambda: cpc(torch.randn(1, 2, 4), torch.randn(1, 2, 5), [nn.Linear(4, 5)]), "candidates"),
    (lambda: cpc(torch.randn(3, 4), torch.randn(3, 5), [nn.Linear(4, 5)]), "3 dimensions"),
])
def test_cpc_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_upward_context_never_sees_the_rows_below():
    torch.manual_seed(0)
    context = UpwardContext(dim=4, context_dim=6, layers=3)
    z = torch.randn(2, 4, 5, 5)
    for row in range(5):
        changed = z.clone()
        changed[:, :, row + 1:] = torch.randn_like(changed[:, :, row + 1:])
        torch.testing.assert_close(context(changed)[:, :, :row + 1], context(z)[:, :, :row + 1])
    # ... and does see the rows above (three layers reach three rows up).
    changed = z.clone()
    changed[:, :, 0] += 1
    assert not torch.allclose(context(changed)[:, :, 3], context(z)[:, :, 3])


def test_patch_grid_and_columns_as_sequences():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    grid = patch_grid(images, size=4, stride=2)                    # 3 x 3 patches
    assert grid.shape == (2, 3, 3, 3, 4, 4)
    for r in range(3):
        for c in range(3):
            torch.testing.assert_close(grid[:, r, c], images[:, :, 2 * r:2 * r + 4, 2 * c:2 * c + 4])
    latent_grid = torch.randn(2, 7, 3, 4)                          # (B, D, rows, cols)
    sequences = columns_as_sequences(latent_grid)
    assert sequences.shape == (2 * 4, 3, 7)
    for b in range(2):
        for c in range(4):
            torch.testing.assert_close(sequences[b * 4 + c], latent_grid[b, :, :, c].T)


def test_cpc_method_step_and_the_backbone_still_takes_full_images(small_world):
    assert METHODS["cpc"] is CPC
    torch.manual_seed(0)
    method = CPC.for_data(build_backbone("convnet"), small_world)
    loss = method.training_step(small_world.train_images[:8], torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in method.predictors.parameters())
    assert method.backbone(to_float(small_world.test_images[:3])).shape == (3, 128)
    assert CPC(build_backbone("convnet"), **method.hparams()).hparams() == method.hparams()
    with pytest.raises(ValueError, match="1 <= steps < rows"):
        CPC(build_backbone("convnet"), image_size=32, patch_size=16, patch_stride=8, steps=3)


def test_signals_are_seeded_balanced_and_checked():
    a, b = make_signals(40, length=64, seed=3), make_signals(40, length=64, seed=3)
    assert a.signals.shape == (40, 1, 64) and a.signals.dtype == torch.float32
    torch.testing.assert_close(a.signals, b.signals)
    assert not torch.equal(a.signals, make_signals(40, length=64, seed=4).signals)
    assert len(a.classes) == 10 and set(a.labels.bincount().tolist()) == {4}
    assert all(f in FREQUENCIES for pair in a.classes for f in pair)
    # Without noise or detuning, a signal's spectrum peaks at its class's two frequencies.
    clean = make_signals(10, length=256, noise=0.0, detune=0.0, seed=0)
    spectrum = torch.fft.rfft(clean.signals[:, 0]).abs()
    for power, label in zip(spectrum, clean.labels):
        assert set(power.topk(2).indices.tolist()) == {int(f) for f in clean.classes[label]}
    with pytest.raises(ValueError, match="positive integer"):
        make_signals(0)
    with pytest.raises(ValueError, match="length"):
        make_signals(4, length=4)


def test_sequence_cpc_shapes():
    model = SequenceCPC(dim=8, context_dim=6, steps=3)
    x = make_signals(4, length=128).signals
    assert model.encoder(x).shape == (4, 8, 8)      # one latent per 16 samples
    assert model.features(x).shape == (4, 6)
    assert torch.isfinite(model.loss(x))
    with pytest.raises(ValueError, match="batch_size"):
        train_sequence_cpc(model, x, epochs=1, batch_size=8)


@pytest.mark.slow
def test_cpc_on_signals_beats_random_init_by_a_linear_probe():
    train_set, test_set = make_signals(1000, seed=0), make_signals(500, seed=1)
    torch.manual_seed(0)
    model = SequenceCPC()
    random_init = copy.deepcopy(model)

    def probe(m):
        return linear_probe(m.features(train_set.signals), train_set.labels, m.features(test_set.signals),
                            test_set.labels)

    history = train_sequence_cpc(model, train_set.signals, epochs=8)
    assert history[-1] < history[0] - 1.0
    before, after = probe(random_init), probe(model)
    assert after > before + 0.1, f"linear probe {before:.3f} at random init, {after:.3f} after CPC"


@pytest.mark.slow
def test_cpc_beats_random_init_on_the_world(tmp_path, knn_before_after):
    data = load_world(n_train=1000, n_test=500, seed=0, root=tmp_path)
    torch.manual_seed(0)
    _, before, after = knn_before_after(CPC.for_data(build_backbone("convnet"), data), data, epochs=8)
    assert after > before + 0.05, f"kNN accuracy {before:.3f} at random init, {after:.3f} after CPC"
