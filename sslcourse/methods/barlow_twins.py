"""Barlow Twins: make the cross-correlation matrix of two views' embeddings the identity.

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction." ICML 2021.

    z^A = g(f(x^A)),  z^B = g(f(x^B))        (N, D), projector g: 3 linear layers
    C = standardised(z^A)^T standardised(z^B) / N                           (D, D)
    loss = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2                   (eq. 1-2)

No negatives, no predictor, no momentum encoder, no stop-gradient: the off-diagonal
term decorrelates the D dimensions, so the embedding cannot collapse to a point or a few
directions. The paper finds that accuracy keeps growing with D up to 8192 or more (Fig. 4).
"""
from ..losses import barlow_twins
from ..models import MLPHead
from ..transforms import recipe
from ..utils import check_dim, check_weight
from .base import Method


class BarlowTwins(Method):
    name = "barlow_twins"
    paper = ("Zbontar, Jing, Misra, LeCun, Deny. Barlow Twins: Self-Supervised Learning via Redundancy "
             "Reduction. ICML 2021.")
    summary = "cross-correlation of two views' embeddings pushed to the identity; no negatives"
    # The paper: LARS, lr 0.2 at batch 2048, 1000 epochs, projector 8192-8192-8192.
    # A CPU run has a few hundred steps at batch 64: AdamW, and a projector of 512-512-512.
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, proj_hidden_dim: int = 512, proj_dim: int = 512,
                 proj_layers: int = 3, lambd: float = 5e-3, gray_p: float = 0.5, crop_scale=(0.2, 1.0),
                 loss_fn=barlow_twins):
        """A projector of ``proj_layers`` linear layers (BN and ReLU between them), as the paper's.

        Its width differs from the paper's 8192: three 8192-wide layers have about 135 million
        weights and a (8192, 8192) cross-correlation per step, far beyond a CPU budget; at 512
        the projector costs little next to the backbone. ``lambd`` stays the paper's 5e-3 (tuned
        for D = 8192; the off-diagonal sum has D(D - 1) terms, so at D = 512 it weighs less).
        BYOL's asymmetric augmentations, as in the paper, with ``gray_p`` 0.5 (paper 0.2), which
        keeps the object's colour from being a shortcut on the world, and ``crop_scale`` (0.2, 1)
        (paper (0.08, 1)), which keeps some of the object in crops of small images.
        ``loss_fn(z1, z2, lambd)`` defaults to the paper's loss.
        """
        super().__init__(backbone)
        self.image_size = image_size
        self.loss_weights = {"lambd": check_weight(lambd, "lambd")}    # loss_fn's arguments after z1, z2
        self.proj_hidden_dim = check_dim(proj_hidden_dim, "proj_hidden_dim")
        self.proj_dim = check_dim(proj_dim, "proj_dim")
        self.proj_layers = check_dim(proj_layers, "proj_layers")
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim, num_layers=proj_layers)
        self.augment1, self.augment2 = recipe("byol", image_size, gray_p=gray_p, scale=crop_scale)
        self.loss_fn = loss_fn

    def embed(self, x):
        return self.projector(self.backbone(x))

    def training_step(self, images, generator, **extras):
        # Each view in its own pass, as in the paper's code: batch norm standardises each view on its own.
        z1 = self.embed(self.augment1(images, generator))           # (N, proj_dim)
        z2 = self.embed(self.augment2(images, generator))
        return self.loss_fn(z1, z2, *self.loss_weights.values())

    def hparams(self):
        return {"image_size": self.image_size, "proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim,
                "proj_layers": self.proj_layers, "gray_p": self.augment1.gray_p, "crop_scale": self.augment1.scale,
                **self.loss_weights}
