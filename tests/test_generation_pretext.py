"""Generation-based pretext tasks (unit 1): autoencoders, inpainting, super-resolution,
colorization and split-brain autoencoders; their pseudo labels, losses, decoder, and that they learn."""
import copy
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslcourse.data.world import load_world
from sslcourse.evaluation import extract_features
from sslcourse.methods import METHODS, build_method
from sslcourse.methods.autoencoder import corrupt_images, pretrain_layerwise
from sslcourse.methods.colorization import (ab_bins, ab_distribution, annealed_mean, colorization_batch,
                                            decode_colours, lab_of, quantize_ab, rebalanced_cross_entropy,
                                            rebalancing_weights, smooth_distribution)
from sslcourse.methods.inpainting import mask_images, masked_reconstruction_loss, region_mask
from sslcourse.methods.split_brain import SplitBrainEncoder, split_brain_batch
from sslcourse.methods.super_resolution import downsample, low_resolution_pair
from sslcourse.models import ConvDecoder, build_backbone
from sslcourse.models.decoders import image_channels, start_size
from sslcourse.transforms import from_float, lab_to_rgb, rgb_to_lab, to_float

NAMES = ["autoencoder", "denoising_autoencoder", "inpainting", "super_resolution", "colorization", "split_brain"]


def images(n=8, size=32, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)


def build(name, size=32, backbone="convnet", **hparams):
    torch.manual_seed(0)
    return build_method(name, build_backbone(backbone), image_size=size, **hparams)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return load_world(n_train=64, n_test=16, seed=0, root=tmp_path_factory.mktemp("world"))


# ---------------------------------------------------------------- shared interface

def test_the_six_tasks_are_registered_pretext_tasks_listed_with_their_papers(capsys):
    from sslcourse.cli import main
    from sslcourse.methods.pretext import PretextTask

    assert main(["methods"]) == 0
    listing = capsys.readouterr().out.splitlines()
    for name in NAMES:
        assert issubclass(METHODS[name], PretextTask) and METHODS[name].name == name
        row = next(i for i, line in enumerate(listing) if line.startswith(name + " "))
        assert METHODS[name].paper in listing[row + 1]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_and_loss(name):
    x = images(16, size=16)
    methods = [build(name, size=16) for _ in range(2)]
    losses = [m.training_step(x, torch.Generator().manual_seed(1)) for m in methods]
    assert losses[0].item() == losses[1].item()
    assert losses[0].dtype == torch.float32 and losses[0].ndim == 0


@pytest.mark.parametrize("name,hparams", [("denoising_autoencoder", {}), ("autoencoder", {"noise": "gaussian",
                                                                                            "level": 0.1}),
                                          ("inpainting", {"mode": "random_blocks"})])
def test_random_corruptions_follow_the_generator(name, hparams):
    method, x = build(name, **hparams), images()
    first, again, other = (method.make_pseudo_labels(x, torch.Generator().manual_seed(s))[0] for s in (1, 1, 2))
    assert torch.equal(first, again) and not torch.equal(first, other)


NOT_THE_DEFAULTS = {
    "autoencoder": {"decoder_width": 32, "noise": "gaussian", "level": 0.2},
    "denoising_autoencoder": {"decoder_width": 16, "noise": "mask", "level": 0.5},
    "inpainting": {"decoder_width": 32, "mode": "random_blocks", "fraction": 0.2, "n_blocks": 3, "overlap": 2,
                   "overlap_weight": 5.0},
    "super_resolution": {"decoder_width": 32, "factor": 2},
    "colorization": {"decoder_width": 32, "downsample": 2, "rebalance": False, "lambd": 0.3, "sigma": 3.0,
                     "temperature": 0.5},
    "split_brain": {"decoder_width": 32, "downsample": 2, "l_bins": 10},
}


def test_the_two_autoencoders_differ_only_in_their_default_corruption():
    assert build("autoencoder").hparams() == {"image_size": 32, "decoder_width": 64, "noise": "none", "level": 0.0}
    assert build("denoising_autoencoder").hparams() == {"image_size": 32, "decoder_width": 64, "noise": "mask",
                                                        "level": 0.25}
    assert build("denoising_autoencoder", noise="none").hparams()["noise"] == "none"


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_rebuilds_the_method_from_its_hparams_and_weights(name):
    method = build(name, size=16, **NOT_THE_DEFAULTS[name]).eval()
    assert method.hparams() == {"image_size": 16, **NOT_THE_DEFAULTS[name]}
    twin = build_method(name, build_backbone("convnet"), **method.hparams()).eval()
    twin.load_state_dict(method.state_dict())
    inputs, _ = method.make_pseudo_labels(images(4, 16), torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = method.predict(inputs), twin.predict(inputs)
    for a, b in zip(*((p if isinstance(p, tuple) else (p,)) for p in (ours, theirs)), strict=True):   # split-brain: 2
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,kwargs,error,match", [
    ("autoencoder", {"noise": "salt"}, ValueError, r"noise must be one of \('none', 'mask', 'gaussian'\)"),
    ("autoencoder", {"noise": "gaussian", "level": -0.1}, ValueError, "level must be a finite number >= 0"),
    ("denoising_autoencoder", {"level": 1.0}, ValueError, r"masked fraction, a number in \[0, 1\)"),
    ("autoencoder", {"decoder_width": 0}, ValueError, "decoder_width must be a positive int"),
    ("inpainting", {"mode": "left"}, ValueError, r"mode must be one of \('center', 'random_blocks'\)"),
    ("inpainting", {"fraction": 1.0}, ValueError, r"fraction must be a number in \(0, 1\)"),
    ("inpainting", {"fraction": 1e-4}, ValueError, "gives blocks of 0 x 0 px"),
    ("inpainting", {"overlap": -1}, ValueError, "overlap must be an int >= 0"),
    ("inpainting", {"overlap_weight": float("inf")}, ValueError, "overlap_weight must be a finite number >= 0"),
    ("super_resolution", {"factor": 3}, ValueError, r"factor must be one of \(2, 4\)"),
    ("super_resolution", {"factor": 4, "size": 18}, ValueError, "18 x 18 must be divisible by the factor 4"),
    ("colorization", {"downsample": 3}, ValueError, "downsample must be 1, 2, 4 or 8"),
    ("colorization", {"lambd": 0.0}, ValueError, r"lambd must be a number in \(0, 1\]"),
    ("colorization", {"sigma": 0.0}, ValueError, "sigma must be a finite number > 0"),
    ("colorization", {"rebalance": "yes"}, TypeError, "rebalance must be True or False"),
    ("split_brain", {"l_bins": 0}, ValueError, "l_bins must be a positive int"),
])
def test_bad_arguments_raise_clearly(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        build(name, **kwargs)


@pytest.mark.parametrize("name,match", [("colorization", "colour images and a 3-channel backbone"),
                                        ("split_brain", "the images must have 3")])
def test_colour_tasks_refuse_grey_backbones(name, match):
    with pytest.raises(ValueError, match=match):
        build_method(name, build_backbone("convnet", channels=1))


def test_split_brain_builds_its_halves_only_like_a_known_backbone():
    class Custom(nn.Module):
        out_dim = 4

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

    with pytest.raises(ValueError, match="must be one of convnet, resnet18; got a Custom"):
        build_method("split_brain", Custom())
    with pytest.raises(ValueError, match="must be one of convnet, resnet18; got a ViT"):
        build_method("split_brain", build_backbone("vit"))


# ---------------------------------------------------------------- the decoder

@pytest.mark.parametrize("size", [16, 32])
def test_decoder_turns_convnet_features_into_an_image_of_the_size(size):
    backbone = build_backbone("convnet")
    decoder = ConvDecoder(backbone.out_dim, 3, size)
    out = decoder(backbone(to_float(images(4, size))))
    assert out.shape == (4, 3, size, size) and out.dtype == torch.float32


def test_decoder_and_the_generation_tasks_on_resnet18():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18").eval()
    with torch.no_grad():
        for size in (16, 32):
            features = backbone(to_float(images(2, size)))
            assert ConvDecoder(backbone.out_dim, 3, size, width=32)(features).shape == (2, 3, size, size)
        x = images(2, 16)
        for name in ["autoencoder", "inpainting", "super_resolution", "colorization"]:
            method = build_method(name, backbone, image_size=16, decoder_width=32).eval()
            inputs, _ = method.make_pseudo_labels(x, torch.Generator())
            expected = (2, len(ab_bins()), 4, 4) if name == "colorization" else (2, 3, 16, 16)
            assert method.predict(inputs).shape == expected
        split = build_method("split_brain", backbone, image_size=16, decoder_width=32).eval()
        assert split.backbone.out_dim == 1024 and split.backbone(to_float(x)).shape == (2, 1024)
        assert [p.shape for p in split.predict(to_float(x))] == [(2, len(ab_bins()), 4, 4), (2, 20, 4, 4)]


def test_decoder_start_sizes_and_input_checks():
    assert [start_size(s) for s in (32, 16, 8, 4, 28, 96, 5)] == [(4, 3), (4, 2), (4, 1), (4, 0), (7, 2), (3, 5),
                                                                  (5, 0)]
    assert ConvDecoder(10, 2, 28, width=16)(torch.randn(3, 10)).shape == (3, 2, 28, 28)
    with pytest.raises(ValueError, match=r"features of shape \(N, 10\), got \(3, 11\)"):
        ConvDecoder(10, 2, 8)(torch.randn(3, 11))
    with pytest.raises(ValueError, match="out_size must be a positive int"):
        ConvDecoder(10, 2, 0)
    assert image_channels(build_backbone("convnet", channels=2)) == 2


@pytest.mark.parametrize("name", NAMES)
def test_reconstruct_pictures_in_eval_mode_and_restores_the_mode(name, world):
    method = build(name)
    x = world.test_images[:6]
    method.train()
    pictures = method.reconstruct(x, gen := torch.Generator().manual_seed(3))
    assert method.training                                      # the mode came back
    assert len(pictures) == 3
    for picture in pictures:
        assert picture.shape == x.shape and picture.dtype == torch.float32
        assert 0 <= picture.min() and picture.max() <= 1
    torch.testing.assert_close(pictures[2], x.float() / 255)   # the last one is always the original
    again = method.reconstruct(x, gen.manual_seed(3))
    for a, b in zip(pictures, again):
        assert torch.equal(a, b)
    if name in ("colorization", "split_brain"):
        return
    method.eval()                                    # the middle one is the network's eval-mode drawing
    inputs, _ = method.make_pseudo_labels(x, gen.manual_seed(3))
    torch.testing.assert_close(pictures[0], from_float(inputs))
    torch.testing.assert_close(pictures[1], from_float(method.predict(inputs)))


def test_colour_reconstructions_keep_the_lightness_they_were_given(world):
    x = world.test_images[:6]
    original_light = rgb_to_lab(x.float() / 255)[:, 0]
    grey, colourised, _ = build("colorization").reconstruct(x)
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-3) and torch.allclose(grey[:, 1], grey[:, 2], atol=1e-3)
    for picture in (grey, colourised, build("split_brain").reconstruct(x)[0]):
        # the L given to the network comes back: only colours out of the sRGB gamut, clamped, move it a little
        assert (rgb_to_lab(picture)[:, 0] - original_light).abs().mean() < 2.0
    from_ab = build("split_brain").reconstruct(x)[1]     # the ab half's lightness under the true ab
    assert (rgb_to_lab(from_ab)[:, 0] - original_light).abs().mean() > 2.0     # an untrained guess: not the truth


@pytest.mark.parametrize("name", ["autoencoder", "inpainting"])
def test_reconstruct_refuses_images_of_another_size(name):
    with pytest.raises(ValueError, match="built for 32 px"):
        build(name).reconstruct(images(2, size=16), torch.Generator())


# ---------------------------------------------------------------- autoencoders

def test_plain_autoencoder_reconstructs_its_own_input():
    x = images()
    inputs, targets = corrupt_images(x, torch.Generator(), "none", 0.0)
    torch.testing.assert_close(targets, to_float(x), rtol=0, atol=1e-6)
    assert torch.equal(inputs, targets)
    method = build("autoencoder")
    loss = method.training_step(x, torch.Generator())
    torch.testing.assert_close(loss, F.mse_loss(method.decoder(method.backbone(to_float(x))), to_float(x)))


@pytest.mark.parametrize("level", [0.1, 0.25, 0.5])
def test_masking_noise_blackens_exactly_that_fraction_of_each_image(level):
    x = images(6, 16).clamp(min=1)             # nothing is black already: every masked component changes
    inputs, targets = corrupt_images(x, torch.Generator().manual_seed(0), "mask", level)
    changed = inputs != targets
    assert (changed.flatten(1).sum(dim=1) == round(level * 3 * 16 * 16)).all()
    assert (inputs[changed] == -1.0).all()                             # black in to_float's space
    assert len({tuple(c.flatten().nonzero()[:, 0].tolist()) for c in changed}) == 6   # other places per image
    torch.testing.assert_close(targets, to_float(x), rtol=0, atol=1e-6)


def test_gaussian_noise_is_added_in_image_space():
    x = images(16, 16)
    inputs, targets = corrupt_images(x, torch.Generator().manual_seed(0), "gaussian", 0.1)
    noise = (inputs - targets) * 0.5                                   # back to [0, 1] units
    assert abs(noise.mean().item()) < 0.005 and abs(noise.std().item() - 0.1) < 0.005


def test_pretrain_layerwise_lowers_every_blocks_reconstruction_loss(tmp_path):
    data = load_world(n_train=128, n_test=8, seed=0, root=tmp_path, image_size=16)
    torch.manual_seed(0)
    backbone = build_backbone("convnet")
    first_only = copy.deepcopy(backbone)
    first_only.blocks = first_only.blocks[:1]
    before = copy.deepcopy(backbone)
    losses = pretrain_layerwise(backbone, data.train_images, epochs_per_block=2, batch_size=32, lr=3e-3, seed=0)
    assert len(losses) == 4 and all(len(block) == 3 for block in losses)
    for b, block in enumerate(losses):
        assert block[-1] < 0.7 * block[0], f"block {b}: {block}"
        assert not torch.equal(before.blocks[b][0].weight, backbone.blocks[b][0].weight)
    # The first block is frozen while the later ones train: training it alone ends in the same state.
    pretrain_layerwise(first_only, data.train_images, epochs_per_block=2, batch_size=32, lr=3e-3, seed=0)
    for a, b in zip(backbone.blocks[0].state_dict().values(), first_only.blocks[0].state_dict().values()):
        assert torch.equal(a, b)


def test_pretrain_layerwise_rejects_bad_input():
    with pytest.raises(TypeError, match="needs a backbone with .blocks"):
        pretrain_layerwise(nn.Conv2d(3, 3, 1), images())
    with pytest.raises(ValueError, match="epochs_per_block must be a positive int"):
        pretrain_layerwise(build_backbone(), images(), epochs_per_block=0)
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        pretrain_layerwise(build_backbone(), images()[0])


# ---------------------------------------------------------------- inpainting

def test_central_mask_is_the_centred_quarter_for_every_image():
    x = images(3, 32)
    mask = region_mask(x, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 32, 32) and mask.dtype == torch.bool and mask.device == x.device
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 8:24] = True
    assert all(torch.equal(m[0], expected) for m in mask)
    assert torch.equal(mask, region_mask(x, torch.Generator().manual_seed(1)))    # no randomness
    assert region_mask(images(1, 16), torch.Generator(), fraction=0.09).sum() == 25   # round(16 * 0.3) = 5


def test_random_blocks_cover_at_most_the_fraction_and_are_squares():
    x = images(64, 32)
    mask = region_mask(x, torch.Generator().manual_seed(0), "random_blocks", fraction=0.25, n_blocks=4)
    area = mask.flatten(1).sum(dim=1)
    assert (area <= 256).all() and (area >= 64).all() and (area == 256).any()   # 4 blocks of 8 x 8
    assert len({tuple(m.nonzero().flatten().tolist()) for m in mask}) > 60          # positions differ
    single = region_mask(x, torch.Generator().manual_seed(0), "random_blocks", fraction=0.25, n_blocks=1)
    for m in single[:, 0]:
        rows, cols = m.any(dim=1).nonzero().flatten(), m.any(dim=0).nonzero().flatten()
        assert len(rows) == len(cols) == 16 and m.sum() == 256 and rows[-1] - rows[0] == 15


def test_masked_input_is_grey_inside_the_hole_and_the_image_outside():
    x = images(4, 16)
    mask = region_mask(x, torch.Generator(), "random_blocks")
    inputs = mask_images(x, mask)
    hole = mask.expand_as(inputs)
    assert (inputs[hole] == 0).all()
    assert torch.equal(inputs[~hole], to_float(x)[~hole])


def weighted_loss_reference(prediction, target, mask, overlap, overlap_weight):
    """The context encoder's reconstruction loss, one pixel at a time: weight 1 in the hole,
    overlap_weight within ``overlap`` px (in rows and columns) of it, 0 elsewhere."""
    n, c, h, w = target.shape
    total, weights = 0.0, 0.0
    for i, y, x in itertools.product(range(n), range(h), range(w)):
        if mask[i, 0, y, x]:
            weight = 1.0
        elif mask[i, 0, max(0, y - overlap):y + overlap + 1, max(0, x - overlap):x + overlap + 1].any():
            weight = overlap_weight
        else:
            continue
        total = total + weight * ((prediction[i, :, y, x] - target[i, :, y, x]) ** 2).sum()
        weights += weight * c
    return total / weights


@pytest.mark.parametrize("mode,overlap", [("center", 1), ("random_blocks", 2), ("center", 0)])
def test_masked_loss_matches_a_loop_over_pixels_in_value_and_gradient(mode, overlap):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    prediction = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    mask = region_mask(images(2, 8), torch.Generator().manual_seed(3), mode, fraction=0.2, n_blocks=2)
    loss = masked_reconstruction_loss(prediction, target, mask, overlap, 10.0)
    reference = weighted_loss_reference(prediction, target, mask, overlap, 10.0)
    torch.testing.assert_close(loss, reference)
    grad, = torch.autograd.grad(loss, prediction)
    grad_reference, = torch.autograd.grad(reference, prediction)
    torch.testing.assert_close(grad, grad_reference)


def test_masked_loss_ignores_pixels_away_from_the_hole():
    target, prediction = torch.zeros(1, 3, 16, 16), torch.randn(1, 3, 16, 16, requires_grad=True)
    mask = region_mask(images(1, 16), torch.Generator())                      # rows and columns 4..11
    loss = masked_reconstruction_loss(prediction, target, mask, overlap=1, overlap_weight=10.0)
    far = torch.ones(16, 16, dtype=torch.bool)
    far[3:13, 3:13] = False                                                   # the hole and its 1 px band
    changed = prediction.detach().clone()
    changed[..., far] = 100.0
    torch.testing.assert_close(masked_reconstruction_loss(changed, target, mask), loss)
    loss.backward()
    assert (prediction.grad[..., far] == 0).all() and (prediction.grad[..., 4:12, 4:12] != 0).all()
    band = prediction.grad[0, :, 3, 5] / prediction.detach()[0, :, 3, 5]      # 10x the weight of the hole
    torch.testing.assert_close(band, 10 * prediction.grad[0, :, 5, 5] / prediction.detach()[0, :, 5, 5])


def test_masked_loss_rejects_bad_input():
    x = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="the mask is empty"):
        masked_reconstruction_loss(x, x, mask)
    with pytest.raises(ValueError, match=r"mask must be bool of shape \(2, 1, 8, 8\), got torch.float32"):
        masked_reconstruction_loss(x, x, mask.float())
    with pytest.raises(ValueError, match="same shape"):
        masked_reconstruction_loss(x, x[:1], mask)


# ---------------------------------------------------------------- super-resolution

@pytest.mark.parametrize("factor", [2, 4])
def test_downsampling_takes_the_mean_of_each_block(factor):
    x = images(2, 16)
    small = downsample(x, factor)
    assert small.shape == (2, 3, 16 // factor, 16 // factor)
    unit = x.double() / 255
    for i, c, y, z in itertools.product(range(2), range(3), range(16 // factor), range(16 // factor)):
        block = unit[i, c, y * factor:(y + 1) * factor, z * factor:(z + 1) * factor]
        assert small[i, c, y, z].item() == pytest.approx(block.mean().item(), abs=1e-6)


def test_low_resolution_input_loses_the_detail_and_keeps_the_rest():
    x = images(2, 16)
    inputs, targets = low_resolution_pair(x, 4)
    assert inputs.shape == targets.shape == (2, 3, 16, 16)
    torch.testing.assert_close(targets, to_float(x), rtol=0, atol=1e-6)
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    torch.testing.assert_close(low_resolution_pair(flat, 4)[0], to_float(flat))     # nothing to lose
    checker = ((torch.arange(16)[:, None] + torch.arange(16)) % 2 * 255).to(torch.uint8).expand(1, 3, 16, 16)
    torch.testing.assert_close(low_resolution_pair(checker, 2)[0], torch.zeros(1, 3, 16, 16))   # all detail: grey


def test_super_resolution_rejects_sizes_the_factor_does_not_divide():
    with pytest.raises(ValueError, match="10 x 10 must be divisible by the factor 4"):
        low_resolution_pair(images(1, 10), 4)
    with pytest.raises(ValueError, match=r"factor must be one of \(2, 4\), got 2.0"):
        downsample(images(1, 16), 2.0)


# ---------------------------------------------------------------- colorization

def test_lab_round_trips_on_the_worlds_images(world):
    rgb = world.train_images.double() / 255
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, rtol=0, atol=1e-9)
    lab = lab_of(world.train_images)
    assert lab.dtype == torch.float32 and lab.shape == world.train_images.shape
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 100


def test_in_gamut_bins_lie_on_the_grid_and_are_reached_by_srgb_colours():
    centres = ab_bins()
    assert centres.shape == (261, 2) and (centres % 10 == 0).all()
    assert [0.0, 0.0] in centres.tolist()
    assert centres[:, 0].min() == -90 and centres[:, 0].max() == 100
    assert centres[:, 1].min() == -110 and centres[:, 1].max() == 90
    # Bins reached by the corners of the RGB cube (pure primaries and secondaries) are in the set.
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64).T.reshape(1, 3, 1, 8)
    ab = rgb_to_lab(corners)[0, 1:, 0].T
    assert all((torch.round(c / 10) * 10).tolist() in centres.tolist() for c in ab)


def test_quantize_ab_maps_bin_centres_to_themselves():
    centres = ab_bins().float().T.reshape(1, 2, 1, -1)
    assert torch.equal(quantize_ab(centres)[0, 0], torch.arange(261))


def test_quantize_ab_sends_every_srgb_colour_to_its_nearest_bin(world):
    g = torch.Generator().manual_seed(0)
    random_colours = torch.randint(0, 256, (1, 3, 100, 100), generator=g, dtype=torch.uint8)
    for x in (random_colours, world.train_images):
        ab = lab_of(x)[:, 1:]
        bins = quantize_ab(ab)
        assert bins.shape == (len(x), *x.shape[-2:]) and bins.dtype == torch.long
        points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double()
        distances = torch.cdist(points, ab_bins())
        chosen = distances.gather(1, bins.reshape(-1, 1))[:, 0]
        torch.testing.assert_close(chosen, distances.min(dim=1).values, rtol=0, atol=1e-6)


def test_quantize_ab_puts_colours_outside_the_gamut_in_the_nearest_bin_of_their_cell():
    ab = torch.tensor([[120.0, -120.0], [-100.0, 100.0], [300.0, 0.0]]).T.reshape(1, 2, 1, 3)
    cells = torch.tensor([[120.0, -120.0], [-100.0, 100.0], [120.0, 0.0]], dtype=torch.float64)
    expected = torch.cdist(cells, ab_bins()).argmin(dim=1)
    assert torch.equal(quantize_ab(ab)[0, 0], expected)
    with pytest.raises(ValueError, match=r"ab must have 2 channels \(N, 2, H, W\)"):
        quantize_ab(torch.zeros(1, 3, 2, 2))


def rebalancing_reference(p, lambd, sigma):
    """Zhang et al.'s eq. 4 one bin at a time: smooth p with a Gaussian over the bin centres,
    mix with the uniform distribution, invert, normalise so that the expected weight is 1."""
    centres, q = ab_bins().tolist(), len(p)
    smoothed = [sum(p[j] * math.exp(-((centres[i][0] - centres[j][0]) ** 2 + (centres[i][1] - centres[j][1]) ** 2)
                                    / (2 * sigma ** 2)) for j in range(q)) for i in range(q)]
    smoothed = [s / sum(smoothed) for s in smoothed]
    weights = [1 / ((1 - lambd) * s + lambd / q) for s in smoothed]
    expectation = sum(s * w for s, w in zip(smoothed, weights))
    return (torch.tensor([w / expectation for w in weights], dtype=torch.float64),
            torch.tensor(smoothed, dtype=torch.float64))


@pytest.mark.parametrize("lambd,sigma", [(0.5, 5.0), (0.1, 10.0), (1.0, 5.0)])
def test_rebalancing_weights_match_the_papers_equation(lambd, sigma):
    g = torch.Generator().manual_seed(0)
    counts = torch.rand(261, generator=g, dtype=torch.float64) ** 8 * 1000   # a few common bins, many rare
    counts[:100] = 0
    weights = rebalancing_weights(counts, lambd, sigma)
    reference, smoothed = rebalancing_reference((counts / counts.sum()).tolist(), lambd, sigma)
    torch.testing.assert_close(weights, reference)
    torch.testing.assert_close(smooth_distribution(counts, sigma), smoothed)
    assert (smooth_distribution(counts, sigma) * weights).sum().item() == pytest.approx(1.0, abs=1e-12)   # E_p~[w] = 1
    if lambd == 1.0:
        torch.testing.assert_close(weights, torch.ones(261, dtype=torch.float64))
    else:   # rarer bins weigh more
        order = smoothed.argsort()
        assert (weights[order].diff() <= 1e-12).all()


def test_rebalancing_rejects_a_distribution_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"p must be 261 non-negative numbers \(one per ab bin\)"):
        rebalancing_weights(torch.ones(313, dtype=torch.float64))
    with pytest.raises(ValueError, match="p must be 261 non-negative numbers"):
        rebalancing_weights(-torch.ones(261, dtype=torch.float64))


def test_rebalanced_cross_entropy_matches_a_loop_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(6, (2, 3, 3), generator=g)
    weights = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    loss = rebalanced_cross_entropy(logits, targets, weights)
    reference = sum(-weights[targets[i, y, x]] * torch.log_softmax(logits[i, :, y, x], dim=0)[targets[i, y, x]]
                    for i, y, x in itertools.product(range(2), range(3), range(3))) / 18
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(torch.autograd.grad(loss, logits)[0], torch.autograd.grad(reference, logits)[0])
    with pytest.raises(ValueError, match=r"need targets \(N, h, w\) and weights \(Q,\)"):
        rebalanced_cross_entropy(logits, targets[:, :2], weights)


def test_colorization_sees_the_grey_image_and_predicts_its_block_colours(world):
    x = world.train_images[:8]
    inputs, targets = colorization_batch(x, downsample=4)
    assert inputs.shape == x.shape and targets.shape == (8, 8, 8) and targets.dtype == torch.long
    grey = inputs * 0.5 + 0.5
    torch.testing.assert_close(grey[:, 0], grey[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(grey[:, 0], grey[:, 2], rtol=0, atol=1e-5)
    lab = lab_of(x)
    torch.testing.assert_close(rgb_to_lab(grey)[:, 0], lab[:, 0], rtol=0, atol=1e-3)     # the same lightness
    assert torch.equal(targets, quantize_ab(F.avg_pool2d(lab[:, 1:], 4)))
    assert torch.equal(colorization_batch(x, 1)[1], quantize_ab(lab[:, 1:]))


def test_annealed_mean_goes_from_the_mean_to_the_mode():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 261, 2, 2, generator=g)
    centres = ab_bins().float()
    mean = torch.einsum("nqhw,qc->nchw", logits.softmax(dim=1), centres)
    torch.testing.assert_close(annealed_mean(logits, 1.0), mean)
    mode = centres[logits.argmax(dim=1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits, 1e-4), mode, rtol=0, atol=1e-3)
    assert annealed_mean(logits).shape == (2, 2, 2, 2)


def test_decoding_confident_predictions_of_the_true_bins_recolours_the_image(world):
    x = world.train_images[:4]
    lab = lab_of(x)
    _, targets = colorization_batch(x, downsample=1)
    logits = 50.0 * F.one_hot(targets, 261).permute(0, 3, 1, 2).float()
    rgb = decode_colours(logits, lab[:, :1])
    assert rgb.shape == x.shape and rgb.min() >= 0 and rgb.max() <= 1
    error = (rgb_to_lab(rgb)[:, 1:] - lab[:, 1:]).norm(dim=1)                 # within a bin's half-diagonal
    assert error.median() < 5 and error.quantile(0.95) < 7.5


def test_colorization_for_data_rebalances_with_the_training_distribution(world):
    method = METHODS["colorization"].for_data(build_backbone("convnet"), world)
    prior = ab_distribution(world.train_images, 4)
    torch.testing.assert_close(method.prior, prior)
    torch.testing.assert_close(method.class_weights, rebalancing_weights(prior).float())
    assert (smooth_distribution(prior) * method.class_weights.double()).sum().item() == pytest.approx(1, abs=1e-5)
    plain = METHODS["colorization"].for_data(build_backbone("convnet"), world, rebalance=False)
    assert torch.equal(plain.class_weights, torch.ones(261))
    x = world.train_images[:4]
    inputs, targets = method.make_pseudo_labels(x, torch.Generator())
    logits = method.predict(inputs)
    torch.testing.assert_close(method.training_step(x, torch.Generator()),
                               rebalanced_cross_entropy(logits, targets, method.class_weights))
    pictures = method.colorize(x)
    assert pictures.shape == (4, 3, 32, 32) and pictures.min() >= 0 and pictures.max() <= 1 and method.training


# ---------------------------------------------------------------- split-brain

def test_split_brain_encoder_concatenates_two_half_width_halves_and_its_blocks_agree():
    method = build("split_brain").eval()
    encoder = method.backbone
    assert isinstance(encoder, SplitBrainEncoder) and encoder.out_dim == 128
    assert [b[0].out_channels for b in encoder.l_encoder.blocks] == [8, 16, 32, 64]
    assert image_channels(encoder.l_encoder) == 1 and image_channels(encoder.ab_encoder) == 2
    x = to_float(images(4))
    light, ab = encoder.split(x)
    expected = torch.cat([encoder.l_encoder(light), encoder.ab_encoder(ab)], dim=1)
    torch.testing.assert_close(encoder(x), expected)
    h = x
    for block in encoder.blocks:
        h = block(h)
    assert len(encoder.blocks) == 4 and h.shape == (4, 128, 2, 2)
    torch.testing.assert_close(h.mean(dim=(2, 3)), expected)
    assert extract_features(encoder, images(4)).shape == (4, 128)


def test_split_brain_targets_are_the_other_halfs_bins():
    x = images(4, 16)
    inputs, (ab_targets, l_targets) = split_brain_batch(x, downsample=4, l_bins=20)
    torch.testing.assert_close(inputs, to_float(x))
    small = F.avg_pool2d(lab_of(x), 4)
    assert torch.equal(ab_targets, quantize_ab(small[:, 1:]))
    assert torch.equal(l_targets, torch.floor(small[:, 0] / 5).long().clamp(max=19))


def test_each_split_brain_half_learns_only_from_predicting_the_other():
    method = build("split_brain", size=16)
    inputs, (ab_targets, l_targets) = method.make_pseudo_labels(images(4, 16), torch.Generator())
    ab_logits, l_logits = method.predict(inputs)
    assert ab_logits.shape == (4, 261, 4, 4) and l_logits.shape == (4, 20, 4, 4)
    F.cross_entropy(ab_logits, ab_targets).backward()                    # the L -> ab half's loss alone
    assert method.backbone.l_encoder.blocks[0][0].weight.grad.abs().sum() > 0
    assert method.backbone.ab_encoder.blocks[0][0].weight.grad is None
    torch.testing.assert_close(method.loss((ab_logits, l_logits), (ab_targets, l_targets)),
                               F.cross_entropy(ab_logits, ab_targets) + F.cross_entropy(l_logits, l_targets))


# ---------------------------------------------------------------- the command line

def test_cli_pretrains_colorization_and_the_checkpoint_rebuilds_it(tmp_path):
    from sslcourse.cli import main

    out = tmp_path / "run"
    code = main(["pretrain", "--method", "colorization", "--epochs", "1", "--batch-size", "32", "--n-train", "64",
                 "--n-test", "64", "--device", "cpu", "--no-progress", "--out", str(out),
                 "--data-dir", str(tmp_path / "data")])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "colorization" and set(results["pretrained"]) >= {"knn", "linear_100pct"}
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    twin = build_method("colorization", build_backbone("convnet"), **state["hparams"])
    twin.load_state_dict(state["model"])
    assert not torch.equal(twin.class_weights, torch.ones(261))          # the data set's weights came back


# ---------------------------------------------------------------- learning on the world (slow)
#
# 2,000 world images at 16 px, 8 epochs at batch 32 (496 steps), each task with its defaults; the
# weighted kNN of the class on the backbone's features, against the same network at its random
# init, on 1,000 test images. Measured (one thread): kNN 0.135 at random init (split-brain's
# encoder: 0.165) -> autoencoder 0.185, denoising 0.192, inpainting 0.194, super-resolution 0.206,
# colorization 0.186, split-brain 0.210. The tasks regenerate pixels, and what the world's pixels
# mostly show is the background texture and the object's colour and place, so the class (the
# object's shape) gains only a few points in this budget. At batch 64 (248 steps) the gains were
# 0.027 to 0.06, with the linear probe's about as small.


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_generation_tasks_beat_random_init_in_knn(name, tmp_path, knn_before_after):
    data = load_world(n_train=2000, n_test=1000, seed=0, root=tmp_path, image_size=16)
    torch.manual_seed(0)
    method = METHODS[name].for_data(build_backbone("convnet"), data)
    history, before, after = knn_before_after(method, data, epochs=8, batch_size=32)
    assert history["loss"][-1] < history["loss"][0]
    assert after > before + 0.03, f"kNN accuracy {before:.3f} at random init, {after:.3f} after {name}"
