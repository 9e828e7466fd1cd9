"""VICReg: variance, invariance and covariance terms on two views' embeddings.

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning." ICLR 2022.

    z = h(f(x)),  z' = h(f(x'))               (N, D), expander h: 3 linear layers
    loss = lambda s(z, z') + mu [v(z) + v(z')] + nu [c(z) + c(z')]       (eq. 6), 25 / 25 / 1

Each branch is regularised on its own: v keeps every dimension's std above 1 across the
batch (no collapse to a point) and c decorrelates the dimensions (no collapse to a few
directions); s pulls the two views together. No negatives, no weight sharing needed,
no batch-wise normalisation of the embeddings, no predictor, no momentum.
"""
from ..losses import vicreg
from ..utils import check_weight
from .barlow_twins import BarlowTwins


class VICReg(BarlowTwins):
    """Barlow Twins' method (expander, BYOL's augmentations, one pass per view) with VICReg's loss."""
    name = "vicreg"
    paper = ("Bardes, Ponce, LeCun. VICReg: Variance-Invariance-Covariance Regularization for "
             "Self-Supervised Learning. ICLR 2022.")
    summary = "variance, invariance and covariance terms on two views' embeddings; no negatives"
    # The paper: LARS, lr 0.2 x batch / 256 at batch 2048, 1000 epochs, expander 8192-8192-8192.
    # A CPU run has a few hundred steps at batch 64: AdamW and an expander of 512-512-512.

    def __init__(self, backbone, image_size: int = 32, proj_hidden_dim: int = 512, proj_dim: int = 512,
                 proj_layers: int = 3, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 gray_p: float = 0.5, crop_scale=(0.2, 1.0), loss_fn=vicreg):
        """An expander of ``proj_layers`` linear layers (BN and ReLU between them), as the paper's,
        narrower (512, paper 8192) for a CPU budget, as for Barlow Twins. The weights are the paper's
        lambda, mu, nu. BYOL's asymmetric augmentations, as in the paper, with ``gray_p`` 0.5
        (paper 0.2) and ``crop_scale`` (0.2, 1) (paper (0.08, 1)), as for Barlow Twins.
        ``loss_fn(z1, z2, sim_weight, var_weight, cov_weight)`` defaults to the paper's loss.
        """
        super().__init__(backbone, image_size=image_size, proj_hidden_dim=proj_hidden_dim, proj_dim=proj_dim,
                         proj_layers=proj_layers, gray_p=gray_p, crop_scale=crop_scale, loss_fn=loss_fn)
        self.loss_weights = {name: check_weight(w, name) for name, w in
                             (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight))}
