"""Deep InfoMax (local): the global feature of an image must recognise its own local features.

Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler, Bengio. "Learning Deep
Representations by Mutual Information Estimation and Maximization." ICLR 2019.

    C = backbone.blocks[:local_block + 1](x)      (N, c, M, M) local features, each sees a patch
    y = backbone(x)                               (N, D) global features, kept for downstream tasks
    loss = deep_infomax(g(y), l(C))               infoNCE (or JSD) of y_i against C(x_i) and C(x_j), j != i

The score is the paper's "encoder-and-dot" form: a 1x1-convolution MLP l on every location
and an MLP g on the global vector map both into one space, where they are dotted. One
augmented view per image (crop, flip, colour jitter, grayscale): DIM needs no second view,
the image's own locations are its positives. The paper's global objective and its prior
matching (an adversary that shapes the distribution of y) are left out; its best results
on classification came from the local objective.
"""
import torch
from torch import nn

from ..losses import deep_infomax
from ..losses.infomax import ESTIMATORS
from ..models import MLPHead
from ..transforms import recipe
from ..utils import eval_mode
from .base import Method


def local_head(in_channels: int, hidden: int, out_dim: int) -> nn.Sequential:
    """An MLP applied at every location: 1x1 conv, BN, ReLU, 1x1 conv."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, out_dim, 1))


class DIM(Method):
    name = "dim"
    paper = ("Hjelm et al. Learning Deep Representations by Mutual Information Estimation and "
             "Maximization. ICLR 2019.")
    summary = "global feature vs local feature map: own locations positive, other images' negative"
    # The paper trains with Adam at lr 1e-4; here AdamW at lr 1e-3, batch 64, for short CPU runs.
    # DIM gains little on the world. On 1,000 images, 8 epochs, one thread (measured): kNN 0.132 at init,
    # 0.156 after (0.142 with two threads; 16 epochs: 0.156; lr 3e-4: 0.152; lr 1e-4: 0.150; batch 32:
    # 0.154; JSD: 0.144; local block 2: 0.138; block 0: 0.160 at twice the cost; no augmentation: 0.132).
    # DIM rewards what all locations of an image share; on the world that is foremost colour, drawn
    # independently of the class: a linear probe for the object's hue (6 bins) rises from 0.69 to 0.78,
    # the one for the class stays near 0.19 (0.194 -> 0.184).
    defaults = {**Method.defaults, "lr": 1e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, local_block: int = 1, embed_dim: int = 128,
                 hidden_dim: int = 256, estimator: str = "infonce", gray_p: float = 0.5):
        """``local_block``: the block whose output is the local map (ConvNet: 1 gives 8 x 8 on 32 px
        images; ResNet-18: 3). Must come before the last block, whose output is pooled into y."""
        super().__init__(backbone)
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        blocks = len(backbone.blocks)
        if isinstance(local_block, bool) or not isinstance(local_block, int) or not 0 <= local_block < blocks - 1:
            raise ValueError(f"local_block must be an integer in [0, {blocks - 2}] (a block before the last of "
                             f"{blocks}), got {local_block!r}")
        self.image_size, self.local_block, self.estimator = image_size, local_block, estimator
        self.embed_dim, self.hidden_dim = embed_dim, hidden_dim
        self.local_head = local_head(self._block_channels(local_block), hidden_dim, embed_dim)
        self.global_head = MLPHead(backbone.out_dim, hidden_dim, embed_dim)
        self.augment = recipe("simclr", image_size, gray_p=gray_p)[0]

    def _block_channels(self, block: int) -> int:
        """The channel count of a block's output, from a dry run (in eval mode: BN statistics untouched)."""
        first_conv = next(m for m in self.backbone.modules() if isinstance(m, nn.Conv2d))
        x = torch.zeros(2, first_conv.in_channels, self.image_size, self.image_size)
        with torch.no_grad(), eval_mode(self.backbone):
            for b in self.backbone.blocks[:block + 1]:
                x = b(x)
        return x.shape[1]

    def training_step(self, images, generator):
        x = self.augment(images, generator)
        # The backbone's own forward (blocks, then global average pooling), keeping one block's output.
        for i, block in enumerate(self.backbone.blocks):
            x = block(x)
            if i == self.local_block:
                local = x                                                      # (N, c, M, M)
        y = x.mean(dim=(2, 3))                                                 # (N, D)
        return deep_infomax(self.global_head(y), self.local_head(local), self.estimator)

    def hparams(self):
        return {"image_size": self.image_size, "local_block": self.local_block, "embed_dim": self.embed_dim,
                "hidden_dim": self.hidden_dim, "estimator": self.estimator, "gray_p": self.augment.gray_p}
