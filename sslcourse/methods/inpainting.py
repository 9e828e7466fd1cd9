"""Inpainting with a context encoder: cut a region out of the image, regenerate it from the rest.

Pathak, Krähenbühl, Donahue, Darrell, Efros. "Context Encoders: Feature Learning by
Inpainting." CVPR 2016.

    M = region_mask(x)                         (N, 1, H, W), True where the image is missing
    x~ = x outside M, the mean value inside M  the network sees only the context
    x^ = g(f(x~))                              decoder g on the backbone's pooled features f
    L_rec = || w (.) (x^ - x) ||^2             (eq. 1), w = 1 on M, 10 on a thin band around it

Pathak et al. remove a central square of a quarter of the image (64 x 64 of 128 x 128),
or several random blocks covering up to a quarter, or random shapes, and fill the hole with
the data set's mean colour. Their network predicts a region slightly larger than the hole:
a band of 4 px (of 128) of visible context around it, whose reconstruction error weighs
10 times more, so that the fill joins its surroundings (their released training code).
Here the band is ``overlap`` px wide (1 px on 32 px images, about the paper's 4/128), the
fill is the middle grey of ``to_float``'s normalisation (0 in normalised space), and the
loss is the weighted mean of the squared error. The paper adds an adversarial loss
(weight 0.001) that makes the fill sharper; it is left out here: the reconstruction loss
alone is what teaches the encoder, and a discriminator would double the cost of a step.
"""
import math

import torch
import torch.nn.functional as F

from ..transforms import check_generator, check_images, to_float
from ..utils import check_dim, check_tensor, check_weight
from .autoencoder import ReconstructionTask

MODES = ("center", "random_blocks")
FILL = 0.0   # the normalisation's mean, middle grey


def region_mask(images: torch.Tensor, generator: torch.Generator, mode: str = "center", fraction: float = 0.25,
                n_blocks: int = 4) -> torch.Tensor:
    """(N, C, H, W) images -> (N, 1, H, W) bool mask on their device, True where the region is removed.

    ``mode="center"``: the centred rectangle of round(H sqrt(fraction)) x round(W sqrt(fraction))
    pixels (fraction 0.25: half the side, the paper's central region); the generator is unused.
    ``mode="random_blocks"``: ``n_blocks`` squares of side round(sqrt(fraction H W / n_blocks)),
    each at a uniformly random position, so that together they cover at most ``fraction``
    of the image (less where they overlap).
    """
    check_images(images)
    check_generator(generator)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number in (0, 1), the share of the image to remove, got {fraction!r}")
    n_blocks = check_dim(n_blocks, "n_blocks")
    n, _, height, width = images.shape
    if mode == "center":
        sides = (round(height * math.sqrt(fraction)), round(width * math.sqrt(fraction)))
        count = 1
    else:
        side = round(math.sqrt(fraction * height * width / n_blocks))
        sides, count = (side, side), n_blocks
    if min(sides) < 1 or sides[0] >= height or sides[1] >= width:
        raise ValueError(f"fraction {fraction} of a {height} x {width} image in {count} block(s) gives blocks of "
                         f"{sides[0]} x {sides[1]} px; choose a fraction that leaves them between 1 px and the image")
    if mode == "center":
        top, left = torch.full((n, 1), (height - sides[0]) // 2), torch.full((n, 1), (width - sides[1]) // 2)
    else:
        top = torch.randint(height - sides[0] + 1, (n, count), generator=generator)
        left = torch.randint(width - sides[1] + 1, (n, count), generator=generator)
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + sides[0])       # (N, count, H)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + sides[1])     # (N, count, W)
    mask = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)             # (N, H, W)
    return mask.unsqueeze(1).to(images.device)


def mask_images(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 images and their (N, 1, H, W) mask -> normalised float inputs, the masked region filled with grey."""
    return to_float(images).masked_fill(mask, FILL)


def loss_weights(mask: torch.Tensor, overlap: int = 1, overlap_weight: float = 10.0) -> torch.Tensor:
    """(N, 1, H, W) float weights: 1 on the mask, ``overlap_weight`` on the band of visible pixels
    within ``overlap`` px of it (a square neighbourhood), 0 elsewhere."""
    near = F.max_pool2d(mask.float(), 2 * overlap + 1, stride=1, padding=overlap) > 0 if overlap else mask
    return mask.float() + overlap_weight * (near & ~mask).float()


def masked_reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, overlap: int = 1,
                               overlap_weight: float = 10.0) -> torch.Tensor:
    """Weighted mean squared error, sum w (x^ - x)^2 / (C sum w), with w from :func:`loss_weights`.

    ``prediction`` and ``target``: (N, C, H, W) float; ``mask``: (N, 1, H, W) bool, True where the
    input was removed. Pixels far from the mask (w = 0) do not count, nor get any gradient.
    """
    check_tensor(prediction, "prediction", ndim=4, floating=True)
    check_tensor(target, "target", ndim=4, floating=True)
    check_tensor(mask, "mask", ndim=4)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have the same shape, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    if mask.dtype != torch.bool or mask.shape != (target.shape[0], 1, *target.shape[2:]):
        raise ValueError(f"mask must be bool of shape {(target.shape[0], 1, *target.shape[2:])}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be an int >= 0 (px), got {overlap!r}")
    weights = loss_weights(mask, overlap, check_weight(overlap_weight, "overlap_weight")).to(prediction.dtype)
    if not weights.sum() > 0:
        raise ValueError("the mask is empty: there is nothing to reconstruct")
    return (weights * (prediction - target) ** 2).sum() / (weights.sum() * target.shape[1])


class Inpainting(ReconstructionTask):
    name = "inpainting"
    paper = ("Pathak, Krähenbühl, Donahue, Darrell, Efros. Context Encoders: Feature Learning by Inpainting. "
             "CVPR 2016.")
    summary = "fill a removed central square (or random blocks) from its context; L2 on the hole, 10x at its edge"

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64, mode: str = "center",
                 fraction: float = 0.25, n_blocks: int = 4, overlap: int = 1, overlap_weight: float = 10.0):
        """``mode``, ``fraction``, ``n_blocks``: see :func:`region_mask`; ``overlap``, ``overlap_weight``:
        see :func:`masked_reconstruction_loss`. The decoder regenerates the whole image; only the
        hole and the band around it are scored."""
        super().__init__(backbone, image_size, decoder_width)
        probe = torch.zeros(1, 1, image_size, image_size, dtype=torch.uint8)
        mask = region_mask(probe, torch.Generator(), mode, fraction, n_blocks)          # validates for this size
        masked_reconstruction_loss(probe.float(), probe.float(), mask, overlap, overlap_weight)   # and the loss's
        self.mode, self.fraction, self.n_blocks = mode, fraction, n_blocks
        self.overlap, self.overlap_weight = overlap, overlap_weight

    def make_pseudo_labels(self, images, generator):
        mask = region_mask(images, generator, self.mode, self.fraction, self.n_blocks)   # (N, 1, H, W)
        return mask_images(images, mask), (to_float(images), mask)

    def loss(self, predictions, targets):
        clean, mask = targets
        return masked_reconstruction_loss(predictions, clean, mask, self.overlap, self.overlap_weight)

    def hparams(self):
        return {**super().hparams(), "mode": self.mode, "fraction": self.fraction, "n_blocks": self.n_blocks,
                "overlap": self.overlap, "overlap_weight": self.overlap_weight}
