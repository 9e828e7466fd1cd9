"""SimSiam: two views, one encoder, a predictor, and a stop-gradient; no negatives, no momentum.

Chen and He. "Exploring Simple Siamese Representation Learning." CVPR 2021.

    z = g(f(x)),  p = h(z)                 projector g ends in BN, predictor h is a bottleneck MLP
    loss = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,   D(p, z) = -cos(p, z)      (eq. 1-3)

The stop-gradient sg is the whole trick: without it the outputs collapse within a few
epochs (their Fig. 2), and with it they do not, although nothing in the loss forbids a
constant. ``stop_gradient=False`` is that collapsing variant, for the lecture. (The
projector's last batch norm keeps z from becoming one constant vector, so here z falls
onto one direction instead: two opposite points on the sphere, an effective rank of 1,
which ``sslcourse.analysis.collapse_report`` flags.)
"""
from ..losses import negative_cosine
from ..models import MLPHead
from ..transforms import recipe
from ..utils import check_dim
from .base import Method


class SimSiam(Method):
    name = "simsiam"
    paper = "Chen, He. Exploring Simple Siamese Representation Learning. CVPR 2021."
    summary = "two views, a predictor and a stop-gradient on the target branch; no negatives, no momentum"
    # The paper: SGD, lr 0.05 x batch / 256, weight decay 1e-4 (5e-4 on CIFAR-10), 800 epochs on
    # CIFAR-10 with a 2048-wide projector and a 2048 -> 512 -> 2048 predictor. A CPU run has a few
    # hundred steps at batch 64: SGD with lr 0.05 (4x the paper's for this batch), weight decay
    # 5e-4, and narrower heads (512, bottleneck 128). Measured on 2000 world images at 16 px,
    # 20 epochs: with AdamW (lr 3e-3) and SimCLR's stronger colour jitter, the projections fell
    # onto one direction (effective rank 1.0-1.4) and kNN accuracy stayed within 0.03 of random
    # init; with these defaults the effective rank was 2.7 and kNN accuracy rose by 0.08.
    defaults = {**Method.defaults, "optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4, "batch_size": 64,
                "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, proj_hidden_dim: int = 512, proj_dim: int = 512,
                 pred_hidden_dim: int = 128, proj_layers: int = 2, stop_gradient: bool = True,
                 gray_p: float = 0.5, crop_scale=(0.2, 1.0), loss_fn=negative_cosine):
        """``stop_gradient=False`` lets the gradient through the target branch: the collapsing variant.

        The projector has ``proj_layers`` linear layers, each followed by BN (the last without
        ReLU and without affine parameters, as in the paper's code). The paper uses 3 on
        ImageNet and 2 on CIFAR-10 (its App. D); 2 here, for small images and a small backbone.
        The predictor is the paper's bottleneck (hidden = proj_dim / 4), without BN on its output.
        MoCo v2's augmentations, as in the paper's code, with ``gray_p`` 0.5 (paper 0.2): the
        object's colour is otherwise a shortcut on the world. ``crop_scale`` is the paper's (0.2, 1).
        ``loss_fn(p, z)`` defaults to the negative cosine similarity D.
        """
        super().__init__(backbone)
        if not isinstance(stop_gradient, bool):
            raise TypeError(f"stop_gradient must be True or False, got {stop_gradient!r}")
        self.image_size, self.stop_gradient = image_size, stop_gradient
        self.proj_hidden_dim = check_dim(proj_hidden_dim, "proj_hidden_dim")
        self.proj_dim = check_dim(proj_dim, "proj_dim")
        self.pred_hidden_dim = check_dim(pred_hidden_dim, "pred_hidden_dim")
        self.proj_layers = check_dim(proj_layers, "proj_layers")
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim, num_layers=proj_layers,
                                 last_bn=True)
        self.predictor = MLPHead(proj_dim, pred_hidden_dim, proj_dim, num_layers=2)
        self.augment = recipe("moco_v2", image_size, gray_p=gray_p, scale=crop_scale)[0]
        self.loss_fn = loss_fn

    def embed(self, x):
        """The projection z (the predictor's input and the other view's target)."""
        return self.projector(self.backbone(x))

    def training_step(self, images, generator, **extras):
        # Each view in its own pass, as in the paper's code: batch norm sees one view at a time.
        z1, z2 = self.embed(self.augment(images, generator)), self.embed(self.augment(images, generator))
        p1, p2 = self.predictor(z1), self.predictor(z2)                                      # (N, proj_dim) each
        if self.stop_gradient:   # each view's projection is a constant target for the other's prediction
            z1, z2 = z1.detach(), z2.detach()
        return self.loss_fn(p1, z2) / 2 + self.loss_fn(p2, z1) / 2

    def hparams(self):
        return {"image_size": self.image_size, "proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim,
                "pred_hidden_dim": self.pred_hidden_dim, "proj_layers": self.proj_layers,
                "stop_gradient": self.stop_gradient, "gray_p": self.augment.gray_p, "crop_scale": self.augment.scale}
