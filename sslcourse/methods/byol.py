"""BYOL: predict a slowly moving target network's projection of another view, with no negatives.

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Avila Pires, Guo, Gheshlaghi
Azar, Piot, Kavukcuoglu, Munos, Valko. "Bootstrap Your Own Latent: A New Approach to
Self-Supervised Learning." NeurIPS 2020.

    online:  z = g(f(x)),  p = q(z)        backbone f, projector g, predictor q
    target:  z' = g'(f'(x'))               an exponential moving average of f and g, no gradient
    loss = byol(p1, sg(z2')) + byol(p2, sg(z1'))     byol(p, z) = 2 - 2 cos(p, z)   (eq. 2)
    xi <- tau xi + (1 - tau) theta,  tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2   (Sec. 3.2)

Nothing pushes different images apart, yet the outputs do not collapse: the predictor
and the slow target are what keep them from it (remove either and they collapse, their
Sec. 5 and Table 5). The two views are asymmetric (App. B, Table 6): blur on all of the first
views and 10% of the second ones, solarisation on 20% of the second ones only.
"""
import torch

from ..losses import byol
from ..models import MLPHead, PredictionHead
from ..transforms import recipe
from ..utils import check_dim, check_momentum
from .base import Method
from .momentum import cosine_momentum, momentum_copy, momentum_update


class BYOL(Method):
    name = "byol"
    paper = ("Grill et al. Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning. "
             "NeurIPS 2020.")
    summary = "online network predicts an EMA target network's projection of another view; no negatives"
    # The paper: LARS, lr 0.2 x batch / 256 at batch 4096, weight decay 1.5e-6, 1000 epochs, projector
    # and predictor 4096 -> 256. A CPU run has a few hundred steps at batch 64: SGD with momentum,
    # lr 0.1, weight decay 5e-4, and heads of 512 -> 128. With AdamW (lr 3e-3), as SimCLR here,
    # 20 epochs on the world stayed within 0.02 of random init in kNN accuracy (SGD: +0.04, and
    # +0.12 in a linear probe); see tests/test_noncontrastive_methods.py.
    defaults = {**Method.defaults, "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "batch_size": 64,
                "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, tau_base: float = 0.99, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, pred_hidden_dim: int = 512, gray_p: float = 0.5,
                 crop_scale=(0.2, 1.0), loss_fn=byol):
        """``tau_base`` is the target's momentum at the start; it rises to 1 along a cosine.

        Defaults that differ from the paper's, for a few hundred steps on the world:
        ``tau_base`` 0.99 (paper 0.996, over about 300k steps): the target must move within
        a short run, as MoCo's momentum here (20 epochs on the world at 16 px: kNN +0.04 over
        random init with 0.99, +0.02 with 0.996; a linear probe gained 0.12 and 0.14).
        ``gray_p`` 0.5 (paper 0.2) keeps the object's colour from being a shortcut, as for
        SimCLR; ``crop_scale`` (0.2, 1) (paper (0.08, 1)) keeps some of the object in crops of
        small images. ``loss_fn(p, z)`` defaults to BYOL's.
        """
        super().__init__(backbone)
        self.image_size = image_size
        self.tau_base = check_momentum(tau_base, "tau_base")
        self.proj_hidden_dim = check_dim(proj_hidden_dim, "proj_hidden_dim")
        self.proj_dim = check_dim(proj_dim, "proj_dim")
        self.pred_hidden_dim = check_dim(pred_hidden_dim, "pred_hidden_dim")
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim)
        self.predictor = PredictionHead(proj_dim, pred_hidden_dim, proj_dim)
        self.target_backbone, self.target_projector = momentum_copy(backbone), momentum_copy(self.projector)
        self.momentum = self.tau_base    # the target's current momentum, for logging
        self.augment1, self.augment2 = recipe("byol", image_size, gray_p=gray_p, scale=crop_scale)
        self.loss_fn = loss_fn

    def embed(self, x):
        """The online projection z (the predictor's input), whose collapse the diagnostics watch."""
        return self.projector(self.backbone(x))

    def training_step(self, images, generator, **extras):
        x1, x2 = self.augment1(images, generator), self.augment2(images, generator)   # (N, C, H, W) each
        # Each view in its own pass, as in the paper's code: batch norm sees one view at a time.
        p1, p2 = self.predictor(self.embed(x1)), self.predictor(self.embed(x2))     # (N, proj_dim) each
        with torch.no_grad():   # the target gives regression targets, not gradients
            z1_target = self.target_projector(self.target_backbone(x1))
            z2_target = self.target_projector(self.target_backbone(x2))
        return self.loss_fn(p1, z2_target) + self.loss_fn(p2, z1_target)

    def on_step_end(self, progress):
        self.momentum = cosine_momentum(self.tau_base, progress)
        momentum_update(self.backbone, self.target_backbone, self.momentum)
        momentum_update(self.projector, self.target_projector, self.momentum)

    def hparams(self):
        return {"image_size": self.image_size, "tau_base": self.tau_base, "proj_hidden_dim": self.proj_hidden_dim,
                "proj_dim": self.proj_dim, "pred_hidden_dim": self.pred_hidden_dim, "gray_p": self.augment1.gray_p,
                "crop_scale": self.augment1.scale}
