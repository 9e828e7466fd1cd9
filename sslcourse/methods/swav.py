"""SwAV: predict one view's cluster code from another view, codes balanced by Sinkhorn-Knopp.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. "Unsupervised Learning of Visual Features
by Contrasting Cluster Assignments." NeurIPS 2020.

    z = g(f(x)) / |g(f(x))|                 (B, D) on the unit sphere, one per view
    scores = z C^T                          C: K l2-normalised prototypes (K, D), learned
    q = sinkhorn(scores)                    codes of the 2 global views, no gradient, equal use
    loss = swav(all views' scores, q)       each global view's code predicted from every other view

Images are compared through the prototypes, never with one another: no negatives, and
the equipartition constraint in Sinkhorn-Knopp is what prevents collapse into one cluster.
Multi-crop adds small, cheap local views that only predict the global views' codes (Sec. 3.2).
With small batches the codes are computed with a queue of past embeddings too, so that
the batch plus the queue is large enough to be spread over K prototypes (the paper's
small-batch setting).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import sinkhorn, swav
from ..models import MLPHead
from ..transforms import multi_crop
from ..utils import check_dim, check_positive
from .base import Method
from .momentum import Queue


class SwAV(Method):
    name = "swav"
    paper = ("Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. Unsupervised Learning of Visual Features "
             "by Contrasting Cluster Assignments. NeurIPS 2020.")
    summary = "swapped prediction of Sinkhorn-balanced prototype codes between views; multi-crop, no negatives"
    # The paper: LARS, lr 4.8 at batch 4096, weight decay 1e-6, 3000 prototypes (3 per ImageNet
    # class), 2 x 224 + 6 x 96 px crops, 400-800 epochs. A CPU run has a few hundred steps at batch
    # 64: SGD with momentum, lr 0.1, weight decay 5e-4, 30 prototypes (3 per class of the world),
    # 2 local crops.
    defaults = {**Method.defaults, "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "batch_size": 64,
                "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, n_prototypes: int = 30, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 n_local: int = 2, local_size: int | None = None, global_scale=(0.14, 1.0), local_scale=(0.05, 0.14),
                 queue_size: int = 0, freeze_prototypes_steps: int = 0, gray_p: float = 0.5,
                 loss_fn=swav, sinkhorn_fn=sinkhorn):
        """Views: :func:`sslcourse.transforms.multi_crop` (2 global crops, ``n_local`` local ones).

        ``queue_size`` > 0 keeps that many past global embeddings (at least two batches' worth)
        and, once it is full, computes the codes of the batch together with them (the paper
        starts its queue after 15 epochs when the batch is 256 or less); 0 (the default) uses no
        queue, as suits short runs, whose old embeddings soon go stale. The prototypes get no
        gradient in the first ``freeze_prototypes_steps`` steps (the paper freezes them for its
        first epoch, which helps its convergence); off by default, as on the world freezing them
        for the first epoch did not help (20 epochs at 16 px, lr 0.3: linear probe 0.25, against 0.28).
        ``loss_fn(scores, codes, temperature)`` and ``sinkhorn_fn(scores, epsilon, iterations)``
        default to the library's. Defaults that differ from the paper's: see the class comment,
        and ``gray_p`` 0.5 (paper 0.2), which keeps the world's colours from being a shortcut.
        """
        super().__init__(backbone)
        self.image_size = image_size
        self.n_prototypes = check_dim(n_prototypes, "n_prototypes")
        self.proj_hidden_dim = check_dim(proj_hidden_dim, "proj_hidden_dim")
        self.proj_dim = check_dim(proj_dim, "proj_dim")
        self.temperature, self.epsilon = check_positive(temperature, "temperature"), check_positive(epsilon, "epsilon")
        self.sinkhorn_iterations = check_dim(sinkhorn_iterations, "sinkhorn_iterations")
        for value, name in ((queue_size, "queue_size"), (freeze_prototypes_steps, "freeze_prototypes_steps")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.views = multi_crop(image_size, n_local, local_size, global_scale, local_scale, gray_p=gray_p)
        # multi_crop has checked them
        self.local_size, self.global_scale, self.local_scale = local_size, tuple(global_scale), tuple(local_scale)
        self.projector = MLPHead(backbone.out_dim, proj_hidden_dim, proj_dim)
        self.prototypes = nn.Linear(proj_dim, n_prototypes, bias=False)   # rows: the K prototypes c_k
        self.normalize_prototypes()
        self.queue = Queue(queue_size, proj_dim) if queue_size else None
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))   # how many queue rows are real
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))          # optimiser steps so far
        self.loss_fn, self.sinkhorn_fn = loss_fn, sinkhorn_fn

    @property
    def n_local(self) -> int:
        return len(self.views) - 2

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project the prototypes back onto the unit sphere (the paper does so at every step)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, x):
        """The l2-normalised projection z that is scored against the prototypes."""
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    @torch.no_grad()
    def codes(self, scores: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes (B, K) of one global view's scores (B, K), with the queue's once it is full."""
        n = scores.shape[0]
        if self.queue is not None and int(self.queue_filled) == self.queue.keys.shape[0]:
            scores = torch.cat([scores, self.queue.keys @ self.prototypes.weight.T])   # (B + Q, K)
        return self.sinkhorn_fn(scores.detach(), self.epsilon, self.sinkhorn_iterations)[:n]

    def training_step(self, images, generator, **extras):
        n = images.shape[0]
        if self.queue is not None and self.queue.keys.shape[0] < 2 * n:
            raise ValueError(f"queue_size={self.queue.keys.shape[0]} is smaller than the 2 x {n} global "
                             f"embeddings of one batch; use at least {2 * n}, or 0 for no queue")
        views = [augment(images, generator) for augment in self.views]
        z_global = self.embed(torch.cat(views[:2]))                                   # (2N, D)
        z = list(z_global.chunk(2))
        if self.n_local:   # local crops are smaller: one pass of their own
            z += list(self.embed(torch.cat(views[2:])).chunk(self.n_local))
        prototypes = self.prototypes.weight                                           # (K, D)
        if int(self.steps) < self.freeze_prototypes_steps:
            prototypes = prototypes.detach()
        scores = [zv @ prototypes.T for zv in z]                                      # V x (N, K)
        codes = [self.codes(s) for s in scores[:2]]
        loss = self.loss_fn(scores, codes, self.temperature)
        if self.queue is not None:
            self.queue.push(z_global)
            self.queue_filled.fill_(min(int(self.queue_filled) + 2 * n, self.queue.keys.shape[0]))
        return loss

    def on_step_end(self, progress):
        self.steps += 1
        self.normalize_prototypes()

    def hparams(self):
        return {"image_size": self.image_size, "n_prototypes": self.n_prototypes,
                "proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim, "temperature": self.temperature,
                "epsilon": self.epsilon, "sinkhorn_iterations": self.sinkhorn_iterations, "n_local": self.n_local,
                "local_size": self.local_size, "global_scale": self.global_scale, "local_scale": self.local_scale,
                "queue_size": 0 if self.queue is None else self.queue.keys.shape[0],
                "freeze_prototypes_steps": self.freeze_prototypes_steps, "gray_p": self.views[0].gray_p}
