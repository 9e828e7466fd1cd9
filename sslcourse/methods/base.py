"""The one interface every method implements; the one trainer runs them all.

A method owns its backbone, its heads, its augmentation recipe and its objective.
The trainer only calls ``training_step`` (and ``on_step_end`` after each optimiser
step, where momentum encoders and queues update), so adding a method is one file
plus a line in the registry of ``sslcourse/methods/__init__.py``.

A method that needs more than the images names it in ``batch_extras``; the trainer then
passes it to ``training_step`` by keyword: ``index`` (each image's position in the
training set, for a memory bank) or ``labels`` (for supervised contrastive learning).
"""
import torch
from torch import nn

from ..utils import check_tensor


def check_index(index, n_images: int, n_train: int) -> torch.Tensor:
    """The trainer's ``index`` extra, checked: (n_images,) integer positions in a training set of n_train."""
    check_tensor(index, "index", ndim=1)
    expected = f"index must hold the {n_images} images' positions in the training set, integers in [0, {n_train})"
    if len(index) != n_images or index.is_floating_point():
        raise ValueError(f"{expected}; got {index.dtype} of shape {tuple(index.shape)}")
    if len(index) and not 0 <= int(index.min()) <= int(index.max()) < n_train:
        raise ValueError(f"{expected}; got values in [{int(index.min())}, {int(index.max())}]")
    return index


class Method(nn.Module):
    name: str = ""
    paper: str = ""          # "Authors. Title. Venue year."
    summary: str = ""        # one line for `python -m sslcourse methods`
    # Training defaults, adapted from the paper to small images and short CPU runs.
    defaults: dict = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 256,
                      "epochs": 30, "warmup_epochs": 2}
    batch_extras: tuple = ()  # any of "index", "labels"

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    @classmethod
    def for_data(cls, backbone: nn.Module, data, **hparams) -> "Method":
        """Build the method for a data set (its image size; a memory bank also needs its length)."""
        return cls(backbone, **{"image_size": data.image_size, **hparams})

    def training_step(self, images: torch.Tensor, generator: torch.Generator, **extras) -> torch.Tensor:
        """images: (N, C, H, W) uint8 batch on the training device -> scalar loss.

        Draw every random choice (augmentations) from ``generator`` so that a seed
        reproduces the run. ``extras`` holds what ``batch_extras`` asks for, as (N,) tensors.
        """
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised float images -> (N, D): the output the loss sees.

        The trainer's collapse diagnostics (``train(..., diagnostics_every=k)``) measure this.
        The default is the backbone's features; a method with a projection head returns its
        output (for BYOL and SimSiam the projection z, not the prediction p).
        """
        return self.backbone(x)

    def on_step_end(self, progress: float) -> None:
        """Called after each optimiser step; ``progress`` runs from 0 to 1 over training."""

    def hparams(self) -> dict:
        """The constructor arguments that define the method (saved in checkpoints)."""
        return {}
