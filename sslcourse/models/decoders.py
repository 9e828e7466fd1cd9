"""The one decoder of the generation-based pretext tasks: pooled features -> an image.

Autoencoders, inpainting, super-resolution and colorization all regenerate (part of) the
image from what the backbone extracted. The decoder reads only the backbone's pooled
features (N, out_dim), never its feature maps, so any backbone fits and everything the
task needs must pass through the representation that the probes evaluate:

    (N, in_dim) --linear--> (N, width, s, s) --[3x3 conv, BN, ReLU, upsample x2] x k--> 3x3 conv
                                                                    -> (N, out_channels, s 2^k, s 2^k)

``s`` is the output size with its factors of two divided out until it is at most 4
(32 -> 4 with k = 3, 16 -> 4 with k = 2, 8 -> 4 with k = 1, 28 -> 7 with k = 2). Each stage
mirrors a ConvNet block (3x3 conv, BN, ReLU, then the resolution changes): convolving before
upsampling costs a quarter of the other order, and keeps the decoder about as cheap as the
ConvNet it sits on; the last 3x3 convolution, at full resolution, draws the fine detail.
"""
import torch
from torch import nn

from ..utils import check_dim


def image_channels(backbone: nn.Module) -> int:
    """The channel count of the images ``backbone`` takes: its first convolution's input."""
    first_conv = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError(f"cannot tell which images a {type(backbone).__name__} takes: it has no Conv2d")
    return first_conv.in_channels


def start_size(out_size: int) -> tuple[int, int]:
    """(s, k) with out_size = s * 2^k and s <= 4 or odd: the decoder's first map and its upsamplings."""
    s, k = out_size, 0
    while s > 4 and s % 2 == 0:
        s, k = s // 2, k + 1
    return s, k


class ConvDecoder(nn.Module):
    """(N, in_dim) features -> (N, out_channels, out_size, out_size), no output activation.

    ``width`` channels on the first map, halved at every stage down to 16 (the ConvNet's blocks
    in reverse, for ``width`` = 128). The tasks default to 64: at 16 px, a step then costs about
    half as much as with 128, and the probes after a short run on the world came out the same.
    Targets of the reconstruction tasks live in ``to_float``'s space (about [-1, 1]);
    colorization reads the output as per-pixel logits.
    """

    def __init__(self, in_dim: int, out_channels: int, out_size: int, width: int = 128):
        super().__init__()
        self.in_dim, self.out_channels = check_dim(in_dim, "in_dim"), check_dim(out_channels, "out_channels")
        self.out_size, self.width = check_dim(out_size, "out_size"), check_dim(width, "width")
        self.first_size, upsamplings = start_size(out_size)
        self.project = nn.Linear(in_dim, width * self.first_size ** 2)
        widths = [width] + [max(16, width >> (i + 1)) for i in range(upsamplings)]
        layers = [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
        layers.append(nn.Conv2d(widths[-1], out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise ValueError(f"ConvDecoder needs features of shape (N, {self.in_dim}), got {tuple(features.shape)}")
        x = self.project(features).view(len(features), self.width, self.first_size, self.first_size)
        return self.body(x)
