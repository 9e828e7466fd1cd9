"""SimCLR's variants (DCL, debiased, HCL, SupCon, large-margin, low-dimensional): each trains
through the one trainer, its loss is the paper's objective on SimCLR's projections, and it learns."""

import pytest
import torch

from sslcourse.cli import build_parser
from sslcourse.data import subset
from sslcourse.data.world import load_world
from sslcourse.losses import (dcl, debiased_nt_xent, distance_polarization, hcl, low_rank_penalty, nt_xent,
                              supcon)
from sslcourse.methods import METHODS, SimCLR, build_method
from sslcourse.models import build_backbone
from sslcourse.trainer import train

VARIANTS = ["dcl", "debiased", "hcl", "supcon", "large_margin", "low_dim"]


def build(name, **hparams):
    torch.manual_seed(0)
    return build_method(name, build_backbone("convnet"), image_size=32, **hparams)


def projections(seed=0, n=8, d=128):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("name", VARIANTS)
def test_one_step_gives_a_finite_loss_and_gradients_everywhere(name, small_world):
    method = build(name).train()
    assert issubclass(METHODS[name], SimCLR) and METHODS[name].name == name
    extras = {"labels": small_world.train_labels[:16]} if method.batch_extras else {}
    loss = method.training_step(small_world.train_images[:16], torch.Generator().manual_seed(0), **extras)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.parameters())
    for part in [method.backbone, method.projector] + ([method.reducer] if name == "low_dim" else []):
        assert any(p.grad.abs().sum() > 0 for p in part.parameters())


@pytest.mark.parametrize("name", VARIANTS)
def test_hparams_rebuild_the_same_method(name, small_world):
    method = METHODS[name].for_data(build_backbone("convnet"), small_world)
    rebuilt = build_method(name, build_backbone("convnet"), **method.hparams())
    assert rebuilt.hparams() == method.hparams()
    rebuilt.load_state_dict(method.state_dict())   # same modules, same shapes


def test_the_trainer_gives_supcon_the_labels_of_its_batch(small_world):
    data = subset(small_world, n_train=64, n_test=32)
    seen = []
    method = build("supcon")
    original = method.loss

    def spy(z1, z2, labels):
        seen.append(labels.clone())
        return original(z1, z2, labels)

    method.loss = spy
    history = train(method, data, epochs=1, batch_size=32, seed=0, knn_every=0, progress=False)
    assert len(seen) == 2 and torch.isfinite(torch.tensor(history["loss"])).all()
    assert sorted(torch.cat(seen).tolist()) == sorted(data.train_labels.tolist())   # each image's label, once


@pytest.mark.parametrize("name", VARIANTS)
def test_the_command_line_accepts_it(name):
    args = build_parser().parse_args(["pretrain", "--method", name, "--epochs", "1"])
    assert args.method == name


def test_each_loss_is_the_papers_objective_on_the_two_projections():
    z1, z2 = projections()
    labels = torch.tensor([0, 1, 0, 2, 3, 1, 4, 0])
    m = {name: build(name) for name in VARIANTS}
    expected = {
        "dcl": dcl(z1, z2, m["dcl"].temperature),
        "debiased": debiased_nt_xent(z1, z2, m["debiased"].temperature, m["debiased"].tau_plus),
        "hcl": hcl(z1, z2, m["hcl"].temperature, m["hcl"].beta, m["hcl"].tau_plus),
        "large_margin": nt_xent(z1, z2, 0.2) + m["large_margin"].weight * distance_polarization(torch.cat([z1, z2])),
    }
    for name, value in expected.items():
        torch.testing.assert_close(m[name].loss(z1, z2), value)
    torch.testing.assert_close(m["supcon"].loss(z1, z2, labels=labels),
                               supcon(torch.stack([z1, z2], 1), labels, m["supcon"].temperature))
    assert (m["hcl"].beta, m["hcl"].tau_plus, m["debiased"].temperature) == (1.0, 0.1, 0.5)   # the papers' values
    method = build("low_dim", weight=0.5, penalty="l21")
    with torch.no_grad():
        method.reducer.weight.mul_(torch.linspace(0.5, 2.0, 128)[:, None])
    w = method.reducer.weight
    torch.testing.assert_close(method.loss(z1, z2), nt_xent(z1 @ w.T, z2 @ w.T, 0.2) + 0.5 * low_rank_penalty(w, "l21"))
    assert build("dcl", sigma=0.5).loss(z1, z2).item() == pytest.approx(dcl(z1, z2, 0.2, 0.5).item())


def test_low_dim_starts_as_simclr_and_its_penalty_lowers_the_rank():
    z1, z2 = projections()
    method = build("low_dim", weight=1.0)
    w = method.reducer.weight
    torch.testing.assert_close(w, torch.eye(128))
    torch.testing.assert_close(method.loss(z1, z2), nt_xent(z1, z2, 0.2) + low_rank_penalty(torch.eye(128)))
    # the penalty's gradient shrinks every singular value: a plain gradient step on it alone lowers the norm
    low_rank_penalty(w).backward()
    with torch.no_grad():
        stepped = w - 0.5 * w.grad
    assert low_rank_penalty(stepped).item() < low_rank_penalty(w).item()


def test_simclr_itself_is_unchanged_by_the_hook():
    z1, z2 = projections()
    torch.testing.assert_close(build("simclr").loss(z1, z2), nt_xent(z1, z2, 0.2))


@pytest.mark.parametrize("name,hparams,message", [
    ("low_dim", {"penalty": "trace"}, "kind must be one of"),
    ("low_dim", {"weight": 0}, "weight"),
    ("large_margin", {"weight": -1.0}, "weight"),
])
def test_bad_hyper_parameters_fail_when_the_method_is_built(name, hparams, message):
    with pytest.raises(ValueError, match=message):
        build(name, **hparams)


@pytest.fixture(scope="module")
def world_1000(tmp_path_factory):
    return load_world(n_train=1000, n_test=500, seed=0, root=tmp_path_factory.mktemp("world"))


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_it_beats_random_init_on_the_world(name, world_1000, knn_before_after):
    _, before, after = knn_before_after(build(name), world_1000, epochs=16)   # 240 steps of 64 images
    # Measured (one thread): 0.132 at random init; after, 0.176 (low_dim) to 0.288 (supcon). A seeded
    # run is repeatable on one CPU but not across CPUs: at 12 epochs an earlier machine gave 0.168 to
    # 0.192, another (AVX-512) large_margin 0.156 and debiased 0.162, too close to the bar.
    assert after > before + 0.025, f"kNN accuracy {before:.3f} at random init, {after:.3f} after {name}"
