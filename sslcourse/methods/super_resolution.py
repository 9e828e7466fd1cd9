"""Super-resolution: regenerate the full-resolution image from a low-resolution copy.

Ledig, Theis, Huszár, Caballero, Cunningham, Acosta, Aitken, Tejani, Totz, Wang, Shi.
"Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network."
CVPR 2017.

    x_LR = downsample(x, r)                   (N, C, H/r, W/r), the mean of each r x r block
    x~ = upsample(x_LR, r)                    (N, C, H, W), bicubic, so any backbone takes it
    l_MSE = 1/(r^2 W H) sum (x - g(f(x~)))^2  (eq. 4, per channel): the pixel-wise MSE part

SRGAN's generator is trained on the pixel-wise MSE (SRResNet) and then on a perceptual loss,
a VGG feature distance plus an adversarial term; only the MSE part is used here, since the
point is the representation the encoder learns, not photo-realistic detail. The paper's
factor is r = 4 with bicubic downsampling; here the low-resolution pixel is the mean of its
block (area downsampling, exact and easy to check), and the input is upsampled back to the
full size before the backbone (as SRCNN did), because the course's backbones and decoder
work at the image's size.
"""
import torch
import torch.nn.functional as F

from ..transforms import check_images, normalize, to_float
from .autoencoder import ReconstructionTask

FACTORS = (2, 4)


def check_factor(factor, height: int, width: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor not in FACTORS:
        raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
    if height % factor or width % factor:
        raise ValueError(f"the image size {height} x {width} must be divisible by the factor {factor}")
    return factor


def downsample(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """(N, C, H, W) uint8 or [0, 1] float -> (N, C, H/factor, W/factor) float in [0, 1], block means."""
    check_images(images)
    factor = check_factor(factor, *images.shape[-2:])
    return F.avg_pool2d(to_float(images, mean=0.0, std=1.0), factor)


def low_resolution_pair(images: torch.Tensor, factor: int = 4):
    """uint8 (N, C, H, W) -> (inputs, targets), normalised as ``to_float``, both (N, C, H, W).

    inputs: the image downsampled by ``factor`` (block means) and upsampled back (bicubic);
    targets: the image itself. No randomness.
    """
    small = downsample(images, factor)
    blurred = F.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False)
    return normalize(blurred), to_float(images)


class SuperResolution(ReconstructionTask):
    name = "super_resolution"
    paper = ("Ledig et al. Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network. "
             "CVPR 2017.")
    summary = "regenerate the full image from a 4x downsampled copy (pixel-wise MSE, no GAN or VGG loss)"

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64, factor: int = 4):
        super().__init__(backbone, image_size, decoder_width)
        self.factor = check_factor(factor, image_size, image_size)

    def make_pseudo_labels(self, images, generator):
        return low_resolution_pair(images, self.factor)

    def hparams(self):
        return {**super().hparams(), "factor": self.factor}
