"""Pixel baselines: raw pixels, PCA and PCA + LDA (Fisherfaces) on small data."""
import numpy as np
import pytest
import torch

from sslcourse.baselines import fisherfaces, pixel_baselines, pixels
from sslcourse.data import ImageDataset
from sslcourse.data.world import load_world

KEYS = {"raw_pixels", "pca", "pca_lda"}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return load_world(n_train=200, n_test=100, seed=0, root=tmp_path_factory.mktemp("data"))


def separable(n_train=200, n_test=100, classes=4, seed=0):
    """Class c is a bright horizontal band at rows 4c..4c+3 on dark noise: linearly separable."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.arange(n) % classes
        images = torch.randint(0, 60, (n, 1, 16, 16), generator=g)
        for c in range(classes):
            images[labels == c, :, 4 * c:4 * c + 4] += 180
        return images.to(torch.uint8), labels

    (train_x, train_y), (test_x, test_y) = split(n_train), split(n_test)
    return ImageDataset("bands", train_x, train_y, test_x, test_y, [f"band {c}" for c in range(classes)])


def test_accuracies_on_the_world_are_fractions_and_deterministic(tiny_world):
    first = pixel_baselines(tiny_world, n_components=20, seed=0)
    assert set(first) == KEYS
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in first.values())
    assert pixel_baselines(tiny_world, n_components=20, seed=0) == first


def test_separable_data_is_classified_almost_perfectly():
    accuracies = pixel_baselines(separable(), n_components=10)
    assert all(v >= 0.95 for v in accuracies.values()), accuracies


def test_more_components_than_images_is_capped():
    data = separable(n_train=12, n_test=8)
    assert set(pixel_baselines(data, n_components=500)) == KEYS


def test_fisherfaces_shapes_and_unit_directions(tiny_world):
    faces = fisherfaces(tiny_world, n_components=20)
    assert faces["mean"].shape == (3, 32, 32)
    assert faces["eigen"].shape == (20, 3, 32, 32)
    assert faces["fisher"].shape == (len(tiny_world.classes) - 1, 3, 32, 32)
    for key in ("eigen", "fisher"):
        norms = np.linalg.norm(faces[key].reshape(len(faces[key]), -1), axis=1)
        assert np.allclose(norms, 1.0, atol=1e-4)


def test_fisher_direction_finds_the_bands():
    # Two classes: the one discriminant direction must weigh the two bands' rows most.
    faces = fisherfaces(separable(classes=2), n_components=10)
    weight = np.abs(faces["fisher"][0, 0]).sum(axis=1)     # per row
    assert weight[:8].sum() > 0.6 * weight.sum()


def test_pixels_flattens_to_unit_range():
    x = pixels(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
    assert x.shape == (2, 48) and x.dtype == np.float32 and x.max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        pixels(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_unlabeled_data_raises_a_clear_error():
    data = separable()
    data.train_labels = None
    with pytest.raises(ValueError, match="no labels"):
        pixel_baselines(data)
    with pytest.raises(ValueError, match="no labels"):
        fisherfaces(data)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_n_components_raises(bad):
    with pytest.raises(ValueError, match="n_components"):
        pixel_baselines(separable(), n_components=bad)
