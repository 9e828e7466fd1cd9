"""What every pretext task of units 1 and 2 shares: make a pseudo label, predict it.

A pretext task turns an unlabeled batch into ``(inputs, targets)`` on the batch's device
(rotated images and their rotation, a masked image and its missing region, ...), runs
the backbone and a task head on the inputs, and scores the prediction with the task's
loss. The task itself is the plain function behind ``make_pseudo_labels``; the method
only wires it to the backbone, so that the one trainer and the CLI run every task.

    inputs, targets = make_pseudo_labels(images, generator)
    loss = loss(head(backbone(inputs)), targets)          # cross-entropy by default
"""
import torch
import torch.nn.functional as F

from .base import Method


class PretextTask(Method):
    """A method whose objective is to predict a pseudo label made from the images themselves.

    Subclasses set ``self.head`` and implement ``make_pseudo_labels``; a task whose head
    needs more than the pooled features (a decoder, a per-tile network) overrides
    ``predict``, and one whose target is not a class index overrides ``loss``.
    """
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 128, "epochs": 20}

    def make_pseudo_labels(self, images: torch.Tensor, generator: torch.Generator):
        """(N, C, H, W) uint8 images -> (inputs, targets), both on the images' device."""
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(inputs))

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(predictions, targets)

    def training_step(self, images, generator, **extras):
        inputs, targets = self.make_pseudo_labels(images, generator)
        return self.loss(self.predict(inputs), targets)
