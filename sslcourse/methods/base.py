"""The one interface every method implements; the one trainer runs them all.

A method owns its backbone, its heads, its augmentation recipe and its objective.
The trainer only calls ``training_step`` (and ``on_step_end`` after each optimiser
step, where momentum encoders and queues update), so adding a method is one file
plus a line in the registry of ``sslcourse/methods/__init__.py``.
"""
import torch
from torch import nn


class Method(nn.Module):
    name: str = ""
    paper: str = ""          # "Authors. Title. Venue year."
    summary: str = ""        # one line for `python -m sslcourse methods`
    # Training defaults, adapted from the paper to small images and short CPU runs.
    defaults: dict = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 256,
                      "epochs": 30, "warmup_epochs": 2}

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def training_step(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """images: (N, C, H, W) uint8 batch on the training device -> scalar loss.

        Draw every random choice (augmentations) from ``generator`` so that a seed
        reproduces the run.
        """
        raise NotImplementedError

    def on_step_end(self, progress: float) -> None:
        """Called after each optimiser step; ``progress`` runs from 0 to 1 over training."""

    def hparams(self) -> dict:
        """The constructor arguments that define the method (saved in checkpoints)."""
        return {}
