"""Split-brain autoencoder: two half networks, each predicts the channels the other one sees.

Zhang, Isola, Efros. "Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel
Prediction." CVPR 2017.

    X = (X1, X2) = (L, ab)                    the Lab image, split by channel
    F1: L -> ab bins,  F2: ab -> L bins       two disjoint sub-networks, each with its decoder
    loss = CE(F1(X1), H(X2)) + CE(F2(X2), H(X1))   H quantises the target channels
    F(X) = [F1(X1), F2(X2)]                   the representation: both halves' features

A plain autoencoder sees the whole input and must squeeze it through a bottleneck; each half
here must predict what it cannot see, so neither can copy. The paper splits AlexNet in two
halves with half of the channels each (so the whole has the original width) and compares
regression (L2) with classification (cross-entropy over quantised values) for both
directions; classification transferred better, so both directions here are classifications:
ab over the in-gamut bins of :mod:`sslcourse.methods.colorization`, L over ``l_bins`` equal
bins of 0..100. The 20 L bins and the plain (not rebalanced) cross-entropy are this course's
choices, not the paper's. The targets are per pixel at 1/4 of the side (block means), decoded
from each half's pooled features as in colorization.

The method's ``backbone`` is a :class:`SplitBrainEncoder`: it takes ordinary RGB batches
normalised as ``to_float``, splits them into L and ab (as CMC's :class:`LabSplitEncoder`,
which it extends), and returns the two halves' pooled features side by side, so the probes
read the paper's representation. For a ``ConvNet`` the halves have half the widths
(8-16-32-64 each: together the 16-32-64-128 of one ConvNet, ``out_dim`` 128); torchvision's
ResNet-18 has no width setting, so each half of a ``ResNet18`` is a full one (``out_dim`` 1024).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..models import BACKBONES, ConvNet, build_backbone
from ..models.decoders import ConvDecoder, image_channels
from ..transforms import lab_to_rgb, to_float, to_unit
from ..utils import check_dim, eval_mode
from .cmc import LabSplitEncoder
from .colorization import ab_bins, check_downsample, colour_targets, decode_colours, lab_of
from .pretext import PretextTask

SPLITTABLE = ("convnet", "resnet18")   # convolutional backbones, whose blocks take and give image-like maps


class PairedBlock(nn.Module):
    """One stage of both halves on a map that holds them side by side: channels [:split] go to
    ``l_block``, the rest to ``ab_block``; the outputs are concatenated in the same order."""

    def __init__(self, l_block: nn.Module, ab_block: nn.Module, split: int):
        super().__init__()
        self.l_block, self.ab_block, self.split = l_block, ab_block, split

    def forward(self, x):
        return torch.cat([self.l_block(x[:, :self.split]), self.ab_block(x[:, self.split:])], dim=1)


class LabChannels(nn.Module):
    """Normalised RGB (N, 3, H, W) -> (N, 3, H, W): scaled L, then scaled a and b."""

    def __init__(self, split):
        super().__init__()
        self.split = split

    def forward(self, x):
        return torch.cat(self.split(x), dim=1)


class SplitBrainEncoder(LabSplitEncoder):
    """RGB -> (L, ab) -> [l_encoder(L), ab_encoder(ab)], (N, D_L + D_ab), with ``blocks`` like a backbone's.

    ``blocks[i]`` runs stage i of both halves on their side-by-side maps (``blocks[0]`` also
    converts the RGB input), so that running the blocks in order and pooling gives the same
    features as ``forward``, and a layer-wise probe sees both halves at every depth.
    """

    def __init__(self, l_encoder: nn.Module, ab_encoder: nn.Module):
        super().__init__(l_encoder, ab_encoder)
        self.l_channels = []           # the L half's channel count after each stage
        x = torch.zeros(2, 1, 16, 16)
        with torch.no_grad(), eval_mode(l_encoder):
            for block in l_encoder.blocks:
                x = block(x)
                self.l_channels.append(x.shape[1])

    @property
    def blocks(self) -> nn.ModuleList:
        splits = [1] + self.l_channels[:-1]
        pairs = [PairedBlock(l_block, ab_block, split) for l_block, ab_block, split
                 in zip(self.l_encoder.blocks, self.ab_encoder.blocks, splits)]
        return nn.ModuleList([nn.Sequential(LabChannels(self.split), pairs[0]), *pairs[1:]])


def halves_like(backbone: nn.Module) -> tuple[nn.Module, nn.Module]:
    """An L encoder (1 channel) and an ab encoder (2 channels) of the backbone's kind."""
    kind = next((name for name in SPLITTABLE if type(backbone) is BACKBONES[name]), None)
    if kind is None:
        raise ValueError(f"the split-brain halves are built like the backbone, which must be one of "
                         f"{', '.join(SPLITTABLE)}; got a {type(backbone).__name__}")
    if image_channels(backbone) != 3:
        raise ValueError(f"split-brain splits colour images into L and ab; the backbone takes "
                         f"{image_channels(backbone)} channel(s), the images must have 3")
    if kind == "convnet":
        widths = tuple(max(1, block[0].out_channels // 2) for block in backbone.blocks)
        return ConvNet(channels=1, widths=widths), ConvNet(channels=2, widths=widths)
    return build_backbone(kind, channels=1), build_backbone(kind, channels=2)


def quantize_lightness(light: torch.Tensor, l_bins: int) -> torch.Tensor:
    """(N, 1, H, W) L in [0, 100] -> (N, H, W) long: its bin among ``l_bins`` equal bins."""
    return (light[:, 0] * (l_bins / 100.0)).long().clamp(0, l_bins - 1)


def split_brain_batch(images: torch.Tensor, downsample: int = 4, l_bins: int = 20):
    """uint8 RGB (N, 3, H, W) -> (inputs, (ab_targets, l_targets)).

    inputs: the images normalised as ``to_float`` (the encoder splits them itself);
    ab_targets: (N, H/d, W/d) the ab bin of each d x d block's mean ab (for the L half);
    l_targets: (N, H/d, W/d) the L bin of each block's mean L (for the ab half). No randomness.
    """
    lab = lab_of(images)
    downsample, l_bins = check_downsample(downsample, images.shape[-1]), check_dim(l_bins, "l_bins")
    light = F.avg_pool2d(lab[:, :1], downsample)
    return to_float(images), (colour_targets(lab, downsample), quantize_lightness(light, l_bins))


class SplitBrain(PretextTask):
    name = "split_brain"
    paper = ("Zhang, Isola, Efros. Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel Prediction. "
             "CVPR 2017.")
    summary = "two half networks: L predicts ab bins, ab predicts L bins; features side by side"
    defaults = {**PretextTask.defaults, "batch_size": 64}   # as the reconstruction tasks (autoencoder.py)

    def __init__(self, backbone, image_size: int = 32, decoder_width: int = 64, downsample: int = 4,
                 l_bins: int = 20):
        """``backbone`` gives the kind of the two halves (see :func:`halves_like`); it is replaced by
        a :class:`SplitBrainEncoder` of fresh halves."""
        super().__init__(SplitBrainEncoder(*halves_like(backbone)))
        self.image_size = check_dim(image_size, "image_size")
        self.decoder_width = check_dim(decoder_width, "decoder_width")
        self.downsample, self.l_bins = check_downsample(downsample, image_size), check_dim(l_bins, "l_bins")
        out_size = image_size // downsample
        self.ab_decoder = ConvDecoder(self.backbone.l_encoder.out_dim, len(ab_bins()), out_size, decoder_width)
        self.l_decoder = ConvDecoder(self.backbone.ab_encoder.out_dim, l_bins, out_size, decoder_width)

    def make_pseudo_labels(self, images, generator):
        return split_brain_batch(images, self.downsample, self.l_bins)

    def predict(self, inputs):
        light, ab = self.backbone.split(inputs)
        return self.ab_decoder(self.backbone.l_encoder(light)), self.l_decoder(self.backbone.ab_encoder(ab))

    def loss(self, predictions, targets):
        (ab_logits, l_logits), (ab_targets, l_targets) = predictions, targets
        return F.cross_entropy(ab_logits.float(), ab_targets) + F.cross_entropy(l_logits.float(), l_targets)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """uint8 RGB -> (colours from L, lightness from ab, original), float images in [0, 1].

        Each half's prediction, shown with the true other half: the L half's ab (annealed mean,
        as colorization decodes) on the true L; the ab half's L (its bins' expected value) under the
        true ab. No randomness: ``generator`` is taken, unused, as the other generation tasks take one.
        """
        lab = lab_of(images)                                                   # (N, 3, H, W)
        with eval_mode(self):
            ab_logits, l_logits = self.predict(to_float(images))
        centres = (torch.arange(self.l_bins, device=lab.device) + 0.5) * (100.0 / self.l_bins)
        light = torch.einsum("nkhw,k->nhw", l_logits.float().softmax(dim=1), centres)[:, None]   # (N, 1, h, w)
        light = F.interpolate(light, size=lab.shape[-2:], mode="bilinear", align_corners=False)
        return (decode_colours(ab_logits, lab[:, :1]), lab_to_rgb(torch.cat([light, lab[:, 1:]], dim=1)),
                to_unit(images))

    def hparams(self):
        return {"image_size": self.image_size, "decoder_width": self.decoder_width, "downsample": self.downsample,
                "l_bins": self.l_bins}
