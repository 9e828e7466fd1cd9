"""SimCLR v2: a deeper projection head, fine-tuned from its middle layer.

Chen, Kornblith, Swersky, Norouzi, Hinton. "Big Self-Supervised Models are Strong
Semi-Supervised Learners." NeurIPS 2020, Sec. 2.

    z = g(h) with g a 3-layer MLP (SimCLR: 2 layers), the same NT-Xent loss
    fine-tune f plus the first layer of g, not f alone: with 1% of the labels this gains
    about 1-2 points of top-1 on ImageNet over fine-tuning from h (their Fig. 5).

The paper also adds MoCo's memory bank (about +1%) and distils the fine-tuned network into
a student on the unlabeled data; the course shows the head, the part that changes the recipe.
"""
from torch import nn

from ..models import MLPHead
from .simclr import SimCLR


class HeadPrefix(nn.Sequential):
    """backbone followed by the first block (Linear, BN, ReLU) of a projection head."""

    def __init__(self, backbone: nn.Module, head: MLPHead):
        super().__init__(backbone, *list(head)[:3])
        self.out_dim = head[0].out_features


class SimCLRv2(SimCLR):
    name = "simclr_v2"
    paper = ("Chen, Kornblith, Swersky, Norouzi, Hinton. Big Self-Supervised Models are Strong "
             "Semi-Supervised Learners. NeurIPS 2020.")
    summary = "SimCLR with a 3-layer projection head, fine-tuned from the head's middle layer"

    def __init__(self, backbone, image_size: int = 32, temperature: float = 0.2, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, **kwargs):
        super().__init__(backbone, image_size, temperature, proj_hidden_dim, proj_dim, **kwargs)
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim, num_layers=3)

    def encoder_for_fine_tuning(self) -> HeadPrefix:
        """f followed by the head's first layer: what SimCLR v2 fine-tunes (shares weights with self)."""
        return HeadPrefix(self.backbone, self.projector)
