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

from ..utils import check_dim, check_generator, check_tensor, eval_mode
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

    @torch.no_grad()
    def pretext_accuracy(self, images: torch.Tensor, generator: torch.Generator, batch_size: int = 256) -> float:
        """How well the network solves its own task on ``images`` (uint8, held out from training):
        the fraction of pseudo labels it predicts, in eval mode. For tasks whose pseudo label is a
        class (rotation, relative position, jigsaw, order verification, ...); chance is one over the
        number of classes. Tasks whose pseudo labels need the images' indices (exemplar, DeepCluster)
        are scored by their own statistics instead."""
        check_tensor(images, "images")          # images, or clips for the video tasks: the task checks the rest
        check_generator(generator)
        check_dim(batch_size, "batch_size")
        hits = []
        with eval_mode(self):
            for start in range(0, len(images), batch_size):
                inputs, targets = self.make_pseudo_labels(images[start:start + batch_size], generator)
                logits = self.predict(inputs)
                if targets.dim() != 1 or targets.dtype != torch.long or logits.shape[:1] != targets.shape:
                    raise TypeError(f"pretext_accuracy needs a task that predicts one class index per input; "
                                    f"{type(self).__name__} makes {targets.dtype} targets of shape "
                                    f"{tuple(targets.shape)} for predictions of shape {tuple(logits.shape)}")
                hits.append(logits.argmax(dim=1) == targets)
        return torch.cat(hits).float().mean().item()
