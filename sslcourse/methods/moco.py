"""MoCo v1 and v2: contrastive learning as a look-up in a dictionary of momentum-encoded keys.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation
Learning." CVPR 2020. Chen, Fan, Girshick, He. "Improved Baselines with Momentum
Contrastive Learning." 2020 (v2: MLP head, stronger augmentation, tau 0.2, cosine lr).

    q = f_q(x_q),  k = f_k(x_k)                       (N, D), k without gradient
    loss = InfoNCE(q, k+, queue, tau)                 positive logit at index 0, K negatives
    theta_k <- m theta_k + (1 - m) theta_q            after each step; then enqueue k

Shuffling BN. Batch norm computes its statistics over the batch, so within a batch the
query of image i and its key "talk" through the shared mean and variance: the model can
find its positive from the statistics instead of the content, and the loss falls
without learning much (He et al. 2020, Sec. 3.3). MoCo shuffles the keys across GPUs so
that a query and its key see different batch statistics. On one device the same
effect comes from ``bn_groups``: both encoders run on ``bn_groups`` sub-batches, each
normalised with its own statistics, and the keys are permuted before the split, so
key i sits in a different sub-batch from query i (its positive).
"""
import warnings

import torch

from ..losses import info_nce
from ..models import MLPHead
from ..transforms import recipe
from .base import Method
from .momentum import Queue, enqueue, momentum_copy, momentum_update


def grouped_forward(encoder, x: torch.Tensor, groups: int) -> torch.Tensor:
    """encoder(x), with batch norm statistics computed separately on ``groups`` equal chunks."""
    return torch.cat([encoder(chunk) for chunk in x.chunk(groups)])


class MoCo(Method):
    name = "moco_v2"
    paper = ("Chen, Fan, Girshick, He. Improved Baselines with Momentum Contrastive Learning. 2020 "
             "(after He et al. Momentum Contrast. CVPR 2020).")
    summary = "query vs momentum-encoded key and a queue of past keys; MLP head, tau 0.2"
    # Papers: SGD lr 0.03 at batch 256 for 200 epochs, K = 65536, m = 0.999. A CPU run has a few
    # hundred steps: m = 0.99 lets the key encoder keep up, and K = 4096 keys (64 batches) are
    # at most a few hundred steps old.
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}
    version = 2

    def __init__(self, backbone, image_size: int = 32, temperature: float | None = None, queue_size: int = 4096,
                 momentum: float = 0.99, proj_dim: int = 128, proj_hidden_dim: int = 512, bn_groups: int = 2,
                 gray_p: float = 0.5, symmetric: bool = False, loss_fn=info_nce,
                 momentum_update_fn=momentum_update, enqueue_fn=enqueue):
        """``temperature`` defaults to the paper's (0.07 for v1, 0.2 for v2). ``gray_p`` = 0.5 rather than
        0.2 keeps the world's colours from being a shortcut, as for SimCLR (see its docstring).
        ``loss_fn(query, key, queue, temperature)``, ``momentum_update_fn(online, target, momentum)`` and
        ``enqueue_fn(queue, pointer, keys)`` default to the library's; lab 06 passes the student's own.
        ``symmetric=True`` also uses the second view as a query (as in MoCo's CIFAR-10 demo): twice
        the signal and the compute per step; the paper's loss is the asymmetric one."""
        super().__init__(backbone)
        if not isinstance(bn_groups, int) or bn_groups < 1:
            raise ValueError(f"bn_groups must be a positive integer, got {bn_groups!r}")
        self.temperature = temperature if temperature is not None else (0.07 if self.version == 1 else 0.2)
        self.momentum, self.bn_groups, self.image_size, self.symmetric = momentum, bn_groups, image_size, symmetric
        self.proj_dim, self.proj_hidden_dim = proj_dim, proj_hidden_dim
        # v1: a linear layer onto the unit sphere; v2: a 2-layer MLP head.
        layers = 1 if self.version == 1 else 2
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim, num_layers=layers)
        self.key_backbone, self.key_projector = momentum_copy(backbone), momentum_copy(self.projector)
        self.queue = Queue(queue_size, proj_dim, enqueue_fn)
        self.loss_fn, self.momentum_update_fn = loss_fn, momentum_update_fn
        self.augment = recipe(f"moco_v{self.version}", image_size, gray_p=gray_p)[0]

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        method = super().for_data(backbone, data, **hparams)
        size, n = method.queue.keys.shape[0], len(data.train_images)
        if size >= n:
            # With K >= N the queue holds older keys of the query's own image, which then count as
            # negatives against it: on 1,000 world images and K = 4096, MoCo did not learn at all.
            warnings.warn(f"queue_size={size} is not smaller than the {n} training images, so the queue holds "
                          f"older keys of each query's own image as negatives; use queue_size <= {n // 4} "
                          f"(MoCo: 65,536 keys for 1.28M images)", stacklevel=2)
        return method

    def encode_keys(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Key encoder on ``x`` (N, C, H, W) -> (N, D) keys, without gradient, with shuffled BN."""
        with torch.no_grad():
            shuffle = torch.randperm(len(x), generator=generator).to(x.device)
            k = grouped_forward(lambda v: self.key_projector(self.key_backbone(v)), x[shuffle], self.bn_groups)
            return torch.empty_like(k).index_copy_(0, shuffle, k)                              # unshuffle

    def training_step(self, images, generator):
        n = images.shape[0]
        if n % self.bn_groups:
            raise ValueError(f"batch size {n} must be a multiple of bn_groups={self.bn_groups}")
        x1, x2 = self.augment(images, generator), self.augment(images, generator)
        queue = self.queue.keys.clone()                                                        # (K, D)
        q1 = self.projector(grouped_forward(self.backbone, x1, self.bn_groups))                # (N, D)
        k2 = self.encode_keys(x2, generator)
        loss = self.loss_fn(q1, k2, queue, self.temperature)
        if self.symmetric:   # the second view is also a query, for the first view's key
            q2 = self.projector(grouped_forward(self.backbone, x2, self.bn_groups))
            loss = (loss + self.loss_fn(q2, self.encode_keys(x1, generator), queue, self.temperature)) / 2
        self.queue.push(k2)  # the keys of this batch become negatives for the next ones
        return loss

    def on_step_end(self, progress):
        self.momentum_update_fn(self.backbone, self.key_backbone, self.momentum)
        self.momentum_update_fn(self.projector, self.key_projector, self.momentum)

    def hparams(self):
        return {"image_size": self.image_size, "temperature": self.temperature, "queue_size": self.queue.keys.shape[0],
                "momentum": self.momentum, "proj_dim": self.proj_dim, "proj_hidden_dim": self.proj_hidden_dim,
                "bn_groups": self.bn_groups, "gray_p": self.augment.gray_p, "symmetric": self.symmetric}


class MoCoV1(MoCo):
    name = "moco_v1"
    paper = ("He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation "
             "Learning. CVPR 2020.")
    summary = "query vs momentum-encoded key and a queue of past keys; linear head, tau 0.07"
    version = 1
