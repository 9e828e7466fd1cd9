"""Exemplar CNN: every training image is its own class, seen through random transformations.

Dosovitskiy, Springenberg, Riedmiller, Brox. "Discriminative Unsupervised Feature Learning
with Convolutional Neural Networks." NeurIPS 2014.

    surrogate class i = the seed patch x_i;  its samples T(x_i), T drawn from the family below
    loss = cross-entropy(classifier(f(T(x_i))), i)        one output per training image

The paper's family of transformations (Sec. 2), each parameter drawn per sample:
translation by up to 0.2 of the patch size (vertically and horizontally), scaling by a factor
in [0.7, 1.4], rotation by up to 20 degrees; "contrast 1": the projection of every pixel on the
principal components of all pixels multiplied by a factor in [0.5, 2] per component; "contrast 2":
saturation and value (HSV) raised to a power in [0.25, 4], multiplied by a factor in [0.7, 1.4]
and shifted by [-0.1, 0.1]; "color": hue shifted by [-0.1, 0.1]. To be discriminated from the
others, a class must be recognised under all of them: the features learn to ignore them.

Differences from the paper. Its seeds are 32 px patches of STL-10 images (16,000 classes), with
K = 100 transformed samples per class drawn once; here a seed is a whole training image (the
world's images are 32 px, the paper's patch size) and transformations are drawn anew at every
step. The geometric transformations sample the image with reflection at its borders (the paper
cropped the patch from the larger image around it). The principal components are those of the
batch's pixels. The paper does not say how its powers are drawn; here their logarithm is
uniform, so that raising and lowering are equally likely. 1-channel images get the geometric
transformations only.

One default differs: the hue turns by up to half a turn (paper: 0.1). On the course's world the
object's colour tells images apart, and with the paper's range the classifier separates its
surrogate classes by colour: measured on 512 world images at 16 px, 15 epochs, the best block's
linear probe fell from 0.190 at random init to 0.174 (the last block's to 0.146), while with any
hue it rose to 0.228. ``hue_shift=(-0.1, 0.1)`` gives the paper's.

It does not scale to large data: the classifier has one output per training image (1.28
million on ImageNet), every class is seen once per epoch, and near-duplicate images are
pushed apart as different classes. The paper saw its accuracy saturate beyond about 8,000
surrogate classes. Instance discrimination with a memory bank (Wu et al. 2018, ``instdisc``)
and then contrastive learning keep the idea without the parametric classifier.
"""
import math

import torch
import torch.nn.functional as F

from ..models import MLPHead
from ..transforms import check_generator, check_images, check_range, to_unit, uniform, normalize
from ..utils import check_dim, check_weight
from .base import check_index
from .pretext import PretextTask

# The paper's ranges; "translate" is a fraction of the image side, "degrees" the largest rotation.
PAPER_RANGES = {"translate": 0.2, "scale": (0.7, 1.4), "degrees": 20.0, "pca_factor": (0.5, 2.0),
                "sv_power": (0.25, 4.0), "sv_factor": (0.7, 1.4), "sv_shift": (-0.1, 0.1), "hue_shift": (-0.1, 0.1)}
# The method's defaults: any hue, as the world's colour is a shortcut (see the module's docstring).
DEFAULT_RANGES = {**PAPER_RANGES, "hue_shift": (-0.5, 0.5)}


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue in turns; gray pixels get hue 0)."""
    r, g, b = rgb.unbind(1)
    value = rgb.amax(dim=1)
    chroma = value - rgb.amin(dim=1)
    safe = chroma.clamp_min(1e-12)
    hue6 = torch.where(value == r, ((g - b) / safe).remainder(6.0),
                       torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = torch.where(chroma > 0, hue6 / 6.0, torch.zeros_like(hue6))
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) HSV in [0, 1] -> RGB: channel = v (1 - s clamp(min(k, 4 - k), 0, 1)), k = (n + 6 h) mod 6."""
    hue, saturation, value = hsv.unbind(1)
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = (n + 6.0 * hue.unsqueeze(1)).remainder(6.0)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))


def sample_exemplar_params(n: int, generator: torch.Generator, translate: float = 0.2, scale=(0.7, 1.4),
                           degrees: float = 20.0, pca_factor=(0.5, 2.0), sv_power=(0.25, 4.0), sv_factor=(0.7, 1.4),
                           sv_shift=(-0.1, 0.1), hue_shift=(-0.1, 0.1)) -> dict:
    """Per-image parameters (CPU tensors) of the paper's transformations, for ``exemplar_transform``:

    shift (n, 2) fractions of the side (x, y), scale (n,), angle (n,) degrees, pca (n, 3) factors,
    power, factor, offset (n, 2) for saturation and value, hue (n,) turns.
    """
    check_generator(generator)
    check_dim(n, "n")
    translate = check_weight(translate, "translate")
    degrees = check_weight(degrees, "degrees")
    scale = check_range(scale, "scale", 1e-3, math.inf)
    pca_factor = check_range(pca_factor, "pca_factor", 0.0, math.inf)
    sv_power = check_range(sv_power, "sv_power", 1e-3, math.inf)
    sv_factor = check_range(sv_factor, "sv_factor", 0.0, math.inf)
    sv_shift = check_range(sv_shift, "sv_shift", -1.0, 1.0)
    hue_shift = check_range(hue_shift, "hue_shift", -0.5, 0.5)
    return {"shift": uniform(generator, (n, 2), -translate, translate),
            "scale": uniform(generator, n, *scale),
            "angle": uniform(generator, n, -degrees, degrees),
            "pca": uniform(generator, (n, 3), *pca_factor),
            "power": torch.exp(uniform(generator, (n, 2), math.log(sv_power[0]), math.log(sv_power[1]))),
            "factor": uniform(generator, (n, 2), *sv_factor),
            "offset": uniform(generator, (n, 2), *sv_shift),
            "hue": uniform(generator, n, *hue_shift)}


def _move_rotate_scale(x: torch.Tensor, shift, scale, angle) -> torch.Tensor:
    """One affine grid_sample per batch: output pixel u reads input R(angle) u / scale - 2 shift
    (normalised coordinates), so the content moves by ``shift`` of the side and grows by ``scale``."""
    radians = angle * math.pi / 180
    cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
    theta = torch.stack([torch.stack([cos, -sin, -2 * shift[:, 0]], dim=1),
                         torch.stack([sin, cos, -2 * shift[:, 1]], dim=1)], dim=1)          # (N, 2, 3)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _pca_contrast(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's coordinates along the principal components of the batch's pixels."""
    pixels = x.transpose(0, 1).flatten(1)                                                    # (3, N H W)
    mean = pixels.mean(dim=1)
    _, components = torch.linalg.eigh(torch.cov(pixels, correction=0).double().cpu())                    # (3, 3) columns
    components = components.to(x.device, x.dtype)
    centred = x - mean.view(1, 3, 1, 1)
    projected = torch.einsum("nchw,ck->nkhw", centred, components) * factors.to(x.device, x.dtype).view(-1, 3, 1, 1)
    return (torch.einsum("nkhw,ck->nchw", projected, components) + mean.view(1, 3, 1, 1)).clamp(0, 1)


def _hsv_changes(x: torch.Tensor, power, factor, offset, hue) -> torch.Tensor:
    h, sv = rgb_to_hsv(x).split([1, 2], dim=1)
    per_image = lambda v: v.to(x.device, x.dtype).view(len(x), -1, 1, 1)   # noqa: E731
    sv = (sv.pow(per_image(power)) * per_image(factor) + per_image(offset)).clamp(0, 1)
    h = (h + per_image(hue)).remainder(1.0)
    return hsv_to_rgb(torch.cat([h, sv], dim=1))


def exemplar_transform(images: torch.Tensor, params: dict) -> torch.Tensor:
    """(N, C, H, W) uint8 or [0, 1] float images -> float32 in [0, 1], each moved, scaled and rotated,
    then (3 channels) its principal-component contrast, saturation, value and hue changed, as ``params``
    (from :func:`sample_exemplar_params`) says."""
    check_images(images)
    x = _move_rotate_scale(to_unit(images), params["shift"], params["scale"], params["angle"]).clamp(0, 1)
    if x.shape[1] == 3:
        x = _pca_contrast(x, params["pca"])
        x = _hsv_changes(x, params["power"], params["factor"], params["offset"], params["hue"])
    return x


class Exemplar(PretextTask):
    name = "exemplar"
    paper = ("Dosovitskiy, Springenberg, Riedmiller, Brox. Discriminative Unsupervised Feature Learning with "
             "Convolutional Neural Networks. NeurIPS 2014.")
    summary = "every training image a surrogate class, its random transformations the samples; one output per image"
    batch_extras = ("index",)
    defaults = {**PretextTask.defaults, "lr": 3e-3, "batch_size": 64}

    def __init__(self, backbone, n_classes: int, image_size: int = 32, head_hidden_dim: int = 512,
                 head_layers: int = 1, **ranges):
        """``n_classes``: the number of training images (``for_data`` passes it). ``ranges``: any of
        ``DEFAULT_RANGES`` (the paper's, but any hue), as :func:`sample_exemplar_params` takes them.
        The classifier: ``head_layers`` linear layers (1: a linear softmax classifier, as the paper's).
        """
        super().__init__(backbone)
        unknown = set(ranges) - set(DEFAULT_RANGES)
        if unknown:
            raise ValueError(f"unknown transformation ranges {sorted(unknown)}; known: {sorted(DEFAULT_RANGES)}")
        self.ranges = {**DEFAULT_RANGES, **ranges}
        sample_exemplar_params(1, torch.Generator(), **self.ranges)                  # validates the ranges
        self.n_classes = check_dim(n_classes, "n_classes")
        self.image_size = image_size
        self.head_hidden_dim = check_dim(head_hidden_dim, "head_hidden_dim")
        self.head_layers = check_dim(head_layers, "head_layers")
        self.head = MLPHead(backbone.out_dim, head_hidden_dim, n_classes, num_layers=head_layers)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        return cls(backbone, **{"n_classes": len(data.train_images), "image_size": data.image_size, **hparams})

    def make_pseudo_labels(self, images, generator, index):
        """-> (transformed images normalised as for evaluation (N, C, H, W), their classes ``index`` (N,))."""
        check_index(index, len(images), self.n_classes)          # an image's position is its class
        params = sample_exemplar_params(len(images), generator, **self.ranges)
        return normalize(exemplar_transform(images, params)), index

    def training_step(self, images, generator, index):
        inputs, targets = self.make_pseudo_labels(images, generator, index)
        return self.loss(self.predict(inputs), targets)

    def hparams(self):
        return {"n_classes": self.n_classes, "image_size": self.image_size, "head_hidden_dim": self.head_hidden_dim,
                "head_layers": self.head_layers, **self.ranges}
