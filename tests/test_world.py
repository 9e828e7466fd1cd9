"""The procedural world: determinism, caching, speed, free labels and difficulty."""
import dataclasses
import time

import matplotlib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from sslcourse.data import ImageDataset, world
from sslcourse.data.world import (CLASSES, Scenes, WorldConfig, generate, load_world, render, sample_scenes,
                                  show_world)

matplotlib.use("Agg")


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)   # NaN == NaN here


def test_same_seed_same_world_and_different_seed_different_world():
    assert_same(generate(50, seed=3), generate(50, seed=3))
    assert not np.array_equal(generate(50, seed=3)["images"], generate(50, seed=4)["images"])


def test_keys_shapes_and_dtypes():
    d = generate(20, seed=0, config=WorldConfig(max_objects=3))
    assert d["images"].shape == (20, 32, 32, 3) and d["images"].dtype == np.uint8
    assert d["mask"].shape == (20, 32, 32) and d["mask"].dtype == np.int8
    assert d["labels"].dtype == np.int64 and d["colour"].shape == (20, 3)
    assert d["depth"].shape == d["obj_cls"].shape == (20, 3) and d["obj_colour"].shape == (20, 3, 3)
    for key in ("hue", "x", "y", "scale", "angle"):
        assert d[key].shape == (20,) and np.isfinite(d[key]).all(), key
    assert ((0 <= d["angle"]) & (d["angle"] < 2 * np.pi)).all()
    assert ((0 <= d["colour"]) & (d["colour"] <= 1)).all()


def test_render_is_a_pure_function_of_the_scene():
    scenes = sample_scenes(1100, seed=1)                # more than one render chunk
    images, omap = render(scenes, WorldConfig())
    part_images, part_map = render(scenes[1020:1030], WorldConfig())
    np.testing.assert_array_equal(images[1020:1030], part_images)
    np.testing.assert_array_equal(omap[1020:1030], part_map)
    # A video frame: the same scene with the object moved; only the object pixels change.
    moved = dataclasses.replace(scenes[:5], x=scenes.x[:5] + 0.05)
    assert not np.array_equal(render(moved, WorldConfig())[0], images[:5])


def test_train_and_test_are_disjoint_and_test_does_not_depend_on_n_train(tmp_path):
    data = load_world(n_train=400, n_test=300, seed=0, root=tmp_path, cache=False)
    assert isinstance(data, ImageDataset) and data.name == "world" and data.classes == CLASSES
    assert data.train_images.shape == (400, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_labels.dtype == torch.int64
    train = {bytes(image) for image in data.train_images.numpy()}
    assert not any(bytes(image) in train for image in data.test_images.numpy())
    other = load_world(n_train=100, n_test=300, seed=0, root=tmp_path, cache=False)
    assert torch.equal(other.test_images, data.test_images)
    assert_same(other.extras["test"], data.extras["test"])
    assert list(tmp_path.iterdir()) == []               # cache=False writes nothing


def test_cache_round_trip(tmp_path, monkeypatch):
    first = load_world(n_train=200, n_test=100, seed=1, root=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(name.endswith(".npz") for name in files)   # no temp file left
    assert all((tmp_path / name).stat().st_mode & 0o444 == 0o444 for name in files)

    def no_generation(*args, **kwargs):
        raise AssertionError("the second load must read the cache")

    monkeypatch.setattr(world, "generate", no_generation)
    second = load_world(n_train=200, n_test=100, seed=1, root=tmp_path)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)
    assert_same(first.extras["train"], second.extras["train"])
    assert second.extras["config"] == WorldConfig()
    with pytest.raises(AssertionError, match="cache"):  # another config is another file
        load_world(n_train=200, n_test=100, seed=1, root=tmp_path, clutter=0)


def test_ten_thousand_images_in_a_few_seconds():
    start = time.perf_counter()
    images = generate(10_000, seed=0)["images"]
    seconds = time.perf_counter() - start
    assert images.shape == (10_000, 32, 32, 3)
    assert seconds < 15, f"10,000 images took {seconds:.1f} s (about 3 s expected on 2 CPU cores)"


def test_mask_position_and_colour_agree_with_the_pixels():
    d = generate(500, seed=2)
    obj = d["mask"] == 0
    area = obj.sum(axis=(1, 2))
    assert (area > 0).all() and (d["mask"] >= -1).all() and (d["mask"] <= 0).all()
    centre = (np.arange(32) + 0.5) / 32
    cx = (obj * centre[None, None, :]).sum(axis=(1, 2)) / area
    cy = (obj * centre[None, :, None]).sum(axis=(1, 2)) / area
    assert np.abs(cx - d["x"]).max() < 1 / 32 and np.abs(cy - d["y"]).max() < 1 / 32   # within a pixel
    # Inside the object, away from its antialiased edge (all 8 neighbours are object too; with
    # 4, pixels at concave corners can be partly covered), pixels have exactly the object's colour.
    inner = np.zeros_like(obj)
    inner[:, 1:-1, 1:-1] = np.all([obj[:, 1 + a:31 + a, 1 + b:31 + b] for a in (-1, 0, 1) for b in (-1, 0, 1)], axis=0)
    assert inner.sum() > 20 * len(obj)
    expected = np.broadcast_to(np.round(d["colour"] * 255)[:, None, None, :], d["images"].shape)
    assert np.abs(d["images"][inner].astype(int) - expected[inner]).max() <= 1


def test_count_and_depth_order_agree_with_the_object_map():
    config = WorldConfig(max_objects=3)
    scenes = sample_scenes(300, seed=3, config=config)
    _, omap = render(scenes, config)
    visible = np.array([len(np.unique(m[m >= 0])) for m in omap])
    np.testing.assert_array_equal(visible, scenes.count)            # every object shows
    assert set(np.unique(scenes.count)) == {1, 2, 3}
    for depth, count in zip(scenes.depth, scenes.count):              # ranks 0..count-1, then -1
        assert sorted(depth[:count]) == list(range(count)) and (depth[count:] == -1).all()
    # Render each object alone: where it would be seen but the scene shows another object,
    # that other object must be in front of it (smaller depth rank).
    rows = np.arange(len(scenes))[:, None, None]
    hidden_pixels = 0
    for k in range(3):
        alone = dataclasses.replace(scenes, present=scenes.present & (np.arange(3) == k),
                                    depth=np.where(np.arange(3) == k, scenes.depth, -1))
        _, solo = render(alone, config)
        covered = (solo == k) & (omap != k)
        assert (omap[covered] >= 0).all()                          # never covered by background
        front = scenes.depth[np.broadcast_to(rows, omap.shape)[covered], omap[covered]]
        assert (front < scenes.depth[:, k][np.broadcast_to(rows, omap.shape)[covered]]).all()
        hidden_pixels += covered.sum()
    assert hidden_pixels > 0                                       # overlaps do happen


def test_colour_shortcut():
    shortcut = generate(1000, seed=4, config=WorldConfig(colour_shortcut=1.0))
    np.testing.assert_array_equal(np.round(shortcut["hue"] * 10) % 10, shortcut["labels"])
    half = generate(2000, seed=4, config=WorldConfig(colour_shortcut=0.5))
    assert 0.5 < np.mean(np.round(half["hue"] * 10) % 10 == half["labels"]) < 0.6
    # Without the shortcut, a classifier on the hue alone is at chance (10 %).
    train, test = generate(2000, seed=5), generate(2000, seed=6)
    bins = lambda d: np.minimum((d["hue"] * 20).astype(int), 19)
    table = np.zeros((20, 10))
    np.add.at(table, (bins(train), train["labels"]), 1)
    accuracy = np.mean(table.argmax(axis=1)[bins(test)] == test["labels"])
    assert accuracy < 0.16, accuracy


def test_classes_are_balanced():
    for config in (WorldConfig(), WorldConfig(max_objects=3)):
        counts = np.bincount(generate(1000, seed=7, config=config)["labels"], minlength=10)
        np.testing.assert_array_equal(counts, 100)


def test_image_size_changes_resolution_not_scene():
    small, large = generate(20, seed=8), generate(20, seed=8, config=WorldConfig(image_size=64))
    assert large["images"].shape == (20, 64, 64, 3) and large["mask"].shape == (20, 64, 64)
    for key in ("labels", "x", "y", "scale", "angle", "colour"):
        np.testing.assert_array_equal(small[key], large[key])
    # Object areas, as fractions of the image, agree up to the edge pixels.
    area = lambda d: (d["mask"] == 0).mean(axis=(1, 2))
    assert np.abs(area(small) - area(large)).max() < 0.03


def polar_shape_features(d: dict, size: int = 32) -> np.ndarray:
    """Rotation-invariant shape code: the object mask sampled on circles around its centre,
    then the magnitudes of its Fourier series along the angle."""
    radius = np.linspace(0.15, 1.0, 8)[None, :, None] * d["scale"][:, None, None] / 2
    theta = np.linspace(0, 2 * np.pi, 32, endpoint=False)[None, None, :]
    col = np.clip(((d["x"][:, None, None] + radius * np.cos(theta)) * size).astype(int), 0, size - 1)
    row = np.clip(((d["y"][:, None, None] + radius * np.sin(theta)) * size).astype(int), 0, size - 1)
    inside = d["mask"][np.arange(len(col))[:, None, None], row, col] == 0
    return np.abs(np.fft.rfft(inside.astype(float), axis=2)).reshape(len(col), -1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 100 steps suffice here
def test_raw_pixels_are_poor_but_the_shape_gives_the_class():
    train, test = generate(2000, seed=9), generate(1000, seed=10)
    flat = lambda d: d["images"].reshape(len(d["images"]), -1) / 255.0
    x_train, x_test = flat(train), flat(test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    # One BLAS thread: on a shared 2-core machine more threads make this several times slower.
    with threadpool_limits(1):
        pixels = LogisticRegression(C=0.01, max_iter=100).fit((x_train - mean) / std, train["labels"])
        raw = pixels.score((x_test - mean) / std, test["labels"])
        shape = LogisticRegression(max_iter=1000).fit(polar_shape_features(train), train["labels"])
        shaped = shape.score(polar_shape_features(test), test["labels"])
    assert raw < 0.25, f"raw pixels should be poor at the class (measured 0.14), got {raw:.3f}"
    assert shaped > 0.9, f"the shape alone should give the class (measured 1.00), got {shaped:.3f}"


@pytest.mark.parametrize("options, words", [
    ({"image_size": 8}, "image_size must be an int in [16, 1024], got 8"),
    ({"image_size": 32.0}, "image_size"),
    ({"max_objects": 0}, "max_objects"),
    ({"clutter": -1}, "clutter"),
    ({"colour_shortcut": 1.5}, "colour_shortcut must be a number in [0, 1], got 1.5"),
    ({"scale_range": (0.8, 0.4)}, "scale_range must be a pair"),
    ({"texture_contrast": (0.1,)}, "texture_contrast"),
])
def test_bad_config_raises_clear_errors(options, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        WorldConfig(**options)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        generate(0)
    with pytest.raises(ValueError, match="n must be an int"):
        sample_scenes(2.5)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        generate(4, seed=-1)
    with pytest.raises(ValueError, match="unknown world option"):
        load_world(10, 10, root=tmp_path, cache=False, colour=1)
    with pytest.raises(TypeError, match="Scenes"):
        render({"x": 1}, WorldConfig())
    assert isinstance(sample_scenes(3), Scenes)


def test_show_world_returns_a_figure():
    figure = show_world(n=4, seed=0, config=WorldConfig(max_objects=2))
    assert len(figure.axes) == 4 and figure.axes[0].get_title().split()[0] in CLASSES
    matplotlib.pyplot.close(figure)
