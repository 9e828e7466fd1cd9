"""Free semantic labels: learn the renderer's labels on clean images, align the features of a shifted domain.

Ren, Lee. "Cross-Domain Self-supervised Multi-task Feature Learning using Synthetic Imagery." CVPR 2018;
Ganin, Lempitsky. "Unsupervised Domain Adaptation by Backpropagation." ICML 2015.

    h = f(x)                                      the backbone, on a batch of clean and shifted images
    L = L_mask(h_clean) + L_depth(h_clean) + L_count(h_clean)     tasks: clean images only (labelled for free)
      + L_domain(d(R_lambda(h)), domain)          d tells clean from shifted; R reverses its gradient into f

The renderer labels the clean images (``sslcourse.data.domains``: a coarse mask map, the depth
order of each pair of objects, the object count); the shifted rendering of the same scenes
comes without labels, only its domain is used. The trainer passes each batch's positions in the
training set (``batch_extras = ("index",)``); the method looks up the batch's targets and its
shifted counterparts in buffers that ``for_data`` fills (not saved in checkpoints: they are data).
lambda follows Ganin's schedule 2 / (1 + exp(-gamma p)) - 1, gamma = 10, times ``domain_weight``.

Where this differs from the papers, for 16-32 px images and CPU runs of seconds:
- every head reads the pooled features (the paper decodes dense maps from a VGG); the mask is a
  cells x cells map of coverage fractions, predicted by one linear layer;
- the adversary: Ren and Lee train their discriminator with a least-squares GAN loss in
  alternating steps; here it is Ganin's gradient reversal, one backward pass, and the
  discriminator is a small MLP on the pooled features (one hidden layer of ``hidden`` = 64
  units; ``hidden=0``: a linear one);
- ``adaptation`` (see ``ADAPTATION``) runs the ablation: "none" (source only), "batchnorm" (the
  shifted images share the batch, so only batch normalisation sees them) and "adversarial";
- the depth order is rarely visible: the world places objects apart, so at 16 px only 2-6 % of
  object pairs overlap (``sslcourse.data.domains``), and the depth head stays near chance.

Measured on ``load_domains(1500, 500, image_size=16)``, 8 epochs, seeds 0, 1, 2, 3 (the learning
test in ``tests/test_free_labels.py``), on the shifted test images, whose labels training never saw:
- count accuracy: none 0.36, 0.32, 0.32, 0.35; batchnorm 0.39, 0.33, 0.33, 0.39; adversarial
  0.52, 0.47, 0.50, 0.52 (the most frequent count: 0.35; on clean test images all reach 0.63-0.70);
- ``pair_distance_ratio`` (how far apart the features of a scene's two renderings are): none
  0.73, 0.77, 0.81, 0.74; batchnorm 0.74, 0.77, 0.78, 0.68; adversarial 0.63, 0.58, 0.64, 0.58;
- mask error: 0.092-0.096 for all three (the training set's mean mask map: 0.108). Pooled
  features keep little of where things are (at 16 px the ConvNet's last map is 1 x 1);
- a fresh linear classifier still tells the domains apart nearly as well: test accuracy none
  0.85, 0.87, 0.91, 0.84; batchnorm 0.83, 0.86, 0.90, 0.83; adversarial 0.84, 0.85, 0.88, 0.80
  (random init 0.81). The discriminator is fooled, not every classifier: a known limit of
  adversarial alignment. The features the tasks read come closer; the domain stays readable.
``domain_weight`` = 0.5, not Ganin's 1: at 1 the runs vary more (pair_distance_ratio 0.67, 0.61,
0.77, 0.53, and for seed 2 a mask error no better than the mean mask map's) though count accuracy is higher
(0.54, 0.53, 0.59, 0.60).
"""
import torch
from torch import nn

from ..data.domains import free_labels, object_pairs, shift_images
from ..evaluation import extract_features, linear_probe
from ..losses.free_labels import count_loss, depth_order_loss, domain_loss, mask_loss
from ..transforms import to_float
from ..utils import check_dim, check_weight
from .base import Method, check_index
from .gradient_reversal import dann_lambda, grad_reverse


# What the shifted images do in training. "none": nothing (source only: the network never sees
# them); "batchnorm": they share each batch with the clean images, so batch normalisation's
# statistics cover both domains (as in AdaBN, Li et al. 2016), but no loss reads them;
# "adversarial": also the domain discriminator behind the gradient reversal layer.
ADAPTATION = ("none", "batchnorm", "adversarial")


class FreeLabels(Method):
    name = "free_labels"
    paper = ("Ren, Lee. Cross-Domain Self-supervised Multi-task Feature Learning using Synthetic Imagery. CVPR 2018; "
             "Ganin, Lempitsky. Unsupervised Domain Adaptation by Backpropagation. ICML 2015.")
    summary = ("mask, depth order and count from the renderer's labels; a reversed-gradient discriminator "
               "aligns a shifted rendering")
    batch_extras = ("index",)
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, n_train: int, image_size: int = 32, max_objects: int = 3, cells: int = 4,
                 adaptation: str = "adversarial", domain_weight: float = 0.5, gamma: float = 10.0, hidden: int = 64,
                 task_weights=(1.0, 1.0, 1.0)):
        """``adaptation``: one of ``ADAPTATION`` (below). ``domain_weight``: lambda's final value (Ganin: 1)."""
        super().__init__(backbone)
        if adaptation not in ADAPTATION:
            raise ValueError(f"adaptation must be one of {', '.join(ADAPTATION)}, got {adaptation!r}")
        self.adaptation = adaptation
        self.n_train, self.image_size = check_dim(n_train, "n_train"), check_dim(image_size, "image_size")
        self.max_objects, self.cells = check_dim(max_objects, "max_objects"), check_dim(cells, "cells")
        if image_size % cells:
            raise ValueError(f"cells must divide image_size {image_size}, got {cells}")
        self.domain_weight, self.gamma = check_weight(domain_weight, "domain_weight"), check_weight(gamma, "gamma")
        if len(tuple(task_weights)) != 3:
            raise ValueError(f"task_weights must be 3 numbers (mask, depth order, count), got {task_weights!r}")
        self.task_weights = tuple(check_weight(w, f"task weight {name}")
                                  for w, name in zip(task_weights, ("mask", "depth order", "count")))
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"hidden must be an int >= 0 (0: a linear discriminator), got {hidden!r}")
        self.hidden = hidden
        d, pairs = backbone.out_dim, len(object_pairs(max_objects))
        self.mask_head = nn.Linear(d, cells * cells)
        # One logit of "i in front of j" per pair; a one-object world has no pair (an empty output).
        self.depth_head = nn.Linear(d, max(pairs, 1))
        self.pairs = pairs
        self.count_head = nn.Linear(d, max_objects)                # logits of counts 1..K
        self.discriminator = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 1)) if hidden \
            else nn.Linear(d, 1)
        self.register_buffer("progress", torch.zeros(()))          # saved, so a resumed run keeps its lambda
        # The data: targets and shifted counterparts of the n_train training images (set_data).
        self.register_buffer("mask_targets", torch.full((n_train, cells, cells), -1.0), persistent=False)
        self.register_buffer("front_targets", torch.full((n_train, pairs), -1, dtype=torch.long), persistent=False)
        self.register_buffer("count_targets", torch.zeros(n_train, dtype=torch.long), persistent=False)
        self.register_buffer("shifted", torch.zeros(n_train, 3, image_size, image_size, dtype=torch.uint8),
                             persistent=False)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        """For ``load_domains`` data (``--dataset world-domains``), or ``load_world`` data of several
        objects per image (``max_objects`` >= 2: then its free labels and ``shift_images(train_images,
        seed=0)`` are used)."""
        extras = data.extras
        if "train" not in extras or "config" not in extras or "count" not in extras.get("train", {}):
            raise ValueError(f"free_labels needs the world's free labels (sslcourse.data.domains.load_domains, "
                             f"--dataset world-domains); data set {data.name!r} has none")
        if extras["config"].max_objects < 2:
            # One object per image: the count is always 1 and no pair has a depth order to learn.
            raise ValueError(f"free_labels needs scenes of several objects, but data set {data.name!r} has one per "
                             f"image (max_objects=1): use --dataset world-domains "
                             f"(sslcourse.data.domains.load_domains, up to 3 objects, both renderings)")
        cells = hparams.get("cells", 4)
        free = extras["free"]["train"] if "free" in extras else free_labels(extras["train"], cells)
        shifted = extras["shifted"]["train"] if "shifted" in extras else shift_images(data.train_images, 0, "train")
        method = cls(backbone, **{"n_train": len(data.train_images), "image_size": data.image_size,
                                  "max_objects": extras["config"].max_objects, "cells": free["mask"].shape[-1],
                                  **hparams})
        method.set_data(free, shifted)
        return method

    def set_data(self, free: dict, shifted: torch.Tensor) -> None:
        """Store the training images' free labels (``free_labels``) and their shifted rendering, in order."""
        expected = {"mask": self.mask_targets.shape, "front": self.front_targets.shape,
                    "count": self.count_targets.shape}
        for key, shape in expected.items():
            if key not in free or tuple(free[key].shape) != tuple(shape):
                raise ValueError(f"free[{key!r}] must have shape {tuple(shape)}, got "
                                 f"{tuple(free[key].shape) if key in free else 'nothing'}")
        if shifted.dtype != torch.uint8 or shifted.shape != self.shifted.shape:
            raise ValueError(f"shifted must be uint8 images of shape {tuple(self.shifted.shape)}, "
                             f"got {shifted.dtype} {tuple(shifted.shape)}")
        self.mask_targets.copy_(free["mask"])
        self.front_targets.copy_(free["front"])
        self.count_targets.copy_(free["count"])
        self.shifted.copy_(shifted)

    def heads(self, h: torch.Tensor) -> dict:
        """(N, D) features -> {"mask": (N, cells, cells), "front": (N, P), "count": (N, K)} logits."""
        return {"mask": self.mask_head(h).view(-1, self.cells, self.cells),
                "front": self.depth_head(h)[:, :self.pairs], "count": self.count_head(h)}

    def losses(self, images, index) -> dict:
        """{"mask", "depth", "count", "domain"}: the four terms on a batch (domain 0 without the discriminator)."""
        check_index(index, len(images), self.n_train)
        if (self.mask_targets[index] < 0).any():
            raise RuntimeError("free_labels has no targets for these images: build it with "
                               "FreeLabels.for_data(backbone, data) or call set_data(free, shifted)")
        n = len(images)
        if self.adaptation != "none":
            images = torch.cat([images, self.shifted[index]])                   # (2N, C, H, W): clean, then shifted
        h = self.backbone(to_float(images))                                     # (N or 2N, D)
        out = self.heads(h[:n])                                                  # tasks: clean images only
        terms = {"mask": mask_loss(out["mask"], self.mask_targets[index]),
                 "depth": depth_order_loss(out["front"], self.front_targets[index]),
                 "count": count_loss(out["count"], self.count_targets[index])}
        if self.adaptation == "adversarial":
            lambda_ = self.domain_weight * dann_lambda(float(self.progress), self.gamma)
            logits = self.discriminator(grad_reverse(h, lambda_)).squeeze(1)      # (2N,)
            domain = torch.cat([torch.zeros(n), torch.ones(n)]).to(h.device)
            terms["domain"] = domain_loss(logits, domain)
        else:
            terms["domain"] = h.new_zeros(())
        return terms

    def training_step(self, images, generator, index):
        terms = self.losses(images, index)
        weighted = sum(w * terms[k] for w, k in zip(self.task_weights, ("mask", "depth", "count")))
        return weighted + terms["domain"]

    @torch.no_grad()
    def on_step_end(self, progress):
        self.progress.fill_(progress)

    def hparams(self):
        return {"n_train": self.n_train, "image_size": self.image_size, "max_objects": self.max_objects,
                "cells": self.cells, "adaptation": self.adaptation, "domain_weight": self.domain_weight,
                "gamma": self.gamma, "hidden": self.hidden,
                "task_weights": self.task_weights}


@torch.no_grad()
def free_label_scores(method: FreeLabels, images: torch.Tensor, free: dict, device="cpu") -> dict:
    """How well ``method`` predicts the free labels of ``images`` (uint8, either domain), in eval mode:
    mask_error (mean absolute error of the coverage fractions), depth_accuracy (over labelled
    pairs), count_accuracy."""
    features = extract_features(method.backbone, images, device)                  # (N, D)
    out = method.heads(features.to(next(method.parameters()).device))
    out = {key: value.cpu() for key, value in out.items()}
    labelled = free["front"] >= 0
    return {"mask_error": (out["mask"].sigmoid() - free["mask"]).abs().mean().item(),
            "depth_accuracy": ((out["front"] > 0).long() == free["front"])[labelled].float().mean().item(),
            "count_accuracy": (out["count"].argmax(1) + 1 == free["count"]).float().mean().item()}


def trivial_scores(train_free: dict, test_free: dict) -> dict:
    """The scores of predictions that ignore the image: the training set's mean mask map, each
    pair's more frequent order, the most frequent count. A model must beat these."""
    mean_mask = train_free["mask"].mean(dim=0)
    labelled = train_free["front"] >= 0
    in_front = ((train_free["front"] == 1) & labelled).sum(0) >= ((train_free["front"] == 0) & labelled).sum(0)
    majority = train_free["count"].mode().values
    test_labelled = test_free["front"] >= 0
    return {"mask_error": (mean_mask - test_free["mask"]).abs().mean().item(),
            "depth_accuracy": (in_front.long().expand_as(test_free["front"]) == test_free["front"])[test_labelled]
            .float().mean().item(),
            "count_accuracy": (test_free["count"] == majority).float().mean().item()}


def domain_accuracy(backbone, data, n: int | None = None, device="cpu", seed: int = 0) -> float:
    """Test accuracy of a linear classifier (logistic regression on standardised features) telling
    clean from shifted images: trained on ``n`` clean and their ``n`` shifted training images
    (default all), tested on the test split's. 0.5 = the features do not show the domain."""
    if "shifted" not in data.extras:
        raise ValueError(f"data set {data.name!r} has no shifted rendering: load it with load_domains")
    features = {}
    for split in ("train", "test"):
        clean = getattr(data, f"{split}_images")[:n]
        shifted = data.extras["shifted"][split][:n]
        features[split] = extract_features(backbone, torch.cat([clean, shifted]), device)
        features[split + "_domain"] = torch.cat([torch.zeros(len(clean)), torch.ones(len(shifted))]).long()
    return linear_probe(features["train"], features["train_domain"], features["test"], features["test_domain"],
                        seed=seed)


@torch.no_grad()
def pair_distance_ratio(backbone, data, split: str = "test", device="cpu") -> float:
    """How far apart the two renderings of a scene are in feature space: the mean distance between
    f(clean_i) and f(shifted_i), over the mean distance between the clean features of two scenes
    (i and i + 1). 0: the shift leaves no trace; about 1: a scene's renderings are as far apart as two scenes."""
    if "shifted" not in data.extras:
        raise ValueError(f"data set {data.name!r} has no shifted rendering: load it with load_domains")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    clean = extract_features(backbone, getattr(data, f"{split}_images"), device)      # (N, D)
    shifted = extract_features(backbone, data.extras["shifted"][split], device)       # (N, D)
    between_scenes = (clean - clean.roll(1, dims=0)).norm(dim=1).mean()
    return ((clean - shifted).norm(dim=1).mean() / between_scenes).item()
