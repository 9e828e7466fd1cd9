"""Videos of the world: exact optical flow, object maps, determinism, caching and bad input."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslcourse.data import load_dataset, video
from sslcourse.data.video import (VideoDataset, generate_videos, load_videos, optical_flow, sample_motion, warp)
from sslcourse.data.world import CLASSES, WorldConfig, generate, load_world, sample_scenes


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)   # NaN == NaN here


def uniform_label(masks: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """(N, H, W) object maps -> True where every pixel within ``radius`` (a square) has the same label:
    away from object borders, where pixels are partly covered."""
    m = masks.float()[:, None]
    k = 2 * radius + 1
    return ((F.max_pool2d(m, k, 1, radius) == m) & (-F.max_pool2d(-m, k, 1, radius) == m))[:, 0]


def destination_pixel(flow: torch.Tensor):
    """(N, 2, H, W) flow in pixels -> row and column of the pixel that p + flow(p) falls in."""
    n, _, h, w = flow.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    col = (cols + 0.5 + flow[:, 0]).floor().long().clamp(0, w - 1)
    row = (rows + 0.5 + flow[:, 1]).floor().long().clamp(0, h - 1)
    return row, col


# ---------------------------------------------------------------- shapes, determinism, the world's frame 0

def test_keys_shapes_and_dtypes():
    d = generate_videos(6, seed=0, config=WorldConfig(max_objects=3, image_size=16), frames=5)
    assert d["videos"].shape == (6, 5, 3, 16, 16) and d["videos"].dtype == np.uint8
    assert d["masks"].shape == (6, 5, 16, 16) and d["masks"].dtype == np.int8
    assert d["flow"].shape == (6, 4, 2, 16, 16) and d["flow"].dtype == np.float32
    assert d["labels"].shape == (6,) and d["labels"].dtype == np.int64
    assert d["velocity"].shape == (6, 3, 2) and d["spin"].shape == d["obj_x"].shape == d["depth"].shape == (6, 3)
    present = d["obj_present"]
    assert np.isfinite(d["velocity"][present]).all() and np.isnan(d["velocity"][~present]).all()


def test_same_seed_same_videos_other_seed_other_videos():
    assert_same(generate_videos(8, seed=3), generate_videos(8, seed=3))
    assert not np.array_equal(generate_videos(8, seed=3)["videos"], generate_videos(8, seed=4)["videos"])


def test_the_first_frame_is_the_worlds_image_of_the_same_scene():
    for config in (WorldConfig(), WorldConfig(max_objects=3, image_size=24)):
        d, still = generate_videos(40, seed=5, config=config), generate(40, seed=5, config=config)
        np.testing.assert_array_equal(d["videos"][:, 0], still["images"].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(d["masks"][:, 0], still["mask"])
        np.testing.assert_array_equal(d["labels"], still["labels"])
    assert not np.array_equal(d["videos"][:, 1], d["videos"][:, 0])          # and then things move


def test_load_videos_first_frames_are_load_worlds_images(tmp_path):
    data = load_videos(n_train=50, n_test=30, seed=2, image_size=16, frames=4, root=tmp_path, cache=False,
                       max_objects=2)
    still = load_world(n_train=50, n_test=30, seed=2, root=tmp_path, cache=False, image_size=16, max_objects=2)
    assert isinstance(data, VideoDataset) and data.name == "videos" and data.classes == CLASSES
    assert data.train_videos.shape == (50, 4, 3, 16, 16) and data.test_videos.shape == (30, 4, 3, 16, 16)
    assert data.frames == 4 and data.image_size == 16 and data.channels == 3
    for split in ("train", "test"):
        assert torch.equal(getattr(data, f"{split}_images"), getattr(still, f"{split}_images"))
        assert torch.equal(getattr(data, f"{split}_images"), getattr(data, f"{split}_videos")[:, 0])
        assert torch.equal(getattr(data, f"{split}_labels"), getattr(still, f"{split}_labels"))
    assert data.extras["train"]["flow"].shape == (50, 3, 2, 16, 16)
    assert data.extras["config"] == WorldConfig(image_size=16, max_objects=2)
    assert "VideoDataset('videos', train=(50, 4, 3, 16, 16)" in repr(data)
    assert list(tmp_path.iterdir()) == []                                     # cache=False writes nothing


def test_load_dataset_knows_the_videos(tmp_path):
    data = load_dataset("videos", root=tmp_path, seed=1, n_train=20, n_test=10)
    assert isinstance(data, VideoDataset) and data.train_videos.shape[:2] == (20, 8) and len(data.test_images) == 10


def test_cache_round_trip_recomputes_the_flow(tmp_path, monkeypatch):
    first = load_videos(n_train=30, n_test=20, seed=1, image_size=16, root=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(name.startswith("videos-") and name.endswith(".npz") for name in files)

    def no_generation(*args, **kwargs):
        raise AssertionError("the second load must read the cache")

    monkeypatch.setattr(video, "generate_videos", no_generation)
    second = load_videos(n_train=30, n_test=20, seed=1, image_size=16, root=tmp_path)
    assert torch.equal(first.train_videos, second.train_videos) and torch.equal(first.test_labels, second.test_labels)
    assert_same(first.extras["train"], second.extras["train"])
    monkeypatch.undo()
    fresh = generate_videos(30, np.random.SeedSequence([1, 0]), WorldConfig(image_size=16))
    np.testing.assert_array_equal(second.extras["train"]["flow"], fresh["flow"])   # the flow is not stored
    with pytest.raises(AssertionError, match="cache"):                            # other motion, other file
        monkeypatch.setattr(video, "generate_videos", no_generation)
        load_videos(n_train=30, n_test=20, seed=1, image_size=16, root=tmp_path, max_spin=0.0)


def test_hundreds_of_videos_in_seconds():
    start = time.perf_counter()
    d = generate_videos(500, seed=0, frames=8)
    seconds = time.perf_counter() - start
    assert d["videos"].shape == (500, 8, 3, 32, 32)
    assert seconds < 8, f"500 videos of 8 frames at 32 px took {seconds:.1f} s (about 1 s expected on 2 CPU cores)"


# ---------------------------------------------------------------- motion and flow

def test_objects_move_within_the_limits_and_stay_inside():
    config = WorldConfig(max_objects=3)
    scenes = sample_scenes(2000, seed=6, config=config)
    velocity, spin = sample_motion(scenes, frames=8, seed=7, speed_range=(0.02, 0.05), max_spin=0.15)
    present = scenes.present
    speed = np.linalg.norm(velocity, axis=-1)[present]
    assert speed.max() <= 0.05 + 1e-6 and np.abs(spin[present]).max() <= 0.15
    assert np.mean(speed >= 0.02 - 1e-6) > 0.8            # only objects near a side are slowed down
    radius = scenes.scale[present] / 2
    for t in (0, 7):
        for centre, v in ((scenes.x, velocity[..., 0]), (scenes.y, velocity[..., 1])):
            at_t = (centre + t * v)[present]
            assert (at_t >= radius - 1e-5).all() and (at_t <= 1 - radius + 1e-5).all()
    d = generate_videos(200, seed=8, frames=8)
    assert ((d["masks"] == 0).sum(axis=(2, 3)) > 0).all()   # the object shows in every frame


def test_flow_is_zero_on_the_background_and_moves_the_object_pixels():
    d = generate_videos(50, seed=9, config=WorldConfig(max_objects=3))
    background = d["masks"][:, :-1] == -1
    assert (d["flow"][np.broadcast_to(background[:, :, None], d["flow"].shape)] == 0).all()
    magnitude = np.linalg.norm(d["flow"], axis=2)[~background]
    assert np.median(magnitude) > 0.3                      # pixels per frame, at 32 px


def test_flow_carries_each_object_point_to_the_same_point_of_the_object():
    """In the object's own frame (the renderer's u, v), p in frame t and p + flow in frame t+1 coincide."""
    d = generate_videos(30, seed=10, config=WorldConfig(max_objects=3, image_size=32), frames=5)
    size, n = 32, 30
    centres = (np.arange(size) + 0.5) / size
    px, py = np.meshgrid(centres, centres, indexing="xy")
    checked = 0
    for t in range(4):
        i, row, col = np.nonzero(d["masks"][:, t] >= 0)
        k = d["masks"][:, t][i, row, col]
        x = px[row, col] + np.array([0, 1])[:, None] * d["flow"][i, t, 0, row, col] / size   # before, after
        y = py[row, col] + np.array([0, 1])[:, None] * d["flow"][i, t, 1, row, col] / size
        when = t + np.array([0, 1])[:, None]
        cx = d["obj_x"][i, k] + when * d["velocity"][i, k, 0]
        cy = d["obj_y"][i, k] + when * d["velocity"][i, k, 1]
        angle = d["obj_angle"][i, k] + when * d["spin"][i, k]
        u = np.cos(angle) * (x - cx) + np.sin(angle) * (y - cy)    # world.render's object frame, times radius
        v = np.cos(angle) * (y - cy) - np.sin(angle) * (x - cx)
        np.testing.assert_allclose(u[1], u[0], atol=1e-5)
        np.testing.assert_allclose(v[1], v[0], atol=1e-5)
        checked += len(i)
    assert checked > 0.05 * n * 4 * size * size            # the objects cover about 9 % of the pixels


@pytest.mark.parametrize("max_objects", [1, 3])
def test_warping_frame_t_plus_1_by_the_flow_gives_back_frame_t(max_objects):
    """Backward warping: frame t+1 sampled (bilinearly) at p + flow_t(p) equals frame t at p, on every
    pixel away from object borders (2 px, the reach of bilinear sampling plus the antialiased rim)
    whose point is still visible in frame t+1; in multi-object videos the points that are not
    are hidden by an object in front. Objects are flat-coloured, so the check runs at 128 px, where
    a flow that is off by a pixel or two (zero, half, without the spin) lands on other colours."""
    d = generate_videos(12, seed=11, config=WorldConfig(max_objects=max_objects, image_size=128), frames=6)
    videos, masks = torch.from_numpy(d["videos"]).float(), torch.from_numpy(d["masks"]).long()
    flow = torch.from_numpy(d["flow"])
    no_spin = torch.from_numpy(optical_flow(d["masks"], d["obj_x"], d["obj_y"], d["velocity"], 0 * d["spin"]))
    wrong = {"zero": 0 * flow, "half": flow / 2, "without the spin": no_spin}
    rows = torch.arange(len(videos))[:, None, None]
    checked, hidden, misses = 0, 0, {name: 0 for name in wrong}
    for t in range(videos.shape[1] - 1):
        row, col = destination_pixel(flow[:, t])
        there = masks[:, t + 1][rows, row, col]
        interior = uniform_label(masks[:, t]) & (masks[:, t] >= 0)
        visible = interior & (there == masks[:, t]) & uniform_label(masks[:, t + 1])[rows, row, col]
        # Where the point does not show in frame t+1, an object in front of it does.
        lost = interior & ~(there == masks[:, t])
        i, y, x = torch.nonzero(lost, as_tuple=True)
        depth = torch.from_numpy(d["depth"])
        assert (there[lost] >= 0).all() and (depth[i, there[lost]] < depth[i, masks[:, t][i, y, x]]).all()
        error = (warp(videos[:, t + 1], flow[:, t]) - videos[:, t]).abs().amax(dim=1)
        assert error[visible].max() < 0.01, error[visible].max()                  # 0..255 scale
        for name, other in wrong.items():
            misses[name] += (((warp(videos[:, t + 1], other[:, t]) - videos[:, t]).abs().amax(dim=1) > 10)
                             & visible).sum().item()
        checked += visible.sum().item()
        hidden += lost.sum().item()
    assert checked > 30_000
    assert all(count > 20 for count in misses.values()), misses      # the true flow: none
    assert (hidden > 0) == (max_objects > 1)


def test_the_background_and_the_clutter_stay_still():
    """Pixels that are background in two consecutive frames, away from objects, do not change.
    Crescents are left out: their distance function (a disk minus a disk, max(a, -b)) is too
    small beyond the two cusps, so faint antialiased tails reach past the object map there."""
    d = generate_videos(200, seed=12, frames=4)
    keep = d["labels"] != CLASSES.index("crescent")
    videos, masks = torch.from_numpy(d["videos"][keep]), torch.from_numpy(d["masks"][keep]).long()
    for t in range(3):
        still = uniform_label(masks[:, t]) & uniform_label(masks[:, t + 1]) & (masks[:, t] < 0) & (masks[:, t + 1] < 0)
        assert still.float().mean() > 0.4
        assert torch.equal(videos[:, t][still[:, None].expand_as(videos[:, t])],
                           videos[:, t + 1][still[:, None].expand_as(videos[:, t])])


# ---------------------------------------------------------------- bad input

def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="frames must be an int >= 2, got 1"):
        generate_videos(4, frames=1)
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        generate_videos(0)
    with pytest.raises(ValueError, match=r"speed_range must be a pair \(min, max\) with 0 <= min <= max <= 0.5"):
        generate_videos(4, speed_range=(0.05, 0.01))
    with pytest.raises(ValueError, match=r"max_spin must be a number in \[0, pi\]"):
        generate_videos(4, max_spin=-0.1)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        generate_videos(4, seed=-1)
    with pytest.raises(ValueError, match="n_train must be an int >= 1, got 0"):
        load_videos(n_train=0, root=tmp_path, cache=False)
    with pytest.raises(ValueError, match="unknown world option"):
        load_videos(10, 10, root=tmp_path, cache=False, colour=1)
    with pytest.raises(ValueError, match="image_size must be an int in"):
        load_videos(10, 10, image_size=8, root=tmp_path, cache=False)
    images = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"train_videos must be uint8 of shape \(N, T, C, H, W\) matching"):
        VideoDataset("v", images, None, images, None, [], train_videos=torch.zeros(4, 2, 3, 8, 8, dtype=torch.uint8),
                     test_videos=torch.zeros(4, 2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="test_videos must be uint8"):
        VideoDataset("v", images, None, images, None, [], train_videos=torch.zeros(4, 2, 3, 16, 16, dtype=torch.uint8))
