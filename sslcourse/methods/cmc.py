"""Contrastive multiview coding on the two views of Lab: lightness L against colour ab.

Tian, Krishnan, Isola. "Contrastive Multiview Coding." ECCV 2020.

    (L, ab) = Lab(x)                          one crop of the image, split by channel
    z_L = h_L(f_L(L)),  z_ab = h_ab(f_ab(ab)) two encoders (1 and 2 input channels), linear heads
    loss = cmc(z_L, z_ab, tau = 0.07)         each view picks its image's other view in the batch

What L and ab share is the scene (shapes, layout, which object is where), not the
lightness-only or colour-only details, so that is what the features keep. The backbone
kept for downstream tasks is a :class:`LabSplitEncoder`: it takes ordinary RGB batches,
normalised as ``sslcourse.transforms.to_float`` does, and returns both encoders'
features side by side (the paper's representation, too). The paper draws its negatives
from a memory bank of 16,384 entries per view; here they are the other images of the
batch, which suits short CPU runs.
"""
import torch
from torch import nn

from ..losses import cmc
from ..models import BACKBONES, build_backbone
from ..transforms import Augment, rgb_to_lab
from .base import Method


class LabSplitEncoder(nn.Module):
    """Normalised RGB (N, 3, H, W) -> Lab -> L into ``l_encoder``, ab into ``ab_encoder`` -> (N, D_L + D_ab).

    ``mean`` and ``std`` undo the normalisation of the input (0.5 and 0.5: ``to_float``'s).
    L (0..100) is mapped to [-1, 1] and ab (about -110..110) to about [-1, 1].
    """

    def __init__(self, l_encoder: nn.Module, ab_encoder: nn.Module, mean: float = 0.5, std: float = 0.5):
        super().__init__()
        self.l_encoder, self.ab_encoder = l_encoder, ab_encoder
        self.mean, self.std = mean, std
        self.out_dim = l_encoder.out_dim + ab_encoder.out_dim

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) normalised RGB -> L (N, 1, H, W) and ab (N, 2, H, W), both scaled to about [-1, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LabSplitEncoder needs RGB batches (N, 3, H, W), got shape {tuple(x.shape)}")
        lab = rgb_to_lab(x * self.std + self.mean)
        return lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / 110.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        light, ab = self.split(x)
        return torch.cat([self.l_encoder(light), self.ab_encoder(ab)], dim=1)


class CMC(Method):
    name = "cmc"
    paper = "Tian, Krishnan, Isola. Contrastive Multiview Coding. ECCV 2020."
    summary = "L vs ab of Lab: two encoders, each view picks its image's other view (in-batch)"
    # The paper trains for 200+ epochs with SGD and a 16k memory bank; AdamW at batch 64 on the CPU.
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.07, proj_dim: int = 128):
        """``backbone`` gives the type of the two encoders (``ConvNet``, ``ResNet18``); they are built
        fresh, with 1 and 2 input channels, and replace it in a :class:`LabSplitEncoder`."""
        kind = next((name for name, cls in BACKBONES.items() if type(backbone) is cls), None)
        if kind is None:
            raise ValueError(f"CMC builds its two encoders like the backbone, which must be one of "
                             f"{', '.join(BACKBONES)}; got a {type(backbone).__name__}")
        first_conv = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
        if first_conv.in_channels != 3:
            raise ValueError(f"CMC splits colour images into L and ab; the backbone takes "
                             f"{first_conv.in_channels} channel(s), the images must have 3")
        super().__init__(LabSplitEncoder(build_backbone(kind, channels=1), build_backbone(kind, channels=2)))
        self.temperature, self.image_size, self.proj_dim = temperature, image_size, proj_dim
        self.l_head = nn.Linear(self.backbone.l_encoder.out_dim, proj_dim)
        self.ab_head = nn.Linear(self.backbone.ab_encoder.out_dim, proj_dim)
        # CMC's augmentation on Lab: crop and flip; colour is one of the views, so no colour jitter.
        self.augment = Augment(image_size, scale=(0.2, 1.0), flip_p=0.5)

    def training_step(self, images, generator):
        light, ab = self.backbone.split(self.augment(images, generator))
        z_light = self.l_head(self.backbone.l_encoder(light))      # (N, proj_dim)
        z_ab = self.ab_head(self.backbone.ab_encoder(ab))          # (N, proj_dim)
        return cmc(z_light, z_ab, self.temperature)

    def hparams(self):
        return {"image_size": self.image_size, "temperature": self.temperature, "proj_dim": self.proj_dim}
