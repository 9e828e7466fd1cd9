"""Colorization: predict the colour (ab of Lab) of a grey image, as classification over ab bins.

Zhang, Isola, Efros. "Colorful Image Colorization." ECCV 2016.

    L, ab = Lab(x)                          L lightness (0..100), ab colour (about -110..110)
    Z = H(ab)                               (N, h, w) index of the nearest of Q in-gamut ab bins
    Z^ = g(f(grey(L)))                      (N, Q, h, w) logits, at 1/4 of the image's side
    L_cl = -1/(hw) sum_{h,w} v(Z_hw) log softmax(Z^)_{hw, Z_hw}                   (eq. 2)
    v(q) = w_q,  w ∝ ((1 - lambda) p~ + lambda / Q)^-1,  sum_q p~_q w_q = 1       (eq. 3-4)

Colour is ambiguous (a car may be red or blue), so a regression to the mean ab gives grey,
washed-out pictures; classification over bins keeps several modes, and class rebalancing
(the weights w) keeps the common low-saturation bins from drowning the rest. p~ is the
empirical distribution of the training pixels' bins, smoothed with a Gaussian of sigma = 5
(ab units), and lambda = 0.5 mixes it with the uniform one (the paper's values). A picture
is decoded with the annealed mean of the predicted distribution (T = 0.38): between its
mode (vivid, patchy) and its mean (smooth, grey).

Bins: an ab grid of size 10, keeping the bins that some sRGB colour falls into. The paper
reports Q = 313 in-gamut bins; counting the bins that 8-bit sRGB colours round to gives
Q = 261 here (the count depends on how "in gamut" is decided; a superset of ours, such as
bins inside the gamut's convex hull, would give more). Where the paper's targets are soft
(the 5 nearest bins, Gaussian-weighted), here each pixel has one bin.

Choices for 32 px images: the backbone takes the L channel as a grey RGB image (R = G = B,
the sRGB grey of the same lightness), so that it stays an ordinary 3-channel backbone that
any probe reads; the paper's network saw L alone. The decoder reads the pooled features, so
the output is per pixel at 1/4 of the side (8 x 8 on 32 px images), which is also the
paper's output resolution (56 x 56 on 224 px inputs), against targets made from the mean ab
of each 4 x 4 block.
"""
import functools

import torch
import torch.nn.functional as F

from ..models.decoders import ConvDecoder, image_channels
from ..transforms import check_images, from_float, lab_to_rgb, normalize, rgb_to_lab, to_float, to_unit
from ..utils import check_dim, check_positive, check_tensor, eval_mode
from .pretext import PretextTask

AB_GRID = 10            # the side of an ab bin (Lab units)
GRID_REACH = 12         # grid indices kept in the look-up table: -120 .. 120 covers every Lab colour of sRGB
SRGB_LEVEL_STEP = 4     # in-gamut bins are searched over 8-bit levels 0, 4, ..., 252, 255 per channel


@functools.cache
def ab_bins() -> torch.Tensor:
    """(Q, 2) float64 centres (a, b) of the in-gamut ab bins, sorted by a then b; Q = 261.

    A bin is in gamut when some 8-bit sRGB colour's ab rounds to its centre (grid of
    ``AB_GRID``). Searching every 4th level per channel finds the same 261 bins as all
    16.7 million colours (checked once; the full search takes seconds, this one a fraction).
    """
    levels = torch.cat([torch.arange(0, 256, SRGB_LEVEL_STEP), torch.tensor([255])]).double() / 255
    r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
    lab = rgb_to_lab(torch.stack([r.flatten(), g.flatten(), b.flatten()]).view(3, 1, -1))   # (3, 1, M)
    cells = torch.round(lab[1:, 0] / AB_GRID).long()                                        # (2, M)
    return torch.unique(cells, dim=1).T.double() * AB_GRID                                  # sorted (a, b)


@functools.cache
def _grid_to_bin() -> torch.Tensor:
    """(2R+1, 2R+1) long: grid cell (a / 10 + R, b / 10 + R) -> index of the nearest in-gamut bin to its centre."""
    steps = torch.arange(-GRID_REACH, GRID_REACH + 1, dtype=torch.float64) * AB_GRID
    cells = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(-1, 2)   # (G^2, 2)
    return torch.cdist(cells, ab_bins()).argmin(dim=1).view(len(steps), len(steps))


def quantize_ab(ab: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) ab -> (N, H, W) long: the index (into :func:`ab_bins`) of each pixel's bin.

    The ab of every 8-bit sRGB colour goes to its nearest bin centre, which is its grid cell's;
    any other ab (a mean of colours, a prediction) whose cell is not in the gamut goes to the
    in-gamut bin nearest to that cell's centre.
    """
    check_tensor(ab, "ab", ndim=4, floating=True)
    if ab.shape[1] != 2:
        raise ValueError(f"ab must have 2 channels (N, 2, H, W), got shape {tuple(ab.shape)}")
    cell = (torch.round(ab / AB_GRID).long().clamp(-GRID_REACH, GRID_REACH) + GRID_REACH)   # (N, 2, H, W)
    return _grid_to_bin().to(ab.device)[cell[:, 0], cell[:, 1]]


def lab_of(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 1] float) RGB (N, 3, H, W) -> Lab (N, 3, H, W) float32."""
    check_images(images)
    if images.shape[1] != 3:
        raise ValueError(f"colour images (N, 3, H, W) are needed, got shape {tuple(images.shape)}")
    return rgb_to_lab(to_float(images, mean=0.0, std=1.0))


def grey_input(lab: torch.Tensor) -> torch.Tensor:
    """Lab (N, 3, H, W) -> the sRGB grey image of the same lightness, normalised as ``to_float``."""
    return normalize(lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1)))


def check_downsample(downsample, image_size: int) -> int:
    if isinstance(downsample, bool) or downsample not in (1, 2, 4, 8) or image_size % downsample:
        raise ValueError(f"downsample must be 1, 2, 4 or 8 and divide the image size {image_size}, got {downsample!r}")
    return downsample


def colorization_batch(images: torch.Tensor, downsample: int = 4):
    """uint8 RGB (N, 3, H, W) -> (inputs, targets).

    inputs: (N, 3, H, W) the grey image of the same lightness, normalised as ``to_float``;
    targets: (N, H/d, W/d) long, the bin of each d x d block's mean ab. No randomness.
    """
    lab = lab_of(images)
    return grey_input(lab), colour_targets(lab, downsample)


def colour_targets(lab: torch.Tensor, downsample: int = 4) -> torch.Tensor:
    """Lab (N, 3, H, W) -> (N, H/d, W/d) long: the bin of each d x d block's mean ab."""
    downsample = check_downsample(downsample, lab.shape[-1])
    return quantize_ab(F.avg_pool2d(lab[:, 1:], downsample))


def ab_distribution(images: torch.Tensor, downsample: int = 4, chunk: int = 512) -> torch.Tensor:
    """(Q,) float64 empirical distribution of the target bins over ``images`` (uint8 RGB)."""
    counts = torch.zeros(len(ab_bins()), dtype=torch.float64)
    for start in range(0, len(images), chunk):
        targets = colour_targets(lab_of(images[start:start + chunk]), downsample)
        counts += torch.bincount(targets.flatten().cpu(), minlength=len(counts)).double()
    return counts / counts.sum()


def _check_distribution(p, name: str) -> torch.Tensor:
    check_tensor(p, name, ndim=1, floating=True)
    if len(p) != len(ab_bins()) or (p < 0).any() or not p.sum() > 0:
        raise ValueError(f"{name} must be {len(ab_bins())} non-negative numbers (one per ab bin) with a positive "
                         f"sum, got shape {tuple(p.shape)}")
    return p / p.sum()


def smooth_distribution(p: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """p~: (Q,) ``p`` convolved with a Gaussian of std ``sigma`` over the bin centres, renormalised."""
    p = _check_distribution(p, "p")
    sigma = check_positive(sigma, "sigma")
    centres = ab_bins().to(p.device, p.dtype)
    kernel = torch.exp(-torch.cdist(centres, centres) ** 2 / (2 * sigma ** 2))      # (Q, Q), symmetric
    smoothed = kernel @ p
    return smoothed / smoothed.sum()


def rebalancing_weights(p: torch.Tensor, lambd: float = 0.5, sigma: float = 5.0) -> torch.Tensor:
    """(Q,) class weights w ∝ ((1 - lambd) p~ + lambd / Q)^-1 with sum_q p~_q w_q = 1.

    ``p``: the empirical (Q,) distribution of the bins (normalised here), p~ its smoothed
    version (:func:`smooth_distribution`). lambd = 1: uniform weights; lambd -> 0: inverse frequency.
    """
    if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not 0 < lambd <= 1:
        raise ValueError(f"lambd must be a number in (0, 1], got {lambd!r}")
    smoothed = smooth_distribution(p, sigma)
    weights = 1.0 / ((1 - lambd) * smoothed + lambd / len(smoothed))
    return weights / (smoothed * weights).sum()


def rebalanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """-mean over pixels of w[Z] log softmax(logits)[Z]. logits (N, Q, h, w), targets (N, h, w), weights (Q,)."""
    check_tensor(logits, "logits", ndim=4, floating=True)
    check_tensor(targets, "targets", ndim=3)
    if targets.shape != (logits.shape[0], *logits.shape[2:]) or weights.shape != (logits.shape[1],):
        raise ValueError(f"logits (N, Q, h, w) = {tuple(logits.shape)} need targets (N, h, w) and weights (Q,), got "
                         f"{tuple(targets.shape)} and {tuple(weights.shape)}")
    return (weights[targets] * F.cross_entropy(logits, targets, reduction="none")).mean()


def annealed_mean(logits: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """(N, Q, h, w) logits -> (N, 2, h, w) ab: sum_q f_T(z)_q c_q, f_T(z) ∝ exp(log z / T) (eq. 5).

    With z = softmax(logits), f_T(z) = softmax(logits / T): T = 1 is the mean, T -> 0 the mode.
    """
    check_tensor(logits, "logits", ndim=4, floating=True)
    temperature = check_positive(temperature, "temperature")
    probabilities = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probabilities, ab_bins().to(logits.device, torch.float32))


def decode_colours(logits: torch.Tensor, lightness: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Predicted (N, Q, h, w) logits and the (N, 1, H, W) L channel -> (N, 3, H, W) RGB in [0, 1].

    The annealed-mean ab is upsampled (bilinear) to the lightness's size, as the paper does.
    """
    ab = F.interpolate(annealed_mean(logits, temperature), size=lightness.shape[-2:], mode="bilinear",
                       align_corners=False)
    return lab_to_rgb(torch.cat([lightness.float(), ab], dim=1))


class Colorization(PretextTask):
    name = "colorization"
    paper = "Zhang, Isola, Efros. Colorful Image Colorization. ECCV 2016."
    summary = "predict the ab colour bins of a grey image (313 in the paper, 261 here), class-rebalanced"
    defaults = {**PretextTask.defaults, "batch_size": 64}   # as the reconstruction tasks (autoencoder.py)

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64, downsample: int = 4,
                 rebalance: bool = True, lambd: float = 0.5, sigma: float = 5.0, temperature: float = 0.38):
        """Without a prior (``set_prior``, which ``for_data`` calls with the training images'
        distribution) the class weights are 1. ``temperature`` is the annealed mean's (pictures only)."""
        super().__init__(backbone)
        if image_channels(backbone) != 3:
            raise ValueError(f"colorization needs colour images and a 3-channel backbone, got one taking "
                             f"{image_channels(backbone)} channel(s)")
        if not isinstance(rebalance, bool):
            raise TypeError(f"rebalance must be True or False, got {rebalance!r}")
        self.image_size = check_dim(image_size, "image_size")
        self.decoder_width = check_dim(decoder_width, "decoder_width")
        self.downsample = check_downsample(downsample, image_size)
        self.rebalance, self.lambd, self.sigma = rebalance, lambd, sigma
        self.temperature = check_positive(temperature, "temperature")
        n_bins = len(ab_bins())
        rebalancing_weights(torch.ones(n_bins, dtype=torch.float64), lambd, sigma)       # validates lambd, sigma
        self.decoder = ConvDecoder(backbone.out_dim, n_bins, image_size // downsample, decoder_width)
        self.register_buffer("prior", torch.full((n_bins,), 1.0 / n_bins, dtype=torch.float64))
        self.register_buffer("class_weights", torch.ones(n_bins))

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        method = cls(backbone, **{"image_size": data.image_size, **hparams})
        method.set_prior(ab_distribution(data.train_images, method.downsample))
        return method

    def set_prior(self, p: torch.Tensor) -> None:
        """Store the empirical bin distribution ``p`` and, with ``rebalance``, the weights it gives."""
        self.prior.copy_(_check_distribution(p, "p"))
        if self.rebalance:
            self.class_weights.copy_(rebalancing_weights(self.prior, self.lambd, self.sigma))

    def make_pseudo_labels(self, images, generator):
        return colorization_batch(images, self.downsample)

    def predict(self, inputs):
        return self.decoder(self.backbone(inputs))                       # (N, Q, H/d, W/d) logits

    def loss(self, predictions, targets):
        return rebalanced_cross_entropy(predictions.float(), targets, self.class_weights)

    @torch.no_grad()
    def colorize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (N, 3, H, W) -> (N, 3, H, W) RGB in [0, 1]: the images recoloured from their grey version."""
        lab = lab_of(images)
        with eval_mode(self):
            logits = self.predict(grey_input(lab))
        return decode_colours(logits, lab[:, :1], self.temperature)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """uint8 RGB -> (grey input, colourised, original), float images in [0, 1] for pictures.

        Colorization draws nothing at random; ``generator`` is taken (and unused) so that every
        generation task pictures its work through the same call."""
        return from_float(grey_input(lab_of(images))), self.colorize(images), to_unit(images)

    def hparams(self):
        return {"image_size": self.image_size, "decoder_width": self.decoder_width, "downsample": self.downsample,
                "rebalance": self.rebalance, "lambd": self.lambd, "sigma": self.sigma, "temperature": self.temperature}
