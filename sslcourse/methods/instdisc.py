"""Instance discrimination with a memory bank (Wu et al. 2018): each image is its own class.

Wu, Xiong, Yu, Lin. "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination." CVPR 2018.

    f_i = normalize(W h(x_i))                 128-d, h the backbone, W a linear head
    loss = -log P(i | f_i)                    softmax over the whole bank (tau 0.07), or its NCE
    v_i <- f_i                                after the step, for the images just visited

The bank holds one feature per training image, so the method needs the training-set size
(``for_data`` passes it) and each image's position in the training set (``batch_extras``).
The bank starts as random unit vectors: during the first epoch an image's positive is
noise, until its first visit writes its feature.

Exact softmax or NCE. The paper trains on ImageNet with NCE (m = 4096 noise entries), and
on CIFAR-10 (50,000 images) computes the softmax exactly, as ``num_noise=None`` (the default)
does here: a bank of a few thousand entries is cheap to score in full. Measured on 1,000
world images, 10 epochs, lr 1e-4 (kNN 0.132 at init): exact softmax 0.172; NCE with m = 4096
and Z fixed at the first step, as the paper does, 0.144 (Z was estimated while the bank was
still random, so it no longer fits once the bank holds real features); NCE with Z
re-estimated on every batch (``fixed_normalizer=False``) 0.182, but each step then costs
about five times more, to gather m bank rows for each image.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import instdisc_nce, nce_normalizer, nonparametric_softmax
from ..transforms import recipe
from ..utils import check_tensor
from .base import Method


class MemoryBank(nn.Module):
    """(n, D) unit vectors, one per training image; ``refresh`` writes the newest features.

    ``momentum`` = 0 replaces an entry by the new feature, as the paper describes;
    the authors' released code mixes old and new, v_i <- normalize(m v_i + (1 - m) f_i), with m = 0.5.
    """

    def __init__(self, size: int, dim: int, momentum: float = 0.0):
        super().__init__()
        if not isinstance(size, int) or size < 1 or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"bank size and dim must be positive integers, got size={size!r}, dim={dim!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"bank momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        # Random unit vectors as in the paper, from the global RNG when built (as MoCo's queue).
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))   # (n, D)

    @torch.no_grad()
    def refresh(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """Write the features (N, D) of the images at rows ``index`` (N,), on the unit sphere."""
        check_tensor(features, "features", ndim=2, floating=True)
        if index.shape != (features.shape[0],) or features.shape[1] != self.features.shape[1]:
            raise ValueError(f"refresh needs index (N,) and features (N, {self.features.shape[1]}), "
                             f"got {tuple(index.shape)} and {tuple(features.shape)}")
        new = F.normalize(features.detach().to(self.features.dtype), dim=1)
        if self.momentum > 0:
            new = F.normalize(self.momentum * self.features[index] + (1 - self.momentum) * new, dim=1)
        self.features[index] = new


class InstDisc(Method):
    name = "instdisc"
    paper = ("Wu, Xiong, Yu, Lin. Unsupervised Feature Learning via Non-Parametric Instance "
             "Discrimination. CVPR 2018.")
    summary = "every image its own class: non-parametric softmax over a memory bank (or NCE), tau 0.07"
    batch_extras = ("index",)
    # Paper: SGD lr 0.03 at batch 256 for 200 epochs. On short CPU runs AdamW at batch 64 with a small lr
    # worked best (the bank's entries come from earlier versions of the network; a slowly moving network
    # presumably keeps them comparable with its current features). On 1,000 world images (kNN 0.132 at
    # init), 10 epochs: 0.172 with lr 1e-4, 0.166 with 3e-4, 0.116 with SGD at the paper's 0.03;
    # 15 epochs: 0.154 with 3e-3, 0.134 with 1e-2 (measured).
    defaults = {**Method.defaults, "lr": 1e-4, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, bank_size: int, image_size: int = 32, temperature: float = 0.07,
                 feature_dim: int = 128, num_noise: int | None = None, fixed_normalizer: bool = True,
                 bank_momentum: float = 0.0, gray_p: float = 0.5):
        """``bank_size``: the number of training images. ``num_noise``: None for the exact softmax over
        the whole bank, or m, the noise entries per image of NCE (paper: 4096 on ImageNet).
        ``fixed_normalizer``: NCE's Z estimated once, at the first step (paper), or on every batch.
        ``bank_momentum``: 0 replaces bank entries (paper), 0.5 mixes them (authors' code).
        ``gray_p`` = 0.5 (paper: 0.2) keeps the world's colours from being a shortcut, as for SimCLR.
        """
        super().__init__(backbone)
        if num_noise is not None and (not isinstance(num_noise, int) or num_noise < 1):
            raise ValueError(f"num_noise must be a positive integer or None (exact softmax), got {num_noise!r}")
        self.temperature, self.num_noise, self.image_size = temperature, num_noise, image_size
        self.fixed_normalizer = fixed_normalizer
        self.head = nn.Linear(backbone.out_dim, feature_dim)   # the paper's 128-d linear layer
        self.bank = MemoryBank(bank_size, feature_dim, bank_momentum)
        self.register_buffer("normalizer", torch.zeros(()))   # Z, fixed at the first step (0: not yet)
        # The paper's augmentations (crop, flip, colour jitter, grayscale), which MoCo v1 took over.
        self.augment = recipe("moco_v1", image_size, gray_p=gray_p)[0]

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        return cls(backbone, **{"bank_size": len(data.train_images), "image_size": data.image_size, **hparams})

    def training_step(self, images, generator, index):
        f = F.normalize(self.head(self.backbone(self.augment(images, generator))), dim=1)  # (N, 128)
        bank = self.bank.features
        if self.num_noise is None:
            loss = nonparametric_softmax(f, index, bank.clone(), self.temperature)   # the refresh is in place
        else:
            noise = torch.randint(len(bank), (len(f), self.num_noise), generator=generator).to(f.device)
            if self.fixed_normalizer and self.normalizer == 0:
                self.normalizer.fill_(nce_normalizer(f, bank, noise, self.temperature))
            z = self.normalizer if self.fixed_normalizer else None   # None: estimated on this batch
            loss = instdisc_nce(f, index, bank, noise, self.temperature, z)
        self.bank.refresh(index, f)   # after the loss: the positive is the entry from the last visit
        return loss

    def hparams(self):
        return {"bank_size": len(self.bank.features), "image_size": self.image_size,
                "temperature": self.temperature, "feature_dim": self.head.out_features,
                "num_noise": self.num_noise, "fixed_normalizer": self.fixed_normalizer,
                "bank_momentum": self.bank.momentum, "gray_p": self.augment.gray_p}
