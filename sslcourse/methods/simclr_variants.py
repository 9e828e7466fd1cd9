"""SimCLR with another objective: the same two views, encoder and head; only ``loss`` changes.

    dcl           decoupled contrastive loss: the positive leaves the denominator
    debiased      debiased contrastive loss: subtracts the expected same-class negatives
    hcl           hard negatives: the debiased loss with close negatives weighted up
    supcon        supervised contrastive: every view of the same class is a positive
    large_margin  NT-Xent + lambda * distance polarisation of the projections
    low_dim       NT-Xent on W z + lambda * a low-rank penalty on the learned W

The papers are in ``sslcourse/losses``. Every variant keeps SimCLR's training defaults and
its augmentations (grayscale on half the views, see SimCLR's docstring); where a
temperature differs from the paper's, the class says why.
"""
import torch
from torch import nn

from ..losses import dcl, debiased_nt_xent, distance_polarization, hcl, low_rank_penalty, nt_xent, supcon
from ..utils import check_positive
from .simclr import SimCLR


class DCL(SimCLR):
    name = "dcl"
    paper = "Yeh, Hong, Hsu, Liu, Chen, LeCun. Decoupled Contrastive Learning. ECCV 2022."
    summary = "SimCLR with the positive removed from NT-Xent's denominator (optionally DCLW weights)"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.2, sigma: float | None = None,
                 **simclr_kwargs):
        """``sigma`` = 0.5 gives DCLW. Temperature 0.2, SimCLR's on the world (paper: 0.1): after 150 steps
        on 1,000 world images, kNN accuracy rose from 0.132 at random init to 0.184 with 0.2, to 0.158 with 0.1."""
        super().__init__(backbone, image_size, temperature, **simclr_kwargs)
        self.sigma = sigma

    def loss(self, z1, z2):
        return dcl(z1, z2, self.temperature, self.sigma)

    def hparams(self):
        return {**super().hparams(), "sigma": self.sigma}


class Debiased(SimCLR):
    name = "debiased"
    paper = "Chuang, Robinson, Lin, Torralba, Jegelka. Debiased Contrastive Learning. NeurIPS 2020."
    summary = "SimCLR whose negative term discounts the expected same-class negatives (class prior tau+)"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.5, tau_plus: float = 0.1,
                 **simclr_kwargs):
        """The paper's CIFAR-10 values, t = 0.5 and tau+ = 0.1 (the world has 10 balanced classes)."""
        super().__init__(backbone, image_size, temperature, **simclr_kwargs)
        self.tau_plus = tau_plus

    def loss(self, z1, z2):
        return debiased_nt_xent(z1, z2, self.temperature, self.tau_plus)

    def hparams(self):
        return {**super().hparams(), "tau_plus": self.tau_plus}


class HCL(Debiased):
    name = "hcl"
    paper = ("Robinson, Chuang, Sra, Jegelka. Contrastive Learning with Hard Negative Samples. "
             "ICLR 2021.")
    summary = "debiased SimCLR with negatives weighted by exp(beta * similarity): hard negatives"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.5, tau_plus: float = 0.1,
                 beta: float = 1.0, **simclr_kwargs):
        """The paper's CIFAR-10 values: t = 0.5, tau+ = 0.1, beta = 1."""
        super().__init__(backbone, image_size, temperature, tau_plus, **simclr_kwargs)
        self.beta = beta

    def loss(self, z1, z2):
        return hcl(z1, z2, self.temperature, self.beta, self.tau_plus)

    def hparams(self):
        return {**super().hparams(), "beta": self.beta}


class SupCon(SimCLR):
    name = "supcon"
    paper = ("Khosla, Teterwak, Sarna, Wang, Isola, Maschinot, Liu, Krishnan. Supervised Contrastive "
             "Learning. NeurIPS 2020.")
    summary = "supervised contrastive: two views per image, every same-class view is a positive"
    batch_extras = ("labels",)

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.5, **simclr_kwargs):
        """Uses the training labels. Temperature 0.5 (paper: 0.1) for short runs on the world, where the
        classes are not separable at first: then the loss falls fastest by pulling every projection
        together, to its value at collapse, log(2N - 1). With 0.1, 150 steps on 1,000 world images left
        the backbone at random-init kNN accuracy (0.128 vs 0.132); with 0.5 it reached 0.198, although
        the projections also end close together: a few hundred steps are too few to separate the classes.
        """
        super().__init__(backbone, image_size, temperature, **simclr_kwargs)

    def loss(self, z1, z2, labels):
        return supcon(torch.stack([z1, z2], dim=1), labels, self.temperature)   # (N, 2, D)


class LargeMargin(SimCLR):
    name = "large_margin"
    paper = ("Chen, Niu, Gong, Li, Yang, Sugiyama. Large-Margin Contrastive Learning with Distance "
             "Polarization Regularizer. ICML 2021.")
    summary = "SimCLR + a penalty on projection distances inside an ambiguous band (distance polarisation)"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.2, weight: float = 10.0,
                 delta_plus: float = 0.2, delta_minus: float = 0.4, **simclr_kwargs):
        """SimCLR's world temperature; ``weight`` is lambda, the band is (delta_plus, delta_minus).

        The penalty is small (at most (delta- - delta+)^2 / 4 = 0.01 a pair): with lambda = 1 it barely
        moves the distances; lambda = 10 cut the share of pairs inside the band by about a quarter in
        150 steps on the world; lambda = 100 held most distances below delta+ and slowed learning.
        """
        super().__init__(backbone, image_size, temperature, **simclr_kwargs)
        self.weight = check_positive(weight, "weight")
        self.delta_plus, self.delta_minus = delta_plus, delta_minus

    def loss(self, z1, z2):
        polarization = distance_polarization(torch.cat([z1, z2]), self.delta_plus, self.delta_minus)  # all 2N views
        return nt_xent(z1, z2, self.temperature) + self.weight * polarization

    def hparams(self):
        return {**super().hparams(), "weight": self.weight, "delta_plus": self.delta_plus,
                "delta_minus": self.delta_minus}


class LowDim(SimCLR):
    name = "low_dim"
    paper = ("Chen, Gong, Li, Yang, Niu, Sugiyama. Learning Contrastive Embedding in Low-Dimensional "
             "Space. NeurIPS 2022.")
    summary = "SimCLR on W z, a learned square projection kept low-rank by a nuclear (or l2,1) penalty"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.2, weight: float = 0.01,
                 penalty: str = "nuclear", proj_dim: int = 128, **simclr_kwargs):
        """SimCLR's world temperature; ``weight`` is lambda; ``penalty`` is "nuclear" or "l21".

        W starts as the identity, so training starts as SimCLR. NT-Xent does not change when W is
        scaled, so the penalty alone would shrink W as a whole; as W shrinks, the loss's gradient
        grows (it scales as 1 / ||W||), and the two balance where W keeps the directions the loss needs.
        A short run shows little of it: AdamW moves each entry of W by about the learning rate a step
        whatever lambda is, so after 150 steps on the world W's singular values ranged from 0.26 to 1.5
        but its spectrum stayed full (entropy effective rank 126 of 128), alike for lambda 0.01, 0.1, 1.
        """
        super().__init__(backbone, image_size, temperature, proj_dim=proj_dim, **simclr_kwargs)
        self.weight, self.penalty = check_positive(weight, "weight"), penalty
        low_rank_penalty(torch.eye(2), penalty)   # rejects an unknown penalty now, not at the first step
        self.reducer = nn.Linear(proj_dim, proj_dim, bias=False)
        with torch.no_grad():
            self.reducer.weight.copy_(torch.eye(proj_dim))

    def loss(self, z1, z2):
        contrastive = nt_xent(self.reducer(z1), self.reducer(z2), self.temperature)
        return contrastive + self.weight * low_rank_penalty(self.reducer.weight, self.penalty)

    def hparams(self):
        return {**super().hparams(), "weight": self.weight, "penalty": self.penalty}
