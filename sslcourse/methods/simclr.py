"""SimCLR: two augmented views, one encoder, a projection head and NT-Xent.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of
Visual Representations." ICML 2020.

    h = f(x)     backbone features, kept for downstream tasks
    z = g(h)     2-layer MLP projection, thrown away after training
    loss = NT-Xent(z1, z2, tau)   with 2(N-1) in-batch negatives per anchor
"""
import torch

from ..losses import nt_xent
from ..models import ProjectionHead
from ..transforms import recipe
from .base import Method


class SimCLR(Method):
    name = "simclr"
    paper = ("Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning "
             "of Visual Representations. ICML 2020.")
    summary = "two augmented views, in-batch negatives, NT-Xent on a projection head"
    # The paper trains for hundreds of epochs with LARS at batch 4096. A CPU run has a few hundred
    # steps: AdamW at batch 64 makes the most of them (measured on the world, see the README).
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.2, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, loss_fn=nt_xent, augment=None, gray_p: float = 0.5):
        """``loss_fn(z1, z2, temperature)`` defaults to NT-Xent; a lab passes the student's own.
        ``augment`` defaults to SimCLR's recipe for ``image_size`` with grayscale probability ``gray_p``.

        Two defaults differ from the paper's (tau = 0.5 on CIFAR-10, grayscale p = 0.2), for short
        runs on the world: tau = 0.2 sharpens the gradient towards hard negatives, and grayscale
        on half of the views keeps the object's colour from being a shortcut to its identity.
        With the paper's values, 12 epochs on 5,000 world images stay near random init.
        """
        super().__init__(backbone)
        self.temperature = temperature
        self.proj_hidden_dim, self.proj_dim, self.image_size = proj_hidden_dim, proj_dim, image_size
        self.projector = ProjectionHead(backbone.out_dim, proj_hidden_dim, proj_dim)
        self.augment = augment if augment is not None else recipe("simclr", image_size, gray_p=gray_p)[0]
        self.loss_fn = loss_fn

    def training_step(self, images, generator, **extras):
        view1 = self.augment(images, generator)              # (N, C, H, W) float
        view2 = self.augment(images, generator)
        z = self.projector(self.backbone(torch.cat([view1, view2])))  # one pass: BN sees both views
        z1, z2 = z.chunk(2)                                  # (N, proj_dim) each
        return self.loss(z1, z2, **extras)

    def loss(self, z1, z2, **extras):
        """The objective on the two views' projections: all that SimCLR's variants change."""
        return self.loss_fn(z1, z2, self.temperature)

    def hparams(self):
        return {"image_size": self.image_size, "temperature": self.temperature, "gray_p": self.augment.gray_p,
                "proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim}
