"""Backbones: images (N, C, H, W) -> features (N, out_dim).

Each backbone ends in global average pooling and exposes ``out_dim`` and ``blocks``
(its stages in order), so that heads and layer-wise probes can be attached to any.
"""
import torch
from torch import nn
from torchvision.models import resnet18

from .vit import ViT


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, then 2x2 max-pool halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvNet(nn.Module):
    """Four conv blocks (16-32-64-128 channels): trains in minutes on a laptop CPU.

    On 32x32 inputs the feature maps go 32 -> 16 -> 8 -> 4 -> 2 before pooling.
    Doubling every width costs four times the compute for little gain on short runs.
    """

    def __init__(self, channels: int = 3, widths=(16, 32, 64, 128)):
        super().__init__()
        c_in = (channels, *widths[:-1])
        self.blocks = nn.ModuleList(conv_block(i, o) for i, o in zip(c_in, widths))
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem of SimCLR (Chen et al. 2020, App. B.9).

    A 3x3 stride-1 first convolution and no max-pool keep 32x32 images from shrinking
    to 1x1 before the last stage; the classifier is removed (out_dim = 512).
    """

    def __init__(self, channels: int = 3):
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.blocks = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3))


BACKBONES = {
    "convnet": ConvNet,
    "resnet18": ResNet18,
    "vit": ViT,   # patch tokens, mean-pooled (sslcourse/models/vit.py)
}


def build_backbone(name: str = "convnet", channels: int = 3) -> nn.Module:
    """Build a backbone by name; see ``BACKBONES`` for the choices."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    if channels not in (1, 2, 3):   # 2: the ab channels of Lab, for CMC
        raise ValueError(f"channels must be 1, 2 or 3, got {channels!r}")
    return BACKBONES[name](channels=channels)
