"""Two renderings of the same scenes, clean and shifted, and the renderer's labels as free targets.

Unit 3's recipe (Ren and Lee, "Cross-Domain Self-supervised Multi-task Feature Learning using
Synthetic Imagery", CVPR 2018): a renderer labels its images for free, a network learns those
labels on the rendered (clean) images, and a domain discriminator makes its features the
same on the images it must work on (here: a shifted rendering, whose labels it never sees).

The *clean* domain is exactly ``load_world``'s images. The *shifted* domain is the same scenes
through a fixed camera: a blur, a palette change and sensor noise, in that order,

    shifted = round(255 * clip(blur(x) @ PALETTE.T + PALETTE_OFFSET + noise, 0, 1))      x in [0, 1]

with a Gaussian blur of ``BLUR_SIGMA`` pixels (reflected borders) and Gaussian noise of std
``NOISE_STD``, drawn per pixel from the seed stream (seed, split, 2): the same seed gives the same
images, and the noise of a split does not depend on the other split's size. On average the
shift moves a pixel value by about 0.12 of the intensity range.

The free labels of an image (``free_labels``), all read from ``load_world``'s extras:
    mask  (N, cells, cells) float32   fraction of each cell covered by an object (a coarse mask map)
    front (N, P) int64                for each pair of object slots (i < j) that overlap in the image:
                                      1 if i is in front of j, 0 if j is in front of i; -1 (no label)
                                      where they do not overlap (nothing shows their order) or one is absent
    count (N,) int64                  number of objects, 1..max_objects
Slots are ordered by size (slot 0 the largest), so "the second object" has a meaning a
network can see; the pairs are ``object_pairs(max_objects)``. The world keeps objects apart
(``world._place``), so few pairs overlap: at 16 px, 5.5 %, 3.0 % and 1.9 % of the images label
the pairs (0, 1), (0, 2) and (1, 2) (2,000 images, max_objects = 3).

Where this differs from the paper: the paper's synthetic images (SUNCG) and real images
(Places) show different scenes; here both renderings show the same scenes, so that the shift
alone, not the content, tells the domains apart. Its free labels are dense (depth, surface
normals, instance contours); ours are the world's: a coarse mask, a depth order and a count.
"""
import itertools

import numpy as np
import torch
import torch.nn.functional as F

from . import DATA_ROOT, ImageDataset
from .world import CLASSES, SHAPES, load_world

NOISE_STD = 0.05                 # sensor noise, in units of the full intensity range [0, 1]
BLUR_SIGMA = 0.6                 # pixels
# A palette change: each output channel mixes the input ones (a hue turn of about 120 degrees,
# a little desaturated), then a blue cast. Rows sum to 0.9, so the shifted images are a bit darker.
PALETTE = ((0.05, 0.15, 0.70),
           (0.70, 0.05, 0.15),
           (0.15, 0.70, 0.05))
PALETTE_OFFSET = (0.04, 0.06, 0.10)
_SHIFT_STREAM = 2                # load_world uses streams (seed, 0) and (seed, 1) for its splits


def _check_images(images):
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor of shape (N, 3, H, W), got {got}")
    return images


def _check_amount(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) float -> the same, blurred by a separable Gaussian of ``sigma`` pixels (reflected borders)."""
    if sigma == 0:
        return x
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()                                           # (2r + 1,)
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)   # along rows
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)  # along columns


def shift_images(images: torch.Tensor, seed: int = 0, split: str = "train", noise_std: float = NOISE_STD,
                 blur_sigma: float = BLUR_SIGMA, palette: bool = True) -> torch.Tensor:
    """(N, 3, H, W) uint8 clean images -> the shifted rendering, (N, 3, H, W) uint8.

    ``noise_std=0``, ``blur_sigma=0`` or ``palette=False`` leave that part out (tests and
    lectures take the shift apart). The noise comes from the stream (seed, split, 2).
    """
    _check_images(images)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    noise_std, blur_sigma = _check_amount(noise_std, "noise_std"), _check_amount(blur_sigma, "blur_sigma")
    if blur_sigma > 0 and 3 * blur_sigma >= min(images.shape[-2:]):
        raise ValueError(f"blur_sigma {blur_sigma} is too large for {tuple(images.shape[-2:])} images")
    x = gaussian_blur(images.float() / 255, blur_sigma)                      # (N, 3, H, W) in [0, 1]
    if palette:
        matrix, offset = torch.tensor(PALETTE, dtype=x.dtype), torch.tensor(PALETTE_OFFSET, dtype=x.dtype)
        x = torch.einsum("oc,nchw->nohw", matrix, x) + offset.view(1, 3, 1, 1)
    if noise_std > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), ("train", "test").index(split), _SHIFT_STREAM]))
        x = x + noise_std * torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def object_pairs(max_objects: int) -> list[tuple[int, int]]:
    """The slot pairs (i, j), i < j, whose depth order ``free_labels`` gives: (0, 1), (0, 2), (1, 2), ..."""
    return list(itertools.combinations(range(max_objects), 2))


def object_silhouettes(labels: dict, image_size: int) -> torch.Tensor:
    """(N, K, H, W) bool: the pixels each object covers, hidden parts included (where its signed
    distance is <= 0, the rule of the world's object map), from a split's per-object free labels."""
    cls = np.asarray(labels["obj_cls"])                                      # (N, K), -1 = absent
    grid = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    px, py = grid[None, None, :], grid[None, :, None]
    out = np.zeros(cls.shape + (image_size, image_size), bool)
    for c, name in enumerate(CLASSES):
        i, k = np.nonzero(cls == c)
        if len(i) == 0:
            continue
        # The renderer's object frame: translate, rotate by -angle, divide by the radius.
        x, y, angle, radius = (np.asarray(labels[key])[i, k][:, None, None] * f
                               for key, f in (("obj_x", 1), ("obj_y", 1), ("obj_angle", 1), ("obj_scale", 0.5)))
        dx, dy, cos, sin = px - x, py - y, np.cos(angle), np.sin(angle)
        u, v = (cos * dx + sin * dy) / radius, (cos * dy - sin * dx) / radius
        out[i, k] = SHAPES[name](u, v) * radius * image_size <= 0
    return torch.from_numpy(out)


def free_labels(labels: dict, cells: int = 4) -> dict:
    """The renderer's labels of one split (``load_world(...).extras[split]``) -> {"mask", "front", "count"}.

    mask (N, cells, cells): the fraction of each cell's pixels where the object map shows an
    object; front (N, P): the depth order of each pair of overlapping objects (see the module
    docstring; overlaps from ``object_silhouettes``); count (N,).
    """
    needed = {"mask", "depth", "count", "obj_cls", "obj_x", "obj_y", "obj_angle", "obj_scale"}
    if not isinstance(labels, dict) or not needed <= set(labels):
        raise ValueError(f"labels must be a split's free labels from load_world (extras['train'] or "
                         f"extras['test']), with {sorted(needed)}")
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
        raise ValueError(f"cells must be a positive int, got {cells!r}")
    object_map = torch.as_tensor(np.asarray(labels["mask"]))                # (N, H, W) int8, -1 = background
    size = object_map.shape[-1]
    if size % cells:
        raise ValueError(f"cells must divide the image side {size}, got {cells}")
    covered = (object_map >= 0).float().unsqueeze(1)                        # (N, 1, H, W)
    mask = F.avg_pool2d(covered, size // cells).squeeze(1)                  # (N, cells, cells)
    depth = torch.as_tensor(np.asarray(labels["depth"]))                    # (N, K), 0 = front, -1 = absent
    pairs = object_pairs(depth.shape[1])
    # Only an occlusion shows which object is in front: pairs that do not overlap get no label.
    silhouettes = object_silhouettes(labels, size).flatten(2)               # (N, K, H * W)
    front = torch.stack([torch.where((silhouettes[:, i] & silhouettes[:, j]).any(dim=1),
                                     (depth[:, i] < depth[:, j]).long(), torch.full_like(depth[:, i], -1))
                         for i, j in pairs], dim=1) if pairs else torch.empty(len(depth), 0, dtype=torch.long)
    return {"mask": mask, "front": front.long(), "count": torch.as_tensor(np.asarray(labels["count"])).long()}


def load_domains(n_train: int = 5000, n_test: int = 2000, seed: int = 0, cells: int = 4, root=DATA_ROOT,
                 cache: bool = True, max_objects: int = 3, **config_overrides) -> ImageDataset:
    """``load_world``'s data set (its clean images, unchanged), with the second rendering and free targets:

    extras["shifted"]  {"train", "test"}: (N, 3, H, W) uint8, the same scenes after ``shift_images``
    extras["free"]     {"train", "test"}: ``free_labels`` of each split
    The world has ``max_objects`` = 3 objects per image at most here (load_world's default is 1),
    so that count and depth order are worth predicting.
    """
    data = load_world(n_train=n_train, n_test=n_test, seed=seed, root=root, cache=cache,
                      max_objects=max_objects, **config_overrides)
    data.name = "world-domains"
    data.extras["shifted"] = {split: shift_images(getattr(data, f"{split}_images"), seed, split)
                              for split in ("train", "test")}
    data.extras["free"] = {split: free_labels(data.extras[split], cells) for split in ("train", "test")}
    return data
