"""Two renderings of the world (clean and shifted) and the renderer's free labels as targets."""
import dataclasses

import numpy as np
import pytest
import torch

from sslcourse.data import DATASETS, load_dataset
from sslcourse.data.domains import (BLUR_SIGMA, NOISE_STD, PALETTE, PALETTE_OFFSET, free_labels, load_domains,
                                    object_pairs, object_silhouettes, shift_images)
from sslcourse.data.world import CLASSES, load_world, render, sample_scenes


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    """200 training and 50 test images at 32 px, up to 3 objects each."""
    return load_domains(n_train=200, n_test=50, seed=0, root=tmp_path_factory.mktemp("data"))


def test_clean_images_are_load_worlds_and_generation_is_deterministic(domains, tmp_path):
    world = load_world(n_train=200, n_test=50, seed=0, max_objects=3, root=tmp_path, cache=False)
    assert torch.equal(domains.train_images, world.train_images) and torch.equal(domains.test_images, world.test_images)
    assert torch.equal(domains.train_labels, world.train_labels)
    again = load_domains(n_train=200, n_test=50, seed=0, root=tmp_path, cache=False)
    other = load_domains(n_train=200, n_test=50, seed=1, root=tmp_path, cache=False)
    for split in ("train", "test"):
        assert torch.equal(again.extras["shifted"][split], domains.extras["shifted"][split])
        for key in ("mask", "front", "count"):
            assert torch.equal(again.extras["free"][split][key], domains.extras["free"][split][key])
    assert not torch.equal(other.extras["shifted"]["train"], domains.extras["shifted"]["train"])
    # The noise of a split comes from its own stream: the same images get other noise as "test".
    images = domains.train_images[:20]
    assert not torch.equal(shift_images(images, 0, "train"), shift_images(images, 0, "test"))
    assert domains.extras["shifted"]["train"].shape == domains.train_images.shape
    assert domains.extras["shifted"]["train"].dtype == torch.uint8


def test_load_dataset_knows_world_domains(domains, tmp_path):
    data = load_dataset("world-domains", root=tmp_path, seed=0, n_train=200, n_test=50)
    assert data.name == "world-domains" and "world-domains" in DATASETS
    assert torch.equal(data.test_images, domains.test_images)
    for split in ("train", "test"):
        assert torch.equal(data.extras["shifted"][split], domains.extras["shifted"][split])
        assert torch.equal(data.extras["free"][split]["count"], domains.extras["free"][split]["count"])


def test_the_palette_is_the_designed_colour_map():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    out = shift_images(images, noise_std=0, blur_sigma=0)
    for n, y, x in ((0, 0, 0), (1, 3, 5), (2, 7, 2)):
        rgb = [images[n, c, y, x].item() / 255 for c in range(3)]
        for c in range(3):
            value = sum(PALETTE[c][k] * rgb[k] for k in range(3)) + PALETTE_OFFSET[c]
            assert out[n, c, y, x].item() == round(min(max(value, 0), 1) * 255)


def test_the_blur_is_a_normalised_gaussian_of_the_designed_width():
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    assert torch.equal(shift_images(flat, noise_std=0, palette=False), flat)          # weights sum to 1
    impulse = torch.zeros(1, 3, 17, 17, dtype=torch.uint8)
    impulse[..., 8, 8] = 255
    spread = shift_images(impulse, noise_std=0, palette=False)[0, 0].double()
    offsets = torch.arange(17, dtype=torch.float64) - 8
    variance = (spread.sum(dim=1) * offsets ** 2).sum() / spread.sum()                 # along y
    assert variance.item() == pytest.approx(BLUR_SIGMA ** 2, rel=0.15)                 # rounding to uint8
    assert spread[8, 8] < 255 / 2 and spread[8, 9] > 0


def test_the_sensor_noise_has_the_designed_std(domains):
    clean = domains.train_images[:100]
    noiseless = shift_images(clean, 0, "train", noise_std=0).double() / 255
    residual = shift_images(clean, 0, "train").double() / 255 - noiseless
    inside = (noiseless > 0.2) & (noiseless < 0.8)                                     # away from clipping
    assert residual[inside].std().item() == pytest.approx(NOISE_STD, rel=0.05)
    assert abs(residual[inside].mean().item()) < 0.002
    # The whole shift, pixel by pixel: on average about a tenth of the intensity range.
    change = (domains.extras["shifted"]["train"].double() - domains.train_images.double()).abs().mean() / 255
    assert 0.06 < change.item() < 0.2


def test_free_labels_match_the_rendered_images(tmp_path):
    data = load_world(n_train=200, n_test=10, seed=3, max_objects=3, root=tmp_path, cache=False)
    labels, config = data.extras["train"], data.extras["config"]
    free = free_labels(labels, cells=4)
    object_map = torch.as_tensor(labels["mask"])
    # Count: every object shows in the object map.
    visible = torch.tensor([len(set(m.unique().tolist()) - {-1}) for m in object_map])
    assert torch.equal(free["count"], visible)
    # Mask: coverage fractions, counted cell by cell.
    for n in (0, 7, 123):
        for row in range(4):
            for col in range(4):
                cell = object_map[n, 8 * row:8 * row + 8, 8 * col:8 * col + 8]
                assert free["mask"][n, row, col].item() == pytest.approx((cell >= 0).sum().item() / 64)
    # Object pixels differ from the background, rendered without the objects; far from any
    # object the image is that background exactly.
    scenes = sample_scenes(200, np.random.SeedSequence([3, 0]), config)
    background, _ = render(dataclasses.replace(scenes, depth=np.full_like(scenes.depth, -1)), config)
    diff = torch.from_numpy(np.abs(background.astype(int) - data.train_images.permute(0, 2, 3, 1).numpy()).sum(-1))
    assert (diff[object_map >= 0] > 0).all()
    silhouettes = object_silhouettes(labels, 32)
    assert torch.equal(silhouettes.any(dim=1), object_map >= 0)
    # Antialiased edges reach half a pixel past a silhouette, which may fall between pixel centres.
    # The crescent's distance (a max of two disks' distances) underestimates the true one near its
    # tips, so its antialiasing reaches further: images with a crescent are left out here.
    near = torch.nn.functional.max_pool2d(silhouettes.any(dim=1).float().unsqueeze(1), 5, 1, 2).squeeze(1) > 0
    no_crescent = torch.from_numpy((labels["obj_cls"] != CLASSES.index("crescent")).all(axis=1))
    assert no_crescent.sum() > 100
    assert (diff[no_crescent][~near[no_crescent]] == 0).all()
    # Depth order: where two labelled objects overlap, the object map shows the one in front.
    checked = 0
    for p, (i, j) in enumerate(object_pairs(3)):
        for n in torch.nonzero(free["front"][:, p] >= 0).flatten().tolist():
            both = silhouettes[n, i] & silhouettes[n, j] & ((object_map[n] == i) | (object_map[n] == j))
            front = i if free["front"][n, p] == 1 else j
            assert (object_map[n][both] == front).all()
            checked += both.sum().item()
        # A pair that does not overlap has no label; an absent object neither.
        unlabelled = free["front"][:, p] == -1
        assert not (silhouettes[:, i] & silhouettes[:, j]).flatten(1).any(dim=1)[unlabelled].any()
    assert checked > 0 and free["front"].ge(0).any(dim=0).all()
    depth = torch.as_tensor(labels["depth"])
    assert ((free["front"] == 1) == ((depth[:, [0, 0, 1]] < depth[:, [1, 2, 2]]) & (free["front"] >= 0))).all()


def test_free_labels_of_one_object_worlds_have_no_pairs(small_world):
    free = free_labels(small_world.extras["test"], cells=8)
    assert free["front"].shape == (256, 0) and (free["count"] == 1).all()
    assert free["mask"].shape == (256, 8, 8) and 0 < free["mask"].mean() < 1


@pytest.mark.parametrize("call,message", [
    (lambda d: shift_images(d.train_images.float()), "uint8 tensor of shape"),
    (lambda d: shift_images(d.train_images[:, :1]), r"\(N, 3, H, W\)"),
    (lambda d: shift_images(d.train_images, split="val"), "split must be 'train' or 'test'"),
    (lambda d: shift_images(d.train_images, seed=-1), "seed must be an int >= 0"),
    (lambda d: shift_images(d.train_images, noise_std=-0.1), "noise_std must be a finite number >= 0"),
    (lambda d: shift_images(d.train_images, blur_sigma=11.0), "too large"),
    (lambda d: free_labels({"mask": 1}), "free labels from load_world"),
    (lambda d: free_labels(d.extras["train"], cells=5), "cells must divide the image side 32"),
    (lambda d: free_labels(d.extras["train"], cells=0), "cells must be a positive int"),
])
def test_domains_reject_bad_input(domains, call, message):
    with pytest.raises(ValueError, match=message):
        call(domains)
