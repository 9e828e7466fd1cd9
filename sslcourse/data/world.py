"""The course's procedural world: coloured shapes on textured backgrounds, with free labels.

No data set can be downloaded, so the course draws its own. Each image shows one
*main* object whose shape is the class (10 shapes), plus everything a good
representation should ignore: the object's colour, position, scale and rotation, a
textured background and a few small clutter strokes. Because we drew every image,
we also know its *free labels*: colour, hue, position, scale, angle, a per-pixel
object map, the number of objects and their depth order.

The world is built in two steps, kept apart on purpose:

1. ``sample_scenes(n, seed, config) -> Scenes``: all randomness. A scene is plain
   numpy arrays: per object (N, K) class, centre x, y, scale, angle, colour, depth
   rank, present flag; per image the background texture; per image the clutter.
2. ``render(scenes, config) -> (images, object_map)``: no randomness at all, a pure
   function of the parameters, vectorised over the batch.

Later units reuse the same scenes instead of rewriting the world: a video renders
one scene with ``x``, ``y`` and ``angle`` moved over time, and since every shape is a
signed distance function of *object-frame* coordinates, the optical flow of an object
pixel is the rigid motion of its object, known in closed form. Sounds and captions
are functions of the same per-object parameters.

Conventions: coordinates are fractions of the image side, x to the right and y down,
(0, 0) the top-left corner. ``scale`` is the diameter of the disk that holds the shape,
as a fraction of the image side. ``depth`` is a rank, 0 = front-most; objects are
painted back to front and the object map shows the front-most object (-1 =
background). Clutter lies behind every object.
"""
import dataclasses
import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write
from . import DATA_ROOT, ImageDataset

CLASSES = ["circle", "triangle", "square", "star", "plus",
           "ring", "crescent", "heart", "arrow", "L-shape"]
# With colour_shortcut > 0, an object takes its class's hue with that probability.
CLASS_HUES = np.arange(len(CLASSES)) / len(CLASSES)
# Bump when sampling or rendering changes, so that stale caches are not reused.
WORLD_VERSION = 2
_NOISE_GRID = 6   # value-noise backgrounds: a 6x6 grid of random values, smoothly interpolated
_CHUNK = 1024     # images rendered at once: bounds memory, keeps arrays in cache


# ----------------------------------------------------------------------------------------
# Validation at the public boundary.

def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) \
        and bool(np.isfinite(value))


def _check_int(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {expected}, got {value!r}")
    return int(value)


def _check_fraction(value, name):
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_seed(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return _check_int(seed, "seed", 0)


def _check_config(config):
    if not isinstance(config, WorldConfig):
        raise TypeError(f"config must be a WorldConfig, got {type(config).__name__}")
    return config


@dataclass(frozen=True)
class WorldConfig:
    """What the world looks like. ``sample_scenes`` and ``render`` share one config.

    image_size       side of the square RGB images, in pixels (>= 16)
    max_objects      objects per image, drawn uniformly in 1..max_objects; with several,
                     every object is shrunk by 1/sqrt(max_objects) so the scene is not a pile
    clutter          at most this many small distractor strokes and dots per image
    colour_shortcut  probability that an object's hue is its class's fixed hue (shortcut learning)
    scale_range      (min, max) object diameter as a fraction of the image side
    texture_contrast (min, max) luminance contrast of the background texture; (0, 0) = flat
    max_angle        objects are turned by an angle drawn uniformly in [0, max_angle) radians;
                     0 keeps every shape upright, which rotation prediction (unit 2) needs
    """
    image_size: int = 32
    max_objects: int = 1
    clutter: int = 3
    colour_shortcut: float = 0.0
    scale_range: tuple = (0.45, 0.75)
    texture_contrast: tuple = (0.08, 0.25)
    max_angle: float = 2 * math.pi

    def __post_init__(self):
        _check_int(self.image_size, "image_size", 16, 1024)
        _check_int(self.max_objects, "max_objects", 1, 16)
        _check_int(self.clutter, "clutter", 0, 32)
        _check_fraction(self.colour_shortcut, "colour_shortcut")
        if not _is_number(self.max_angle) or not 0 <= self.max_angle <= 2 * math.pi:
            raise ValueError(f"max_angle must be a number of radians in [0, 2 pi], got {self.max_angle!r}")
        for name, low in (("scale_range", 0.05), ("texture_contrast", 0.0)):
            value = getattr(self, name)
            if (not isinstance(value, (tuple, list)) or len(value) != 2
                    or not all(_is_number(v) for v in value)
                    or not low <= value[0] <= value[1] <= 1):
                raise ValueError(f"{name} must be a pair (min, max) with {low} <= min <= max <= 1, "
                                 f"got {value!r}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))  # lists -> hashable tuple


@dataclass
class Scenes:
    """Parameters of N scenes with up to K objects and C clutter items: plain numpy arrays.

    Per object (N, K): ``cls`` (-1 if absent), ``x``, ``y``, ``scale``, ``angle``, ``hue``,
    ``rgb`` (N, K, 3) in [0, 1], ``depth`` (rank, 0 = front, -1 if absent), ``present``.
    Slot 0 is the main (largest) object; present objects fill the first slots.
    Background (N,): ``bg_kind`` (0 grating, 1 checker, 2 noise), ``bg_rgb`` (N, 2, 3) the two
    texture colours, ``bg_freq`` (cycles per image), ``bg_angle``, ``bg_phase``, ``bg_noise``
    (N, 6, 6) value-noise grid. Clutter (N, C): segment ends ``clutter_a``, ``clutter_b``
    (N, C, 2) as (x, y), half-width ``clutter_width``, ``clutter_rgb`` (N, C, 3), ``clutter_present``.
    """
    cls: np.ndarray
    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    hue: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    present: np.ndarray
    bg_kind: np.ndarray
    bg_rgb: np.ndarray
    bg_freq: np.ndarray
    bg_angle: np.ndarray
    bg_phase: np.ndarray
    bg_noise: np.ndarray
    clutter_a: np.ndarray
    clutter_b: np.ndarray
    clutter_width: np.ndarray
    clutter_rgb: np.ndarray
    clutter_present: np.ndarray

    def __len__(self):
        return len(self.cls)

    def __getitem__(self, index):
        """Select scenes along the first axis: ``scenes[:100]``, ``scenes[mask]``."""
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @property
    def count(self) -> np.ndarray:
        return self.present.sum(axis=1)


# ----------------------------------------------------------------------------------------
# Sampling: all the randomness lives here.

def sample_scenes(n: int, seed=0, config: WorldConfig = WorldConfig()) -> Scenes:
    """Draw the parameters of ``n`` scenes from ``seed`` (an int or a numpy SeedSequence)."""
    _check_int(n, "n", 1)
    _check_config(config)
    rng = np.random.default_rng(_check_seed(seed))
    k, c = config.max_objects, config.clutter

    # Objects. The main object's classes are exactly balanced, in random order.
    count = rng.integers(1, k + 1, size=n)
    present = np.arange(k) < count[:, None]                          # (n, k), present slots first
    cls = rng.integers(0, len(CLASSES), size=(n, k))
    cls[:, 0] = rng.permutation(np.arange(n) % len(CLASSES))
    # Shrink by the config's max_objects, not by each image's count: size must not give the count away.
    scale = rng.uniform(*config.scale_range, size=(n, k)) / np.sqrt(k)
    scale = np.where(present, -np.sort(-np.where(present, scale, -1), axis=1), scale)  # slot 0 largest
    angle = rng.uniform(0, config.max_angle, size=(n, k))
    x, y = _place(rng, scale, present)
    # Depth: a random order of the present objects, rank 0 in front (argsort twice = ranks).
    keys = np.where(present, rng.random((n, k)), np.inf)
    depth = np.where(present, np.argsort(np.argsort(keys, axis=1), axis=1), -1)

    # Colour: saturated objects, so that hue (and the shortcut) is visible.
    hue = rng.random((n, k))
    shortcut = rng.random((n, k)) < config.colour_shortcut
    hue = np.where(shortcut, CLASS_HUES[cls], hue)
    sat = rng.uniform(0.55, 1.0, (n, k))
    rgb = _hsv_to_rgb(hue, sat, rng.uniform(0.45, 1.0, (n, k)))

    # Background: two colours of similar luminance, far enough from the main object's
    # luminance that the shape stays visible, also after a grayscale augmentation.
    contrast = rng.uniform(*config.texture_contrast, size=n)
    gap = 0.25 + contrast / 2
    lum_bg = _away_from(rng, _luminance(rgb[:, 0]), gap, low=0.06, high=0.94)
    bg_hue = rng.random(n)[:, None] + np.stack([np.zeros(n), rng.uniform(-0.2, 0.2, n)], axis=1)
    bg_lum = lum_bg[:, None] + np.stack([-contrast, contrast], axis=1) / 2
    bg_rgb = _with_luminance(bg_hue % 1, rng.uniform(0.0, 0.6, (n, 2)), bg_lum)
    # The other objects, in turn, take a luminance away from the background's.
    lum_others = _away_from(rng, np.broadcast_to(lum_bg[:, None], (n, k - 1)), gap[:, None], low=0.06, high=0.94)
    rgb[:, 1:] = _with_luminance(hue[:, 1:], sat[:, 1:], lum_others)
    bg_kind = rng.integers(0, 3, size=n)
    bg_freq = rng.uniform(2.0, 5.0, size=n)
    bg_angle = rng.uniform(0, np.pi, size=n)
    bg_phase = rng.uniform(0, 2 * np.pi, size=n)
    bg_noise = rng.random((n, _NOISE_GRID, _NOISE_GRID))

    # Clutter: short strokes and dots (strokes of length ~0) anywhere, behind the objects.
    centre = rng.uniform(0.05, 0.95, size=(n, c, 2))
    length = rng.uniform(0.0, 0.3, size=(n, c)) * (rng.random((n, c)) < 0.7)
    theta = rng.uniform(0, 2 * np.pi, size=(n, c))
    half = (length / 2)[..., None] * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    clutter_width = rng.uniform(0.012, 0.025, size=(n, c))
    clutter_rgb = _hsv_to_rgb(rng.random((n, c)), rng.uniform(0, 1, (n, c)), rng.uniform(0.1, 1, (n, c)))
    clutter_present = np.arange(c) < rng.integers(0, c + 1, size=n)[:, None]

    def f32(a):  # per-object parameters: NaN where the object is absent, so misuse shows
        return np.where(present.reshape(present.shape + (1,) * (a.ndim - 2)), a, np.nan).astype(np.float32)

    return Scenes(
        cls=np.where(present, cls, -1), x=f32(x), y=f32(y), scale=f32(scale), angle=f32(angle),
        hue=f32(hue), rgb=f32(rgb), depth=depth, present=present,
        bg_kind=bg_kind, bg_rgb=bg_rgb.astype(np.float32), bg_freq=bg_freq.astype(np.float32),
        bg_angle=bg_angle.astype(np.float32), bg_phase=bg_phase.astype(np.float32),
        bg_noise=bg_noise.astype(np.float32),
        clutter_a=(centre - half).astype(np.float32), clutter_b=(centre + half).astype(np.float32),
        clutter_width=clutter_width.astype(np.float32), clutter_rgb=clutter_rgb.astype(np.float32),
        clutter_present=clutter_present)


def _place(rng, scale, present, tries: int = 200):
    """Centres that keep every object inside the image and never hide one behind another.

    Two objects may overlap (that is what depth order is about), but their centres stay
    0.6 x (sum of radii) apart, so part of each stays visible. An object too close to an
    earlier one is redrawn, all images at once, until none is left.
    """
    radius = scale / 2
    x, y = rng.uniform(radius, 1 - radius), rng.uniform(radius, 1 - radius)
    earlier = np.tri(scale.shape[1], k=-1, dtype=bool)                  # [k, j]: j < k
    pairs = present[:, :, None] & present[:, None, :] & earlier
    for _ in range(tries):
        dist = np.hypot(x[:, :, None] - x[:, None, :], y[:, :, None] - y[:, None, :])
        redraw = (pairs & (dist < 0.6 * (radius[:, :, None] + radius[:, None, :]))).any(axis=2)
        if not redraw.any():
            break
        r = radius[redraw]
        x[redraw], y[redraw] = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
    return x, y


def _away_from(rng, value, gap, low, high):
    """Uniform in [low, high] minus (value - gap, value + gap), one draw per entry of ``value``."""
    below = np.clip(value - gap - low, 0, None)        # room under the forbidden band
    above = np.clip(high - value - gap, 0, None)       # room over it
    u = rng.random(value.shape) * (below + above)
    return np.where(u < below, low + u, value + gap + (u - below))


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all in [0, 1]; returns shape h.shape + (3,)."""
    k = (np.stack([5.0, 3.0, 1.0]) + 6 * h[..., None]) % 6
    return v[..., None] * (1 - s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def _luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def _with_luminance(hue, sat, lum):
    """The colour of this hue and saturation whose luminance is ``lum``: darken or mix with white."""
    rgb = _hsv_to_rgb(hue, sat, np.ones_like(hue))
    base = _luminance(rgb)[..., None]
    lum = np.clip(lum, 0, 1)[..., None]
    return np.where(lum <= base, rgb * lum / base, rgb + (1 - rgb) * (lum - base) / (1 - base + 1e-9))


# ----------------------------------------------------------------------------------------
# Shapes: signed distance functions of object-frame coordinates (u, v), negative inside.
# Every shape fits in the unit disk, centred near its centre of mass; the distance is
# exact near the boundary, which is all that antialiasing needs.

def _length(u, v):
    return np.sqrt(u * u + v * v)


def _box(u, v, hx, hy):
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    return _length(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _star(u, v, r, n, m):
    """Regular polygon (m = 2) or star with n points (2 < m <= n) of circumradius r (Quilez)."""
    an, en = np.pi / n, np.pi / m
    bn = np.mod(np.arctan2(u, v), 2 * an) - an
    length = _length(u, v)
    px, py = length * np.cos(bn) - r * np.cos(an), length * np.abs(np.sin(bn)) - r * np.sin(an)
    t = np.clip(-(px * np.cos(en) + py * np.sin(en)), 0, r * np.sin(an) / np.sin(en))
    px, py = px + t * np.cos(en), py + t * np.sin(en)
    return _length(px, py) * np.sign(px)


def _heart(u, v):
    """Quilez's heart, tip at (0, 0) and lobes up to y = 1.1, here flipped and centred."""
    c = 0.68                      # heart units per object unit
    px, py = np.abs(u) * c, 0.66 - v * c
    d_lobe = _length(px - 0.25, py - 0.75) - np.sqrt(2) / 4
    h = np.maximum(px + py, 0) * 0.5
    d_body = np.sqrt(np.minimum((px ** 2 + (py - 1) ** 2), (px - h) ** 2 + (py - h) ** 2)) * np.sign(px - py)
    return np.where(px + py > 1, d_lobe, d_body) / c


SHAPES = {
    "circle": lambda u, v: _length(u, v) - 0.82,
    "triangle": lambda u, v: _star(u, v, 1.0, 3, 2),
    "square": lambda u, v: _box(u, v, 0.66, 0.66),
    "star": lambda u, v: _star(u, v, 1.0, 5, 3.2),
    "plus": lambda u, v: np.minimum(_box(u, v, 0.92, 0.27), _box(u, v, 0.27, 0.92)),
    "ring": lambda u, v: np.abs(_length(u, v) - 0.68) - 0.25,
    # A disk minus a shifted disk, scaled by 1.3 so that it fits once centred.
    "crescent": lambda u, v: np.maximum(_length(1.3 * u - 0.4, 1.3 * v) - 1,
                                        0.8 - _length(1.3 * u - 0.85, 1.3 * v)) / 1.3,
    "heart": _heart,
    "arrow": lambda u, v: np.minimum(
        _box(u + 0.31, v, 0.61, 0.19),            # shaft, reaching well into the head: no seam
        np.maximum(-0.05 - u, 0.6 * u + 0.8 * np.abs(v) - 0.51)),        # head: 3-4-5 triangle
    "L-shape": lambda u, v: np.minimum(_box(u + 0.125, v + 0.125, 0.25, 0.75),
                                       _box(u - 0.125, v - 0.375, 0.5, 0.25)),
}
assert list(SHAPES) == CLASSES


# ----------------------------------------------------------------------------------------
# Rendering: a pure function of the scene parameters.

def render(scenes: Scenes, config: WorldConfig = WorldConfig()):
    """Draw scenes -> (images (N, H, W, 3) uint8, object_map (N, H, W) int8, -1 = background).

    Deterministic: the same parameters always give the same pixels. Edges are
    antialiased from the signed distance (pixel coverage = 0.5 - distance in pixels).
    """
    if not isinstance(scenes, Scenes):
        raise TypeError(f"scenes must be a Scenes from sample_scenes, got {type(scenes).__name__}")
    _check_config(config)
    size = config.image_size
    images = np.empty((len(scenes), size, size, 3), np.uint8)
    object_map = np.empty((len(scenes), size, size), np.int8)
    for start in range(0, len(scenes), _CHUNK):
        part = slice(start, start + _CHUNK)
        images[part], object_map[part] = _render_chunk(scenes[part], size)
    return images, object_map


def _render_chunk(s: Scenes, size: int):
    n = len(s)
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size)   # pixel centres in [0, 1]
    px, py = grid[None, None, :], grid[None, :, None]            # x along columns, y along rows
    img = _background(s, px, py, size)                           # (n, H, W, 3) float32
    omap = np.full((n, size, size), -1, np.int8)

    for j in range(s.clutter_present.shape[1]):
        a, b = s.clutter_a[:, j, :, None, None], s.clutter_b[:, j, :, None, None]
        dist = _segment_distance(px, py, a, b) - s.clutter_width[:, j, None, None]
        cover = np.clip(0.5 - dist * size, 0, 1) * s.clutter_present[:, j, None, None]
        img += cover[..., None] * (s.clutter_rgb[:, j, None, None, :] - img)

    # Painter's order: at layer d, each image draws its object of depth rank d, back to front.
    for d in reversed(range(s.cls.shape[1])):
        has = s.depth == d                                       # (n, K), at most one True per row
        rows = np.flatnonzero(has.any(axis=1))
        slot = has[rows].argmax(axis=1)
        for c, name in enumerate(CLASSES):
            pick = s.cls[rows, slot] == c
            i, k = rows[pick], slot[pick]
            if len(i) == 0:
                continue
            # Object frame: translate to the centre, rotate by -angle, divide by the radius.
            x, y, angle, radius = (a[i, k][:, None, None] for a in (s.x, s.y, s.angle, s.scale / 2))
            dx, dy, cos, sin = px - x, py - y, np.cos(angle), np.sin(angle)
            u, v = (cos * dx + sin * dy) / radius, (cos * dy - sin * dx) / radius
            dist_px = SHAPES[name](u, v) * radius * size
            cover = np.clip(0.5 - dist_px, 0, 1)
            img[i] += cover[..., None] * (s.rgb[i, k][:, None, None, :] - img[i])
            omap[i] = np.where(dist_px <= 0, k[:, None, None], omap[i])
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), omap


def _background(s: Scenes, px, py, size):
    """Texture in [0, 1] between the two background colours: grating, checker or noise."""
    cos, sin = np.cos(s.bg_angle)[:, None, None], np.sin(s.bg_angle)[:, None, None]
    freq, phase = 2 * np.pi * s.bg_freq[:, None, None], s.bg_phase[:, None, None]
    along, across = cos * px + sin * py, cos * py - sin * px
    wave = np.sin(freq * along + phase)
    grating = 0.5 + 0.5 * wave
    # Soft-edged checks: the product of two gratings, steepened and clipped.
    checker = np.clip(0.5 + 2 * wave * np.sin(freq * across), 0, 1)
    pattern = np.where((s.bg_kind == 0)[:, None, None], grating, checker)
    is_noise = s.bg_kind == 2
    if is_noise.any():
        pattern[is_noise] = _smooth_noise(s.bg_noise[is_noise], size)
    c0, c1 = s.bg_rgb[:, None, None, 0], s.bg_rgb[:, None, None, 1]
    return (c0 + pattern[..., None] * (c1 - c0)).astype(np.float32)


def _smooth_noise(grid, size):
    """Bilinear upsampling of (n, g, g) random values to (n, size, size): value noise."""
    g = grid.shape[1]
    t = (np.arange(size) + 0.5) / size * (g - 1)
    i0 = np.minimum(t.astype(int), g - 2)
    w = (t - i0).astype(np.float32)
    rows = grid[:, i0] * (1 - w[None, :, None]) + grid[:, i0 + 1] * w[None, :, None]
    return rows[:, :, i0] * (1 - w) + rows[:, :, i0 + 1] * w


def _segment_distance(px, py, a, b):
    """Distance from each pixel to the segment a-b (a, b: (n, 2, 1, 1) as x, y)."""
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    ex, ey = bx - ax, by - ay
    t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey + 1e-12), 0, 1)
    return _length(px - ax - t * ex, py - ay - t * ey)


# ----------------------------------------------------------------------------------------
# Data sets: images with their free labels, cached on disk.

def generate(n: int, seed=0, config: WorldConfig = WorldConfig()) -> dict:
    """Sample and render ``n`` images; return them with every free label as numpy arrays.

    Keys (N images, K = config.max_objects; "main object" = slot 0, the largest):
      images (N, H, W, 3) uint8    labels (N,) int64   class of the main object
      colour (N, 3) float32        RGB of the main object, in [0, 1]
      hue, x, y, scale, angle (N,) float32   of the main object (x, y: centre in [0, 1])
      mask (N, H, W) int8          object map: slot of the front-most object, -1 = background
      count (N,) int64             number of objects
      depth (N, K) int64           depth rank per object, 0 = front, -1 = absent
      background (N,) int64        texture kind: 0 grating, 1 checker, 2 noise
      obj_cls, obj_x, obj_y, obj_scale, obj_angle, obj_hue (N, K), obj_colour (N, K, 3),
      obj_present (N, K)           the same per object (cls -1 and NaN where absent)
    """
    scenes = sample_scenes(n, seed, config)
    images, mask = render(scenes, config)
    main = {"labels": scenes.cls[:, 0].astype(np.int64), "colour": scenes.rgb[:, 0],
            **{key: getattr(scenes, key)[:, 0] for key in ("hue", "x", "y", "scale", "angle")}}
    per_object = {f"obj_{key}": getattr(scenes, key) for key in ("cls", "x", "y", "scale", "angle", "hue")}
    return {"images": images, **main, "mask": mask, "count": scenes.count.astype(np.int64),
            "depth": scenes.depth.astype(np.int64), "background": scenes.bg_kind.astype(np.int64),
            **per_object, "obj_colour": scenes.rgb, "obj_present": scenes.present}


def free_labels_of(data, split: str, needed, what: str) -> dict:
    """A split's free labels (``data.extras[split]`` of a ``load_world`` set), checked to hold ``needed``
    and one row per image; ``what`` names what is written from them, for the error message."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    labels = data.extras.get(split) if isinstance(getattr(data, "extras", None), dict) else None
    if not isinstance(labels, dict) or not all(key in labels for key in needed):
        raise ValueError(f"{what} are written from the world's free labels (data.extras[{split!r}] with "
                         f"{', '.join(needed)}); data set {getattr(data, 'name', data)!r} has none: "
                         f"load it with sslcourse.data.world.load_world")
    n, rows = len(getattr(data, f"{split}_images")), len(labels[needed[0]])
    if rows != n:
        raise ValueError(f"data.extras[{split!r}] describes {rows} scenes but the split has {n} images "
                         f"(was the data set cut after loading? load_world(n_train=..., n_test=...) sizes it)")
    return labels


def load_world(n_train: int = 5000, n_test: int = 2000, seed: int = 0, config: WorldConfig | None = None,
               root=DATA_ROOT, cache: bool = True, **config_overrides) -> ImageDataset:
    """The world as an ImageDataset, e.g. ``load_world(max_objects=3)``.

    Train and test come from independent seed streams, so they share no image and the
    test set of a seed does not depend on ``n_train``. Each split is cached under ``root``
    in a file keyed by a hash of the config, seed, split and size. Free labels are in
    ``extras["train"]`` and ``extras["test"]`` (see ``generate``), the config in ``extras["config"]``.
    """
    _check_int(n_train, "n_train", 1)
    _check_int(n_test, "n_test", 1)
    _check_int(seed, "seed", 0)
    config = WorldConfig() if config is None else _check_config(config)
    if config_overrides:
        try:
            config = dataclasses.replace(config, **config_overrides)
        except TypeError as err:
            names = [f.name for f in dataclasses.fields(WorldConfig)]
            raise ValueError(f"unknown world option in {sorted(config_overrides)}; expected some of {names}") from err
    splits = {}
    for split_id, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        stream = np.random.SeedSequence([seed, split_id])
        splits[split] = _cached(Path(root), _cache_name(config, seed, split, n), cache,
                                lambda: generate(n, stream, config))
    to_torch = lambda d: (torch.from_numpy(np.ascontiguousarray(d["images"].transpose(0, 3, 1, 2))),
                          torch.from_numpy(d["labels"].astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = to_torch(splits["train"]), to_torch(splits["test"])
    labels_only = lambda d: {key: value for key, value in d.items() if key != "images"}
    return ImageDataset("world", train_x, train_y, test_x, test_y, list(CLASSES),
                        extras={"train": labels_only(splits["train"]), "test": labels_only(splits["test"]),
                                "config": config})


def _cache_name(config, seed, split, n) -> str:
    key = repr((WORLD_VERSION, dataclasses.asdict(config), seed, split, n))
    return f"world-{split}-{n}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _cached(root: Path, name: str, cache: bool, make) -> dict:
    """Read ``root/name`` if it is there and readable; else make it and write it atomically."""
    path = root / name
    if cache and path.exists():
        try:
            with np.load(path) as saved:
                return {key: saved[key] for key in saved.files}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a broken file (e.g. a full disk): regenerate and overwrite it
    data = make()
    if cache:
        atomic_write(path, lambda f: np.savez(f, **data))
    return data


def show_world(n: int = 32, seed: int = 0, config: WorldConfig | None = None, ncols: int = 8):
    """A grid of ``n`` samples titled with their class (and count when there are several objects)."""
    from ..plots import show_images  # matplotlib only when a figure is asked for

    config = WorldConfig() if config is None else config
    data = generate(n, seed, config)
    titles = [CLASSES[c] + (f" x{k}" if config.max_objects > 1 else "")
              for c, k in zip(data["labels"], data["count"])]
    return show_images(data["images"].transpose(0, 3, 1, 2), titles=titles, ncols=ncols)
