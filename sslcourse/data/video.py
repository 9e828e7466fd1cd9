"""Short videos of the world, with their exact optical flow and per-frame object maps.

A video is one scene of the world (``world.sample_scenes``) drawn T times by the world's
own renderer (``world.render``), each object moved between frames by a rigid motion:

    centre_t = centre_0 + t * velocity         (x, y: fractions of the image side)
    angle_t  = angle_0  + t * spin             (radians)

The background and the clutter stay still. Frame 0 is the scene as the world draws it, so
``load_videos(seed=s).train_images`` (the first frames) are ``load_world(seed=s).train_images``
for the same sizes and world options.
The motion comes from its own random stream, so it never changes the scenes.

Optical flow. Every shape is a signed distance function of object-frame coordinates, so the
object point seen at pixel p in frame t is known, and so is where it goes:

    flow_t(p) = centre_{t+1} + R(spin) (p - centre_t) - p        (in pixels)

where R(a) rotates by a, for the front-most object at p (the object map of frame t), and
flow_t(p) = 0 on the background. This is *forward* flow on frame t's pixel grid, the
convention of optical-flow benchmarks: frame t+1 sampled at p + flow_t(p) gives back frame t
at p (backward warping, ``warp``), except where the point is hidden in frame t+1 (another
object moved in front of it) and within about two pixels of an object's border (its
antialiased rim, and the reach of bilinear sampling). The channels are (dx, dy): x along the
columns, y down the rows, the order ``grid_sample`` uses. (One renderer detail: the crescent's
distance function is too small beyond its two cusps, so faint antialiased tails reach a few
pixels past its object map there, and move with it over the "background".)

Motion. Each object draws a speed in ``speed_range`` (fractions of the image side per frame),
a uniform direction and a spin in [-max_spin, max_spin] radians per frame. Objects stay
entirely inside the image in every frame: a velocity component that would carry an object
out is reversed, and if it still would, shortened. Objects may come to overlap as they move
(the depth order stays that of the scene), so in multi-object scenes one can hide another.
"""
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import DATA_ROOT, ImageDataset
from .world import (CLASSES, WORLD_VERSION, WorldConfig, _cached, _check_config, _check_int, _check_seed,
                    _is_number, render, sample_scenes)

VIDEO_VERSION = 1     # bump when motion or flow changes, so that stale caches are not reused
_MOTION_STREAM = 1    # spawn key of the motion's random stream, apart from the scene's


@dataclass
class VideoDataset(ImageDataset):
    """An ImageDataset of videos: ``train_images`` are the first frames, ``train_videos`` the clips.

    The trainer, kNN and linear probes read single frames (``train_images``, ``test_images``);
    video pretext tasks look their clips up in ``train_videos`` by index. Free labels (object
    maps ``masks``, ``flow``, the motion) are in ``extras["train"]`` and ``extras["test"]``.
    """
    train_videos: torch.Tensor | None = None   # (N, T, C, H, W) uint8
    test_videos: torch.Tensor | None = None    # (M, T, C, H, W) uint8

    def __post_init__(self):
        super().__post_init__()
        for split in ("train", "test"):
            videos, images = getattr(self, f"{split}_videos"), getattr(self, f"{split}_images")
            if not isinstance(videos, torch.Tensor) or videos.dtype != torch.uint8 or videos.ndim != 5 \
                    or videos.shape[0] != images.shape[0] or videos.shape[2:] != images.shape[1:]:
                got = f"{videos.dtype} {tuple(videos.shape)}" if isinstance(videos, torch.Tensor) else repr(videos)
                raise ValueError(f"{self.name}: {split}_videos must be uint8 of shape (N, T, C, H, W) matching "
                                 f"{split}_images {tuple(images.shape)}, got {got}")

    @property
    def frames(self) -> int:
        return self.train_videos.shape[1]

    def __repr__(self):
        return (f"VideoDataset({self.name!r}, train={tuple(self.train_videos.shape)}, "
                f"test={tuple(self.test_videos.shape)}, classes={len(self.classes)})")


# ----------------------------------------------------------------------------------------
# Motion, frames and flow.

def _check_speed_range(speed_range):
    if (not isinstance(speed_range, (tuple, list)) or len(speed_range) != 2
            or not all(_is_number(v) for v in speed_range) or not 0 <= speed_range[0] <= speed_range[1] <= 0.5):
        raise ValueError(f"speed_range must be a pair (min, max) with 0 <= min <= max <= 0.5 (fractions of the "
                         f"image side per frame), got {speed_range!r}")
    return float(speed_range[0]), float(speed_range[1])


def _check_spin(max_spin):
    if not _is_number(max_spin) or not 0 <= max_spin <= np.pi:
        raise ValueError(f"max_spin must be a number in [0, pi] (radians per frame), got {max_spin!r}")
    return float(max_spin)


def _streams(seed):
    """The scene stream (the world's own, so frame 0 is the world's image) and the motion stream."""
    scene = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(_check_seed(seed))
    return scene, np.random.SeedSequence(scene.entropy, spawn_key=(*scene.spawn_key, _MOTION_STREAM))


def sample_motion(scenes, frames: int, seed=0, speed_range=(0.02, 0.05), max_spin: float = 0.15):
    """Velocity (N, K, 2) as (dx, dy) per frame and spin (N, K) in radians per frame, float32.

    Drawn from ``seed``; a component that would carry an object out of the image by the last
    frame is reversed, then shortened if need be, so that every object stays inside.
    """
    frames = _check_int(frames, "frames", 2)
    low, high = _check_speed_range(speed_range)
    max_spin = _check_spin(max_spin)
    rng = np.random.default_rng(_check_seed(seed))
    n, k = scenes.cls.shape
    speed = rng.uniform(low, high, size=(n, k))
    direction = rng.uniform(0, 2 * np.pi, size=(n, k))
    spin = rng.uniform(-max_spin, max_spin, size=(n, k))
    velocity = speed[..., None] * np.stack([np.cos(direction), np.sin(direction)], axis=-1)   # (n, k, 2)
    start = np.stack([scenes.x, scenes.y], axis=-1).astype(np.float64)
    radius = (scenes.scale / 2)[..., None]                       # the shape fits in this disk
    travel = velocity * (frames - 1)
    leaves = lambda end: (end < radius) | (end > 1 - radius)     # noqa: E731
    end = np.where(leaves(start + travel), start - travel, start + travel)
    end = np.clip(end, radius, 1 - radius)                       # NaN (absent objects) stays NaN
    velocity = (end - start) / (frames - 1)
    return velocity.astype(np.float32), np.where(scenes.present, spin, np.nan).astype(np.float32)


def scenes_at(scenes, velocity, spin, t):
    """The scenes with every object moved to frame ``t`` (an int, or an array with one per scene)."""
    t = np.asarray(t, dtype=np.float32).reshape(-1, 1) if np.ndim(t) else np.float32(t)
    return dataclasses.replace(scenes, x=scenes.x + t * velocity[..., 0], y=scenes.y + t * velocity[..., 1],
                               angle=scenes.angle + t * spin)


def render_videos(scenes, velocity, spin, frames: int, config: WorldConfig = WorldConfig()):
    """-> (videos (N, T, 3, H, W) uint8, object maps (N, T, H, W) int8, -1 = background).

    All N x T frames go through the world's renderer in one call, each a moved copy of its scene.
    """
    frames = _check_int(frames, "frames", 2)
    _check_config(config)
    n = len(scenes)
    every_frame = scenes[np.repeat(np.arange(n), frames)]                 # scene i at rows i*T .. i*T + T-1
    moved = scenes_at(every_frame, np.repeat(velocity, frames, axis=0), np.repeat(spin, frames, axis=0),
                      np.tile(np.arange(frames), n))
    images, object_map = render(moved, config)
    size = config.image_size
    videos = images.reshape(n, frames, size, size, 3).transpose(0, 1, 4, 2, 3)
    return np.ascontiguousarray(videos), object_map.reshape(n, frames, size, size)


def optical_flow(masks, x, y, velocity, spin):
    """Exact forward flow between consecutive frames, in pixels: (N, T-1, 2, H, W) float32.

    masks: (N, T, H, W) object maps (slot of the front-most object, -1 = background);
    x, y: (N, K) object centres in frame 0; velocity (N, K, 2) and spin (N, K) per frame.
    """
    n, frames, size = masks.shape[0], masks.shape[1], masks.shape[-1]
    grid = (np.arange(size) + 0.5) / size                          # pixel centres in [0, 1]
    px, py = grid[None, None, :], grid[None, :, None]
    rows = np.arange(n)[:, None, None]
    flow = np.zeros((n, frames - 1, 2, size, size), np.float32)
    for t in range(frames - 1):
        slot = masks[:, t].astype(np.int64)                        # (N, H, W): who covers p in frame t
        covering = lambda a: a.astype(np.float64)[rows, np.maximum(slot, 0)]   # noqa: E731  its parameter at p
        vx, vy, turn = covering(velocity[..., 0]), covering(velocity[..., 1]), covering(spin)
        dx, dy = px - (covering(x) + t * vx), py - (covering(y) + t * vy)     # p - centre_t
        cos, sin = np.cos(turn), np.sin(turn)
        on_object = slot >= 0
        flow[:, t, 0] = np.where(on_object, vx + (cos - 1) * dx - sin * dy, 0) * size   # centre_{t+1} + R d - p
        flow[:, t, 1] = np.where(on_object, vy + sin * dx + (cos - 1) * dy, 0) * size
    return flow


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``frames`` (N, C, H, W) at p + flow(p) (bilinear), for flow (N, 2, H, W) in pixels.

    With frames t+1 and the flow of frame t, this reconstructs frame t (backward warping).
    Points that land outside the image read zero.
    """
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device), torch.arange(w, device=flow.device),
                            indexing="ij")
    x = (xs + 0.5 + flow[:, 0]) / w * 2 - 1            # pixel coordinates -> [-1, 1], align_corners=False
    y = (ys + 0.5 + flow[:, 1]) / h * 2 - 1
    return F.grid_sample(frames.float(), torch.stack([x, y], dim=-1), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------
# Data sets.

def generate_videos(n: int, seed=0, config: WorldConfig = WorldConfig(), frames: int = 8,
                    speed_range=(0.02, 0.05), max_spin: float = 0.15) -> dict:
    """Sample and render ``n`` videos of ``frames`` frames; numpy arrays (K = config.max_objects):

      videos (N, T, 3, H, W) uint8    labels (N,) int64   class of the main object
      masks (N, T, H, W) int8         object map of each frame: front-most slot, -1 = background
      flow (N, T-1, 2, H, W) float32  exact forward flow in pixels, (dx, dy), 0 on the background
      velocity (N, K, 2), spin (N, K) float32   per frame (NaN where an object is absent)
      obj_cls, obj_x, obj_y, obj_scale, obj_angle (N, K), depth (N, K), obj_present (N, K)   in frame 0
    """
    _check_int(n, "n", 1)
    scene_seed, motion_seed = _streams(seed)
    scenes = sample_scenes(n, scene_seed, config)
    velocity, spin = sample_motion(scenes, frames, motion_seed, speed_range, max_spin)
    videos, masks = render_videos(scenes, velocity, spin, frames, config)
    per_object = {f"obj_{key}": getattr(scenes, key) for key in ("cls", "x", "y", "scale", "angle")}
    return {"videos": videos, "labels": scenes.cls[:, 0].astype(np.int64), "masks": masks,
            "flow": optical_flow(masks, scenes.x, scenes.y, velocity, spin), "velocity": velocity, "spin": spin,
            **per_object, "depth": scenes.depth.astype(np.int64), "obj_present": scenes.present}


def load_videos(n_train: int = 1000, n_test: int = 500, seed: int = 0, image_size: int = 32, frames: int = 8,
                speed_range=(0.02, 0.05), max_spin: float = 0.15, root=DATA_ROOT, cache: bool = True,
                **world_options) -> VideoDataset:
    """Videos of the world as a VideoDataset, e.g. ``load_videos(500, 200, frames=8, image_size=16)``.

    Train and test use the world's seed streams (``load_world``), so the first frames are the
    world's images for the same seed, sizes and options (``world_options``: max_objects, clutter,
    ...). Each split is cached under ``root`` without its flow, which is recomputed on loading
    (it is a closed-form function of the object maps and the motion, and the largest array).
    """
    _check_int(n_train, "n_train", 1)
    _check_int(n_test, "n_test", 1)
    _check_int(seed, "seed", 0)
    frames = _check_int(frames, "frames", 2)
    speed_range, max_spin = _check_speed_range(speed_range), _check_spin(max_spin)
    try:
        config = WorldConfig(image_size=image_size, **world_options)
    except TypeError as err:
        names = [f.name for f in dataclasses.fields(WorldConfig)]
        raise ValueError(f"unknown world option in {sorted(world_options)}; expected some of {names}") from err
    splits, tensors = {}, {}
    for split_id, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        stream = np.random.SeedSequence([seed, split_id])       # load_world's streams
        key = repr((WORLD_VERSION, VIDEO_VERSION, dataclasses.asdict(config), seed, split, n, frames,
                    speed_range, max_spin))
        name = f"videos-{split}-{n}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        make = lambda: {k: v for k, v in generate_videos(n, stream, config, frames, speed_range,  # noqa: E731
                                                         max_spin).items() if k != "flow"}
        d = _cached(Path(root), name, cache, make)
        d["flow"] = optical_flow(d["masks"], d["obj_x"], d["obj_y"], d["velocity"], d["spin"])
        tensors[split] = torch.from_numpy(d.pop("videos")), torch.from_numpy(d["labels"])
        splits[split] = d
    (train_v, train_y), (test_v, test_y) = tensors["train"], tensors["test"]
    return VideoDataset("videos", train_v[:, 0].contiguous(), train_y, test_v[:, 0].contiguous(), test_y,
                        list(CLASSES), extras={"train": splits["train"], "test": splits["test"], "config": config,
                                               "frames": frames, "speed_range": speed_range,
                                               "max_spin": max_spin},
                        train_videos=train_v, test_videos=test_v)
