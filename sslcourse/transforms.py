"""Batched data augmentation that runs wherever the batch lives (CPU or GPU).

Self-supervised methods learn by making two *views* of an image agree, so the
augmentations define the task. Classic pipelines augment one PIL image at a time in
DataLoader workers; here a whole (N, C, H, W) batch is augmented at once with tensor
arithmetic, on the batch's own device, each image still getting its own random
parameters:

* random resized crop + horizontal flip: ONE ``grid_sample`` per batch, each image
  with its own affine sampling grid (a flip is a negative x scale);
* colour jitter, grayscale, solarise: per-image factors broadcast over pixels;
* Gaussian blur: a separable depthwise convolution, only over the images that drew it.

Randomness: every op takes an explicit CPU ``torch.Generator`` and draws its per-image
parameters from it on the CPU before moving them to the batch's device. So one seed
gives the same augmentations on CPU and GPU, and the global RNG is never touched.
Parameters are drawn for every image whether or not the op applies to it, so the
random stream consumed depends only on the batch size and the settings.

Images: uint8 (0..255) or float already in [0, 1], C in {1, 3}. The ops work on floats
in [0, 1] and return new tensors (inputs are never modified); :class:`Augment` converts
first and normalises with ``mean``/``std`` last.
On 1-channel images, saturation, hue and grayscale do nothing (there is no colour).

Recipes (:func:`recipe`) give each method's augmentations as a tuple with one
transform per view the method uses.
"""
import math

import torch
import torch.nn.functional as F

from sslcourse.utils import check_generator, check_tensor

# ITU-R 601-2 luma, the weights torchvision and PIL use for grayscale.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


# ---------------------------------------------------------------- validation & random draws

def check_images(x, name: str = "images") -> torch.Tensor:
    check_tensor(x, name, ndim=4)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    return x


def _check_float_images(x, name: str = "images") -> torch.Tensor:
    check_images(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be float in [0, 1] here, got dtype {x.dtype}; "
                        "convert uint8 with to_float or use Augment")
    return x


def check_prob(p, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_range(r, name: str, low: float, high: float) -> tuple[float, float]:
    """A (min, max) pair with low <= min <= max <= high."""
    try:
        a, b = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {r!r}") from None
    if not low <= a <= b <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {r!r}")
    return a, b


def _check_strength(v, name: str, high: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= high:
        raise ValueError(f"{name} must be a number in [0, {high}], got {v!r}")
    return float(v)


def _check_size(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return size


def uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (high - low) + low


def _coin(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    """(n,) bool, True with probability p: p=0 never, p=1 always (rand is in [0, 1))."""
    return torch.rand(n, generator=g) < p


def _per_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """CPU (N,) parameters -> (N, 1, 1, 1) on the batch's device and dtype, to broadcast."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _apply_to(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """Apply an op to just the images where the CPU (N,) ``mask`` is True; a new tensor.

    ``fn(images, idx)`` gets the picked images and their CPU indices (to look up their
    parameters). The indices are known on the CPU, so a GPU never has to report back
    which images were picked, and the work scales with the probability of the op.
    """
    idx = torch.nonzero(mask).flatten()
    if len(idx) == 0:
        return x.clone()
    if len(idx) == len(x):
        return fn(x, idx)
    out = x.clone()
    on_device = idx.to(x.device)
    out[on_device] = fn(x[on_device], idx)
    return out


# ---------------------------------------------------------------- conversion

def _channel_stats(v, channels: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).flatten()
    if t.numel() not in (1, channels):
        raise ValueError(f"{name} must be one number or {channels} (one per channel), got {v!r}")
    return t


def normalize(x: torch.Tensor, mean=0.5, std=0.5) -> torch.Tensor:
    """(x - mean) / std per channel; ``mean``/``std`` are a number or one per channel."""
    _check_float_images(x)
    m = _channel_stats(mean, x.shape[1], "mean")
    s = _channel_stats(std, x.shape[1], "std")
    if (s <= 0).any():
        raise ValueError(f"std must be > 0, got {std!r}")
    return x.sub(m.to(x.device).view(1, -1, 1, 1)).div_(s.to(x.device).view(1, -1, 1, 1))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1 -> float32 0..1 (a new tensor: ops never alias the input)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)


def to_float(x: torch.Tensor, mean=0.5, std=0.5) -> torch.Tensor:
    """Evaluation preprocessing: uint8 (or [0, 1] float) batch -> normalised float32.

    Train-time :class:`Augment` ends with exactly this conversion, so train and eval agree.
    """
    check_images(x)
    return normalize(to_unit(x), mean, std)


def from_float(x: torch.Tensor, mean=0.5, std=0.5) -> torch.Tensor:
    """The inverse of :func:`to_float` for pictures: normalised float -> [0, 1], clamped.

    A prediction can leave the range a real image has; clamping (not stretching each image
    to its own range) keeps the colours of a prediction comparable with its target's.
    """
    check_images(x)
    if not x.is_floating_point():
        raise TypeError(f"from_float takes normalised float images (to_float's output), got dtype {x.dtype}")
    m = _channel_stats(mean, x.shape[1], "mean").to(x.device).view(1, -1, 1, 1)
    s = _channel_stats(std, x.shape[1], "std").to(x.device).view(1, -1, 1, 1)
    return (x.float() * s + m).clamp_(0.0, 1.0)


# ---------------------------------------------------------------- geometry

def _crop_boxes(g, n: int, height: int, width: int, scale, ratio, attempts: int = 10):
    """Per image (x0, y0, w, h) in pixels, sampled as torchvision's RandomResizedCrop.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); the first of ``attempts``
    draws that fits the image is kept, else a centre crop clamped to ``ratio``. Boxes are
    continuous (sub-pixel), which grid_sample handles for free.
    """
    area = uniform(g, (n, attempts), *scale) * (height * width)
    aspect = torch.exp(uniform(g, (n, attempts), math.log(ratio[0]), math.log(ratio[1])))
    w, h = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(dim=1)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))

    offset = torch.rand(n, 2, generator=g)
    x0, y0 = offset[:, 0] * (width - w), offset[:, 1] * (height - h)
    return x0, y0, w, h


def random_resized_crop(x: torch.Tensor, g: torch.Generator, size: int, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), flip_p: float = 0.0) -> torch.Tensor:
    """Crop a random box per image, resize it to ``size`` x ``size`` and flip it with ``flip_p``.

    Box as torchvision's RandomResizedCrop ("Inception crop", Szegedy et al. 2015).
    The whole batch is ONE bilinear ``grid_sample``: each image gets an affine matrix
    that maps the output square onto its box, and a flip is a negative x scale.
    No antialiasing: fine when boxes are upsampled (the usual case on small images),
    aliased when a large box shrinks a lot.
    """
    _check_float_images(x)
    check_generator(g)
    size = _check_size(size)
    scale = check_range(scale, "scale", 0.0, 1.0)
    ratio = check_range(ratio, "ratio", 0.0, math.inf)
    if scale[1] <= 0 or ratio[0] <= 0:
        raise ValueError(f"scale and ratio must be > 0, got scale={scale}, ratio={ratio}")
    flip_p = check_prob(flip_p, "flip_p")
    n, c, height, width = x.shape

    x0, y0, w, h = _crop_boxes(g, n, height, width, scale, ratio)
    flip = _coin(g, n, flip_p)
    # Normalised coords (align_corners=False): -1..1 spans the image's outer edges, so the
    # output square maps to the box [x0, x0 + w] by  u -> (w / W) u + (2 x0 + w) / W - 1.
    # A flip is a negative scale: the box is read right to left.
    scale_x = torch.where(flip, -w, w) / width
    shift_x = (2 * x0 + w) / width - 1
    scale_y, shift_y = h / height, (2 * y0 + h) / height - 1
    # The grid F.affine_grid would build for theta = [[scale_x, 0, shift_x], [0, scale_y, shift_y]],
    # made from its two 1-D axes: affine_grid's general matmul costs more than the sampling.
    u = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # output pixel centres
    gx = (scale_x[:, None] * u + shift_x[:, None]).to(x.device, x.dtype)  # (N, size)
    gy = (scale_y[:, None] * u + shift_y[:, None]).to(x.device, x.dtype)
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
    # 'border': bilinear taps half a pixel past the box edge must not read zeros.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (when not cropping)."""
    check_images(x)
    check_generator(g)
    flip = _coin(g, x.shape[0], check_prob(p, "p"))
    return _apply_to(x, flip, lambda imgs, idx: imgs.flip(-1))


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


# ---------------------------------------------------------------- colour

def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma; 1-channel images are already gray."""
    if x.shape[1] == 1:
        return x
    r, gr, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * gr + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (0.2989 R + 0.587 G + 0.114 B) repeated over the input's channel count."""
    _check_float_images(x)
    return _gray(x).expand_as(x).contiguous()


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, (N,1,1,1)) keeping HSV saturation and value.

    Equal to RGB -> HSV, h += shift, HSV -> RGB (torchvision's adjust_hue) but without
    building HSV: with chroma c = max - min and hue h6 in [0, 6), each output channel is
        max - c * clamp(min(k, 4 - k), 0, 1),   k = (n + h6) mod 6,  n = 5, 3, 1 for R, G, B.
    """
    r, gr, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, gr), b)  # (x.max(dim=1) also finds indices: slower)
    chroma = maxc - torch.minimum(torch.minimum(r, gr), b)
    # Gray pixels (chroma 0) have no hue: any finite h6 works since chroma scales it away.
    inv = 1.0 / chroma.clamp_min(1e-12)
    # Which channel is the max decides the 60-degree sector (r wins ties, then g, as PIL).
    h6 = torch.where(maxc == r, (gr - b) * inv,
                     torch.where(maxc == gr, (b - r) * inv + 2.0, (r - gr) * inv + 4.0))
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    # In place from here: fresh full-size tensors cost page faults on the CPU, more than the maths.
    k = (h6.unsqueeze(1) + (n + 6.0 * shift)).remainder_(6.0)
    tri = torch.minimum(k, 4.0 - k, out=k).clamp_(0.0, 1.0)
    return tri.mul_(-chroma.unsqueeze(1)).add_(maxc.unsqueeze(1))


def _blend_step(x, bright, contrast, saturation):
    """torchvision's three blends at once, with per-image (N,) factors (1 = leave alone):
    brightness mixes with black, contrast with the mean luma, saturation with the luma image.
    """
    gray = _gray(x)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    base = _per_image(1 - contrast, x) * mean + _per_image(1 - saturation, x) * gray  # (N, 1, H, W)
    f = _per_image(bright * contrast * saturation, x)  # at most one differs from 1 per image
    return torch.addcmul(base, f, x).clamp_(0.0, 1.0)


def _fixed(x, value, name: str, low: float, high: float) -> torch.Tensor:
    """A number or one per image -> CPU (N,) float tensor, checked to lie in [low, high]."""
    v = torch.as_tensor(value, dtype=torch.float32).flatten().cpu()
    if v.numel() not in (1, x.shape[0]) or not bool(((v >= low) & (v <= high)).all()):
        raise ValueError(f"{name} must be a number in [{low}, {high}] or one per image "
                         f"({x.shape[0]}), got {value!r}")
    return v.expand(x.shape[0])


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """Deterministic brightness: x * factor, clamped (factor a number or one per image)."""
    _check_float_images(x)
    f, one = _fixed(x, factor, "factor", 0.0, math.inf), torch.ones(x.shape[0])
    return _blend_step(x, f, one, one)


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Deterministic contrast: blend with the image's mean luma (factor 0 = flat gray)."""
    _check_float_images(x)
    f, one = _fixed(x, factor, "factor", 0.0, math.inf), torch.ones(x.shape[0])
    return _blend_step(x, one, f, one)


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Deterministic saturation: blend with the luma image (factor 0 = grayscale)."""
    _check_float_images(x)
    f, one = _fixed(x, factor, "factor", 0.0, math.inf), torch.ones(x.shape[0])
    if x.shape[1] == 1:
        return x.clone()
    return _blend_step(x, one, one, f)


def adjust_hue(x: torch.Tensor, shift) -> torch.Tensor:
    """Deterministic hue rotation by ``shift`` in [-0.5, 0.5] turns (a number or one per image)."""
    _check_float_images(x)
    shift = _fixed(x, shift, "shift", -0.5, 0.5)
    if x.shape[1] == 1:
        return x.clone()
    return _shift_hue(x, _per_image(shift, x))


def color_jitter(x: torch.Tensor, g: torch.Generator, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0, p: float = 1.0) -> torch.Tensor:
    """With probability ``p`` per image, jitter brightness, contrast, saturation and hue.

    As torchvision's ColorJitter: factors ~ U(max(0, 1 - s), 1 + s) for the first three,
    hue shift ~ U(-hue, hue) (fraction of a turn), the four applied in a random order
    per image (as SimCLR and BYOL do). Each of the 4 steps is one batched blend, plus a
    hue rotation on just the images whose step it is.
    """
    _check_float_images(x)
    check_generator(g)
    b_s = _check_strength(brightness, "brightness")
    c_s = _check_strength(contrast, "contrast")
    s_s = _check_strength(saturation, "saturation")
    h_s = _check_strength(hue, "hue", 0.5)
    p = check_prob(p, "p")
    n = x.shape[0]

    factors = torch.stack([uniform(g, n, max(0.0, 1 - s), 1 + s) for s in (b_s, c_s, s_s)], dim=1)
    shift = uniform(g, n, -h_s, h_s)
    order = torch.argsort(torch.rand(n, 4, generator=g), dim=1)  # a random permutation per image
    apply = _coin(g, n, p)
    if x.shape[1] == 1:  # no colour: saturation and hue are no-ops, as in torchvision
        factors[:, 2], shift = 1.0, torch.zeros(n)
    factors[~apply] = 1.0
    shift[~apply] = 0.0

    def rotate_hue(imgs, idx):
        return _shift_hue(imgs, _per_image(shift[idx], imgs))

    out = x
    for step in range(4):
        op = order[:, step]  # which op each image does at this step (3 = hue)
        f = torch.where(op.unsqueeze(1) == torch.arange(3), factors, torch.ones(n, 3))
        if (f != 1).any():
            out = _blend_step(out, *f.unbind(1))
        hue_now = (op == 3) & (shift != 0)
        if hue_now.any():
            out = _apply_to(out, hue_now, rotate_hue)
    return x.clone() if out is x else out  # never hand back the caller's tensor


def random_grayscale(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """With probability ``p`` per image, replace it by its luma (channels kept)."""
    _check_float_images(x)
    check_generator(g)
    mask = _coin(g, x.shape[0], check_prob(p, "p"))
    if x.shape[1] == 1:
        return x.clone()
    return _apply_to(x, mask, lambda imgs, idx: _gray(imgs).expand_as(imgs))


def solarize(x: torch.Tensor, g: torch.Generator, p: float, threshold: float = 0.5) -> torch.Tensor:
    """With probability ``p`` per image, invert pixels >= ``threshold`` (x -> 1 - x).

    As torchvision's RandomSolarize on [0, 1] floats; BYOL (Grill et al. 2020) uses it
    on one view only.
    """
    _check_float_images(x)
    check_generator(g)
    mask = _coin(g, x.shape[0], check_prob(p, "p"))
    threshold = _check_strength(threshold, "threshold", 1.0)
    return _apply_to(x, mask, lambda imgs, idx: torch.where(imgs >= threshold, 1.0 - imgs, imgs))


def blur_kernel_size(image_size: int) -> int:
    """10% of the image side, made odd (SimCLR: 23 px at 224), at least 3."""
    k = int(0.1 * image_size)
    return max(3, k + 1 - k % 2)


def _check_kernel(k, side: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {k!r}")
    if k // 2 >= side:  # reflect padding needs the pad to be smaller than the image
        raise ValueError(f"kernel_size // 2 must be smaller than the image side ({side}), "
                         f"got kernel_size {k}")
    return k


def gaussian_blur(x: torch.Tensor, g: torch.Generator, p: float, sigma=(0.1, 2.0),
                  kernel_size: int | None = None) -> torch.Tensor:
    """With probability ``p`` per image, Gaussian blur with sigma ~ U(sigma) (pixels).

    SimCLR (Chen et al. 2020, App. A): sigma in [0.1, 2.0], kernel 10% of the image side
    (``kernel_size=None``). Separable: a horizontal then a vertical depthwise convolution,
    each image channel its own group, over only the images that drew the blur; reflect
    padding as torchvision's GaussianBlur.
    """
    _check_float_images(x)
    check_generator(g)
    p = check_prob(p, "p")
    lo, hi = check_range(sigma, "sigma", 0.0, math.inf)
    if lo <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    n, c, height, width = x.shape
    side = min(height, width)
    k = _check_kernel(blur_kernel_size(side) if kernel_size is None else kernel_size, side)

    sigmas = uniform(g, n, lo, hi)
    t = torch.arange(k, dtype=torch.float32) - k // 2
    kernels = torch.exp(-0.5 * (t / sigmas[:, None]) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (N, k): one 1-D Gaussian per image

    def blur(imgs, idx):
        m = len(imgs)
        w = kernels[idx].repeat_interleave(c, dim=0).to(imgs.device, imgs.dtype)  # (m*C, k)
        y = imgs.reshape(1, m * c, height, width)  # grouped conv: one group per image channel
        y = F.pad(y, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
        y = F.conv2d(y, w.view(m * c, 1, 1, k), groups=m * c)
        y = F.conv2d(y, w.view(m * c, 1, k, 1), groups=m * c)
        return y.view(m, c, height, width)

    return _apply_to(x, _coin(g, n, p), blur)


# ---------------------------------------------------------------- pipeline

class Augment:
    """A view transform: uint8/float batch + CPU generator -> normalised float32 batch.

    Steps, in SimCLR's order: random resized crop + flip (or resize + flip when
    ``scale=None``), colour jitter, grayscale, blur, solarise, normalise. Every op is
    off unless switched on; :func:`recipe` switches them on with the papers' values.
    ``jitter`` is (brightness, contrast, saturation, hue), applied with ``jitter_p``.
    """

    def __init__(self, size: int, *, scale=None, ratio=(3 / 4, 4 / 3), flip_p: float = 0.0,
                 jitter=(0.0, 0.0, 0.0, 0.0), jitter_p: float = 0.0, gray_p: float = 0.0,
                 blur_p: float = 0.0, blur_sigma=(0.1, 2.0), blur_kernel: int | None = None,
                 solarize_p: float = 0.0, mean=0.5, std=0.5):
        self.size = _check_size(size)
        self.scale = None if scale is None else check_range(scale, "scale", 0.0, 1.0)
        self.ratio = check_range(ratio, "ratio", 0.0, math.inf)
        if (self.scale is not None and self.scale[1] <= 0) or self.ratio[0] <= 0:
            raise ValueError(f"scale and ratio must be > 0, got scale={scale}, ratio={ratio}")
        self.flip_p = check_prob(flip_p, "flip_p")
        try:
            b, c, s, h = jitter
        except (TypeError, ValueError):
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {jitter!r}") from None
        self.jitter = (_check_strength(b, "brightness"), _check_strength(c, "contrast"),
                       _check_strength(s, "saturation"), _check_strength(h, "hue", 0.5))
        self.jitter_p = check_prob(jitter_p, "jitter_p")
        self.gray_p = check_prob(gray_p, "gray_p")
        self.blur_p = check_prob(blur_p, "blur_p")
        self.blur_sigma = check_range(blur_sigma, "blur_sigma", 1e-6, math.inf)
        self.blur_kernel = _check_kernel(blur_kernel_size(self.size) if blur_kernel is None else blur_kernel,
                                         self.size)
        self.solarize_p = check_prob(solarize_p, "solarize_p")
        self.mean = tuple(_channel_stats(mean, 3, "mean").tolist())
        self.std = tuple(_channel_stats(std, 3, "std").tolist())
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0, got {std!r}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x)
        check_generator(generator)
        if len(self.mean) == 3 and x.shape[1] == 1:
            raise ValueError(f"mean/std have 3 values but the images have 1 channel: {tuple(x.shape)}")
        x = to_unit(x)
        if self.scale is not None:
            x = random_resized_crop(x, generator, self.size, self.scale, self.ratio, self.flip_p)
        else:
            x = resize(x, self.size)
            if self.flip_p > 0:
                x = random_hflip(x, generator, self.flip_p)
        if self.jitter_p > 0 and any(self.jitter):
            x = color_jitter(x, generator, *self.jitter, p=self.jitter_p)
        if self.gray_p > 0:
            x = random_grayscale(x, generator, self.gray_p)
        if self.blur_p > 0:
            x = gaussian_blur(x, generator, self.blur_p, self.blur_sigma, self.blur_kernel)
        if self.solarize_p > 0:
            x = solarize(x, generator, self.solarize_p)
        return normalize(x, self.mean, self.std)

    def __repr__(self):
        def nums(v):
            return "(" + ", ".join(f"{a:.3g}" for a in v) + ")"

        def stat(v):
            return f"{v[0]:.4g}" if len(set(v)) == 1 else nums(v)

        crop = ("resize (when the input is not size x size)" if self.scale is None
                else f"random_resized_crop(scale={nums(self.scale)}, ratio={nums(self.ratio)})")
        b, c, s, h = self.jitter
        lines = [crop + (f", flip_p={self.flip_p:g}" if self.flip_p > 0 else ""),
                 f"color_jitter(brightness={b:g}, contrast={c:g}, saturation={s:g}, hue={h:g}, "
                 f"p={self.jitter_p:g})" if self.jitter_p > 0 and any(self.jitter) else None,
                 f"grayscale(p={self.gray_p:g})" if self.gray_p > 0 else None,
                 f"gaussian_blur(p={self.blur_p:g}, sigma={nums(self.blur_sigma)}, "
                 f"kernel_size={self.blur_kernel})" if self.blur_p > 0 else None,
                 f"solarize(p={self.solarize_p:g})" if self.solarize_p > 0 else None,
                 f"normalize(mean={stat(self.mean)}, std={stat(self.std)})"]
        body = "".join(f"\n  {line}," for line in lines if line)
        return f"Augment(size={self.size},{body}\n)"


# ---------------------------------------------------------------- recipes
#
# Each recipe returns a tuple with one transform per view the method uses: two for the
# joint-embedding methods (the same object twice when the views are symmetric), one for
# MAE and for evaluation. So a method writes ``t1, t2 = recipe("simclr", 32)``.
#
# Small images: below BLUR_MIN_SIZE pixels the recipes drop Gaussian blur, as SimCLR did
# on CIFAR-10 (Chen et al. 2020, App. B.9) and as common CIFAR reproductions of MoCo and
# BYOL do: a 10% kernel is 3 px at 32 px, and sigma up to 2 px wipes out most of what a
# 32 px image shows. ``blur=True/False`` overrides the choice.

BLUR_MIN_SIZE = 64


def _simclr(size, mean, std, blur):
    """SimCLR (Chen et al. 2020, App. A): Inception crop (0.08, 1), flip, colour jitter of
    strength s=1 -> (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2, blur 0.5. (On CIFAR-10
    the paper used s=0.5 and no blur; s=1 is the ImageNet default and common on CIFAR too.)"""
    t = Augment(size, scale=(0.08, 1.0), flip_p=0.5, jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8,
                gray_p=0.2, blur_p=0.5 if blur else 0.0, mean=mean, std=std)
    return t, t


def _moco_v1(size, mean, std, blur):
    """MoCo v1 (He et al. 2020): crop (0.2, 1), flip, grayscale 0.2, jitter 0.4 x 4 always."""
    t = Augment(size, scale=(0.2, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0,
                gray_p=0.2, mean=mean, std=std)
    return t, t


def _moco_v2(size, mean, std, blur):
    """MoCo v2 (Chen et al. 2020, "Improved baselines"): crop (0.2, 1), flip, jitter
    (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, blur 0.5 (sigma 0.1..2)."""
    t = Augment(size, scale=(0.2, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8,
                gray_p=0.2, blur_p=0.5 if blur else 0.0, mean=mean, std=std)
    return t, t


def _byol(size, mean, std, blur):
    """BYOL (Grill et al. 2020, Table 6): asymmetric views; both crop (0.08, 1), flip, jitter
    (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2; blur 1.0 / 0.1, solarise 0.0 / 0.2."""
    common = dict(scale=(0.08, 1.0), flip_p=0.5, jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8,
                  gray_p=0.2, mean=mean, std=std)
    return (Augment(size, blur_p=1.0 if blur else 0.0, solarize_p=0.0, **common),
            Augment(size, blur_p=0.1 if blur else 0.0, solarize_p=0.2, **common))


def _mae(size, mean, std, blur):
    """MAE (He et al. 2022): crop (0.2, 1) and flip only; the masking is the task."""
    return (Augment(size, scale=(0.2, 1.0), flip_p=0.5, mean=mean, std=std),)


def _eval(size, mean, std, blur):
    """No augmentation: convert and normalise (and resize if the images are not ``size``)."""
    return (Augment(size, mean=mean, std=std),)


RECIPES = {"simclr": _simclr, "moco_v1": _moco_v1, "moco_v2": _moco_v2, "byol": _byol,
           "mae": _mae, "eval": _eval}


def recipe(name: str, image_size: int, mean=0.5, std=0.5, blur: bool | None = None,
           **overrides) -> tuple[Augment, ...]:
    """The paper's augmentations for ``name``: a tuple with one :class:`Augment` per view.

    ``blur=None`` keeps the paper's blur on images of at least BLUR_MIN_SIZE px and
    drops it on smaller ones (see the note above ``BLUR_MIN_SIZE``). ``overrides`` are
    :class:`Augment` settings changed in every view, e.g. ``recipe("simclr", 32, gray_p=0.5)``.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    image_size = _check_size(image_size, "image_size")
    blur = image_size >= BLUR_MIN_SIZE if blur is None else bool(blur)
    views = RECIPES[name](image_size, mean, std, blur)
    if not overrides:
        return views
    unknown = set(overrides) - set(vars(views[0]))
    if unknown:
        raise ValueError(f"unknown augmentation settings {sorted(unknown)}; known: {sorted(vars(views[0]))}")
    # An Augment's attributes are its constructor arguments; symmetric views stay one object.
    changed = {view: Augment(**{**vars(view), **overrides}) for view in views}
    return tuple(changed[view] for view in views)


# Multi-crop (Caron et al. 2020, Sec. 3.2): besides two global crops at full resolution, a
# few small crops at low resolution. Each local crop costs a fraction of a global one, and
# predicting a whole image's code from a small part of it teaches local-to-global
# correspondence. The paper's ImageNet setting: 2 x 224 px crops of (0.14, 1) of the image
# and 6 x 96 px crops of (0.05, 0.14). Here local crops keep the paper's 96/224 of the side,
# but no fewer than LOCAL_CROP_MIN_SIZE pixels: the course's ConvNet halves its input four
# times, so 16 px is the smallest it takes (on 32 px images the local crops are 16 px, half
# the side; on 16 px images they are 16 px too, so they save no compute there).

LOCAL_CROP_MIN_SIZE = 16


def local_crop_size(image_size: int) -> int:
    """The side of SwAV's local crops for ``image_size`` px images: 96/224 of it, within [16, image_size]."""
    image_size = _check_size(image_size, "image_size")
    return min(image_size, max(LOCAL_CROP_MIN_SIZE, round(image_size * 96 / 224)))


def multi_crop(image_size: int, n_local: int = 2, local_size: int | None = None, global_scale=(0.14, 1.0),
               local_scale=(0.05, 0.14), mean=0.5, std=0.5, blur: bool | None = None,
               **overrides) -> tuple[Augment, ...]:
    """SwAV's views: two global crops at ``image_size`` then ``n_local`` local crops at ``local_size``.

    One :class:`Augment` per view, as :func:`recipe` returns: the first two are the global
    views (one object), the rest the local ones (one object). Every crop gets SimCLR's colour
    distortion (SwAV's, App. A), flip and, on large images, blur; ``overrides`` change it in
    every view (e.g. ``gray_p=0.5``). ``local_size`` defaults to :func:`local_crop_size`.
    """
    if isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 0:
        raise ValueError(f"n_local must be a non-negative int, got {n_local!r}")
    local_size = local_crop_size(image_size) if local_size is None else _check_size(local_size, "local_size")
    bad = {"scale", "size"} & set(overrides)
    if bad:
        raise ValueError(f"set crop sizes with global_scale, local_scale and local_size, not {sorted(bad)}")
    global_view = recipe("simclr", image_size, mean, std, blur, scale=global_scale, **overrides)[0]
    local_view = Augment(**{**vars(global_view), "size": local_size, "scale": local_scale,
                            "blur_kernel": blur_kernel_size(local_size)})
    return (global_view, global_view) + (local_view,) * n_local


# ---------------------------------------------------------------- pictures

def show_views(images: torch.Tensor, augment, generator: torch.Generator, n_views: int = 4):
    """Figure: one row per image, the original followed by ``n_views`` augmented views.

    ``augment`` is an :class:`Augment` or a tuple of them (as :func:`recipe` returns);
    view j uses ``augment[j % len(augment)]``, so BYOL's rows alternate its two views.
    """
    from sslcourse.plots import show_images

    check_images(images)
    check_generator(generator)
    n_views = _check_size(n_views, "n_views")
    transforms = tuple(augment) if isinstance(augment, (tuple, list)) else (augment,)
    views = []
    for j in range(n_views):
        t = transforms[j % len(transforms)]
        v = t(images, generator)
        mean = torch.tensor(t.mean[:v.shape[1]]).view(1, -1, 1, 1)
        std = torch.tensor(t.std[:v.shape[1]]).view(1, -1, 1, 1)
        views.append((v.detach().cpu() * std + mean).clamp(0, 1))  # undo normalise for display
    size = views[0].shape[-1]
    originals = resize(to_unit(images).cpu(), size).clamp(0, 1)
    grid = torch.stack([originals, *views], dim=1).flatten(0, 1)  # row-major: image, its views
    titles = (["original"] + [f"view {j + 1}" for j in range(n_views)]) * len(images)
    return show_images(grid, titles=titles, ncols=n_views + 1)


# ---------------------------------------------------------------- colour spaces
#
# CIE L*a*b* from sRGB with the D65 white point (IEC 61966-2-1 for sRGB; CIE 15:2004 for
# Lab). L (0..100) is lightness; a (green -> red) and b (blue -> yellow) carry the colour,
# roughly within -110..110 for sRGB colours. CMC contrasts L with ab, and colorization
# predicts ab from L. The steps, both ways:
#
#     sRGB --gamma--> linear RGB --matrix--> XYZ --(divide by white, cube root)--> Lab
#
# The white point is the matrix's image of linear (1, 1, 1), (0.95047, 1.00000, 1.08883),
# so sRGB white maps to exactly L = 100, a = b = 0.

# Linear sRGB -> XYZ (D65), the matrix of Lindbloom's tables, from the sRGB primaries.
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
              (0.2126729, 0.7151522, 0.0721750),
              (0.0193339, 0.1191920, 0.9503041))
_LAB_DELTA = 6.0 / 29.0   # the CIE's knee: f is a cube root above delta^3, linear below


def _check_colour_images(x, name: str) -> torch.Tensor:
    check_tensor(x, name, floating=True)
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} must have 3 channels in dimension -3, as (N, 3, H, W) or (3, H, W), "
                         f"got shape {tuple(x.shape)}")
    return x


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 ``matrix`` to the channels (dim -3) of ``x``.

    A broadcast product and a sum, not einsum: autocast would run einsum in bf16 on a GPU.
    """
    m = matrix.to(x.device, x.dtype).view(3, 3, 1, 1)
    return (m * x.unsqueeze(-4)).sum(dim=-3)              # (..., 3, 3, H, W) summed over the input channel


def _rgb_to_xyz_matrix() -> torch.Tensor:
    return torch.tensor(RGB_TO_XYZ, dtype=torch.float64)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (..., 3, H, W) float -> CIE Lab (D65): L in [0, 100], a and b about [-110, 110].

    Values outside [0, 1] are clamped first (sRGB has no colours there).
    """
    _check_colour_images(rgb, "rgb")
    c = rgb.clamp(0.0, 1.0)
    # Undo the sRGB gamma; clamp_min keeps pow away from 0, whose gradient would be infinite.
    linear = torch.where(c <= 0.04045, c / 12.92, ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)
    matrix = _rgb_to_xyz_matrix()
    white = matrix.sum(dim=1).to(rgb.device, rgb.dtype).view(3, 1, 1)   # XYZ of sRGB white
    t = _mix(matrix, linear) / white
    knee = _LAB_DELTA ** 3
    f = torch.where(t > knee, t.clamp_min(knee) ** (1.0 / 3.0), t / (3 * _LAB_DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """CIE Lab (D65), (..., 3, H, W) float -> sRGB; the inverse of :func:`rgb_to_lab`.

    Not every (L, a, b) is an sRGB colour (a predicted ab may fall outside the gamut):
    ``clamp=True`` clips the result to [0, 1], ``clamp=False`` returns it as computed.
    """
    _check_colour_images(lab, "lab")
    light, a, b = lab.unbind(-3)
    fy = (light + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=-3)
    t = torch.where(f > _LAB_DELTA, f ** 3, 3 * _LAB_DELTA ** 2 * (f - 4.0 / 29.0))
    matrix = _rgb_to_xyz_matrix()
    white = matrix.sum(dim=1).to(lab.device, lab.dtype).view(3, 1, 1)
    linear = _mix(torch.linalg.inv(matrix), t * white)
    c = torch.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * linear.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)
    return c.clamp(0.0, 1.0) if clamp else c
