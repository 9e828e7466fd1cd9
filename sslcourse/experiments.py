"""Miniature experiments: pretrain a method for a few epochs, then probe its frozen features.

The lectures rerun the papers' ablations (temperature, augmentations, batch and queue
size, projection head) as dozens of short runs on the world; each is two lines:

    method, history = pretrain("simclr", data, epochs=8, temperature=0.5)
    probe(method.backbone, data)               # {"knn": ..., "linear": ...}

Training is the course's one trainer (``sslcourse.trainer.train``) and evaluation is
``sslcourse.evaluation``; this module only wires them together with a seed. It adds what
the ablations measure beyond accuracy (``head_features``: every depth of a projection
head; ``contrastive_task``: how well the network solves its own pretext task) and
``Supervised``, the cross-entropy reference trained the same way.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import extract_features, knn_accuracy, linear_probe
from .methods import METHODS, Method
from .models import build_backbone
from .trainer import train
from .transforms import recipe
from .utils import check_positive, eval_mode, seed_everything


class Supervised(Method):
    """Cross-entropy on the class labels, trained like the self-supervised methods: the reference
    that lectures put beside them (the same trainer, backbone and SimCLR views; labels instead of
    instances). Not a self-supervised method, so not in the registry: build it with ``for_data``
    and pass it to :func:`pretrain`."""
    name = "supervised"
    paper = ""
    summary = "cross-entropy on the labels, SimCLR's views: the supervised reference"
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64}
    batch_extras = ("labels",)

    def __init__(self, backbone, n_classes: int, image_size: int = 32, gray_p: float = 0.5):
        super().__init__(backbone)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        self.n_classes, self.image_size = n_classes, image_size
        self.classifier = nn.Linear(backbone.out_dim, n_classes)
        self.augment = recipe("simclr", image_size, gray_p=gray_p)[0]

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        if data.train_labels is None:
            raise ValueError(f"data set {data.name!r} has no training labels: the supervised reference needs them")
        return cls(backbone, **{"image_size": data.image_size, "n_classes": int(data.train_labels.max()) + 1,
                                **hparams})

    def training_step(self, images, generator, labels):
        logits = self.classifier(self.backbone(self.augment(images, generator)))   # (N, n_classes)
        return F.cross_entropy(logits, labels)

    def hparams(self):
        return {"n_classes": self.n_classes, "image_size": self.image_size, "gray_p": self.augment.gray_p}


def initial_backbone(data, seed: int = 0, backbone: str = "convnet") -> nn.Module:
    """The untrained backbone that ``pretrain(..., seed=seed, backbone=backbone)`` starts from."""
    seed_everything(seed)
    return build_backbone(backbone, channels=data.channels)


def pretrain(method, data, epochs: int, batch_size: int | None = None, lr: float | None = None, seed: int = 0,
             backbone: str = "convnet", progress: bool = False, diagnostics_every: int = 0,
             **hparams) -> tuple[Method, dict]:
    """Train ``method`` on ``data`` for ``epochs``; return ``(method, history)``.

    ``method`` is a registered name, built with ``METHODS[name].for_data(backbone, data, **hparams)``
    around :func:`initial_backbone`, or a built :class:`Method` (for a variant the constructor
    does not offer; then ``hparams`` must be empty). Other training settings are the method's
    ``defaults`` unless given (``batch_size``, ``lr``). The kNN monitor is off: call :func:`probe`.
    ``diagnostics_every=k`` adds the trainer's collapse diagnostics every k epochs to the history.
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}")
        method = METHODS[method].for_data(initial_backbone(data, seed, backbone), data, **hparams)
    elif isinstance(method, Method):
        if hparams:
            raise ValueError(f"hyper-parameters {sorted(hparams)} only apply when the method is given by name; "
                             f"got a built {type(method).__name__}")
        seed_everything(seed)
    else:
        raise TypeError(f"method must be a registered name or a Method, got {type(method).__name__}")
    history = train(method, data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, knn_every=0,
                    diagnostics_every=diagnostics_every, progress=progress)
    return method, history


def probe(model, data, k: int = 200, seed: int = 0) -> dict:
    """kNN and linear-probe test accuracy (100% of the labels) of frozen features.

    ``model`` is a backbone (any module mapping images to (N, D) features) or a pair
    ``(train_features, test_features)`` already extracted from ``data``'s two splits.
    """
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"data set {data.name!r} has no labels: probes need them")
    if isinstance(model, nn.Module):
        train_f, test_f = extract_features(model, data.train_images), extract_features(model, data.test_images)
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        train_f, test_f = model
        if len(train_f) != len(data.train_labels) or len(test_f) != len(data.test_labels):
            raise ValueError(f"features must have one row per image: {len(data.train_labels)} train and "
                             f"{len(data.test_labels)} test, got {len(train_f)} and {len(test_f)}")
    else:
        raise TypeError(f"model must be a backbone (nn.Module) or a (train_features, test_features) pair, "
                        f"got {type(model).__name__}")
    return {"knn": knn_accuracy(train_f, data.train_labels, test_f, data.test_labels, k),
            "linear": linear_probe(train_f, data.train_labels, test_f, data.test_labels, seed=seed)}


@torch.no_grad()
def head_features(method: Method, images: torch.Tensor, batch_size: int = 512) -> dict:
    """Features of ``images`` at every depth of the projection head, in eval mode.

    Returns ``{"h (backbone)": ..., "head layer 1": ..., ..., "z (projection)": ...}``: the
    backbone's features, the output of each hidden block (Linear, BN, ReLU) of
    ``method.projector``, and its output, each (N, D_layer) on the CPU.
    """
    h = extract_features(method.backbone, images, batch_size=batch_size)
    features, x = {"h (backbone)": h}, h.to(next(method.projector.parameters()).device)
    hidden = 0
    with eval_mode(method.projector):
        for layer in method.projector:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                hidden += 1
                features[f"head layer {hidden}"] = x.cpu()
    features["z (projection)"] = x.cpu()
    return features


@torch.no_grad()
def contrastive_task(method: Method, images: torch.Tensor, temperature: float | None = None,
                     batch_size: int | None = None, seed: int = 0) -> dict:
    """How sharply the trained network solves its own pretext task on held-out images.

    The images are scored in batches of ``batch_size`` (default: all at once; a ragged last
    batch is dropped, so that every anchor has the same number of candidates). In a batch of N,
    two augmented views of each image go through backbone and projection head (eval mode); each
    of the 2N views is an anchor whose candidates are the 2N - 1 others. As in SimCLR's Table 5
    (Chen et al. 2020), ``contrastive_acc`` is the fraction of anchors whose most similar
    candidate is their positive, and ``entropy`` the mean entropy (nats) of the softmax over
    candidates at ``temperature`` (default: the method's own), at most log(2N - 1).
    """
    tau = check_positive(method.temperature if temperature is None else temperature, "temperature")
    n = len(images) if batch_size is None else batch_size
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= len(images):
        raise ValueError(f"need batches of at least 2 images (one positive and one negative) and at most the "
                         f"{len(images)} given, got batch_size={batch_size!r} for {len(images)} images")
    generator = torch.Generator().manual_seed(seed)
    hits, entropies = [], []
    with eval_mode(method):
        for start in range(0, len(images) - n + 1, n):
            batch = images[start:start + n]
            views = torch.cat([method.augment(batch, generator), method.augment(batch, generator)])  # (2N, C, H, W)
            on_sphere = F.normalize(method.projector(method.backbone(views)), dim=1)                 # (2N, D)
            scores = (on_sphere @ on_sphere.T).fill_diagonal_(-float("inf")) / tau                 # (2N, 2N), no self
            partner = torch.arange(2 * n).roll(n)                  # row i (a first view) pairs with row i + N
            log_p = scores.log_softmax(dim=1)
            hits.append(scores.argmax(dim=1) == partner)
            entropies.append(-(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum(dim=1))
    return {"contrastive_acc": torch.cat(hits).float().mean().item(), "entropy": torch.cat(entropies).mean().item()}
