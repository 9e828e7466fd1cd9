"""Evaluation of frozen features: weighted kNN, linear probes with label fractions, fine-tuning.

Every protocol reads the backbone's pooled features of un-augmented images,
normalised exactly as during training (``sslcourse.transforms.to_float``).
"""
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from .transforms import recipe, to_float
from .utils import eval_mode

FRACTIONS = {"linear_1pct": 0.01, "linear_10pct": 0.10, "linear_100pct": 1.0}


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, device="cpu", batch_size: int = 512,
                     forward=None) -> torch.Tensor:
    """(N, C, H, W) uint8 images -> (N, D) float features on the CPU, in eval mode.

    ``forward`` is what runs on each batch, ``backbone`` itself by default; pass a method as
    ``backbone`` and ``forward=method.embed`` for the embeddings its loss sees.
    """
    forward = backbone if forward is None else forward
    with eval_mode(backbone):
        chunks = [forward(to_float(images[i:i + batch_size].to(device))).float().cpu()
                  for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric
    Instance Discrimination", CVPR): the k nearest training features by cosine similarity
    s_i vote for their class with weight exp(s_i / tau). Returns (M,) predicted labels."""
    if len(train_features) != len(train_labels):
        raise ValueError(f"{len(train_features)} training features but {len(train_labels)} labels")
    k = min(k, len(train_features))
    n_classes = int(train_labels.max()) + 1
    bank = F.normalize(train_features.float(), dim=1)
    predictions = []
    for start in range(0, len(test_features), chunk):
        query = F.normalize(test_features[start:start + chunk].float(), dim=1)
        similarity, index = (query @ bank.T).topk(k, dim=1)              # (m, k)
        votes = torch.zeros(len(query), n_classes)
        votes.scatter_add_(1, train_labels[index], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 200,
                 temperature: float = 0.07) -> float:
    predicted = knn_predict(train_features, train_labels, test_features, k, temperature)
    return (predicted == test_labels).float().mean().item()


def knn_eval(backbone, data, k: int = 200, temperature: float = 0.07, device="cpu",
             max_train: int | None = None, max_test: int | None = None) -> float:
    """kNN accuracy of ``backbone`` on ``data`` (an ImageDataset with labels); the trainer's monitor."""
    train_x, train_y = data.train_images[:max_train], data.train_labels[:max_train]
    test_x, test_y = data.test_images[:max_test], data.test_labels[:max_test]
    return knn_accuracy(extract_features(backbone, train_x, device), train_y,
                        extract_features(backbone, test_x, device), test_y, k, temperature)


def label_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced ``fraction`` of the labels (at least one per class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.permutation(members)[:max(1, round(fraction * len(members)))])
    return torch.from_numpy(np.sort(np.concatenate(picked)))


def linear_probe(train_features, train_labels, test_features, test_labels, fraction: float = 1.0,
                 seed: int = 0) -> float:
    """Test accuracy of a logistic regression on frozen, standardised features,
    trained on a class-balanced ``fraction`` of the training labels."""
    index = label_subset(train_labels, fraction, seed)
    scaler = StandardScaler().fit(train_features[index].numpy())
    classifier = LogisticRegression(max_iter=1000, C=1.0)
    # One BLAS thread: these fits are small, and spare threads spin against the trainer's.
    with threadpool_limits(limits=1):
        classifier.fit(scaler.transform(train_features[index].numpy()), train_labels[index].numpy())
        return float(classifier.score(scaler.transform(test_features.numpy()), test_labels.numpy()))


def evaluate(backbone, data, device="cpu", k: int = 200, temperature: float = 0.07, seed: int = 0) -> dict:
    """kNN and linear probes at 1%, 10% and 100% of the labels: the course's results table."""
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"data set {data.name!r} has no labels: kNN and linear probes need them")
    train_f = extract_features(backbone, data.train_images, device)
    test_f = extract_features(backbone, data.test_images, device)
    results = {"knn": knn_accuracy(train_f, data.train_labels, test_f, data.test_labels, k, temperature)}
    for key, fraction in FRACTIONS.items():
        results[key] = linear_probe(train_f, data.train_labels, test_f, data.test_labels, fraction, seed)
    return results


def fine_tune(backbone, data, fraction: float = 1.0, epochs: int = 10, lr: float = 1e-3, batch_size: int = 128,
              device="cpu", seed: int = 0, progress: bool = True) -> float:
    """Train a copy of ``backbone`` end to end with a linear classifier on a ``fraction`` of
    the labels (random crops and flips), and return its test accuracy. The original is untouched."""
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(backbone).to(device)
    n_classes = int(data.train_labels.max()) + 1
    classifier = nn.Sequential(model, nn.Linear(model.out_dim, n_classes)).to(device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr)
    augment = recipe("mae", data.image_size)[0]
    index = label_subset(data.train_labels, fraction, seed)
    images, labels = data.train_images[index], data.train_labels[index]
    for _ in tqdm(range(epochs), desc="fine-tune", disable=not progress):
        classifier.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            if len(batch) < 2:
                continue  # batch norm needs two samples
            x = augment(images[batch].to(device), generator)
            loss = F.cross_entropy(classifier(x), labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    test_f = extract_features(classifier, data.test_images, device)
    return (test_f.argmax(dim=1) == data.test_labels).float().mean().item()


def _pooled_block_outputs(backbone, images: torch.Tensor, device, batch_size: int, max_features: int) -> list:
    """Run ``backbone.blocks`` in order on un-augmented images; each block's output (N, C, H, W),
    average-pooled to the largest g x g grid with C g^2 <= max_features (at least 1 x 1), flattened.
    Returns one (N, C g^2) CPU tensor per block."""
    per_block = [[] for _ in backbone.blocks]
    with torch.no_grad(), eval_mode(backbone):
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(device))
            for i, block in enumerate(backbone.blocks):
                x = block(x)
                side = max(1, min(x.shape[-2], x.shape[-1], math.isqrt(max_features // x.shape[1])))
                per_block[i].append(F.adaptive_avg_pool2d(x, side).flatten(1).float().cpu())
    return [torch.cat(chunks) for chunks in per_block]


def layerwise_probe(backbone, data, probe: str = "linear", max_features: int = 2048, fraction: float = 1.0,
                    k: int = 200, temperature: float = 0.07, device="cpu", seed: int = 0,
                    batch_size: int = 256) -> dict:
    """Test accuracy of a probe on the output of every block of ``backbone.blocks``: ``{"block1": ..., ...}``.

    The protocol of Zhang, Isola and Efros (2016, "Colorful Image Colorization") that Wu et al.
    (2018, Table 2) report layer by layer: the frozen network runs to a block, the block's
    feature map is average-pooled to a small grid, and a linear classifier reads it. Zhang et al.
    resize every layer to about 9,000 dimensions; here each map is pooled to the largest g x g
    grid with C g^2 <= ``max_features`` (2,048: C channels times the grid, a 1 x 1 grid when C
    alone exceeds it), so a ConvNet on 32 px images gives 16 x 11 x 11, 32 x 8 x 8, 64 x 4 x 4 and
    128 x 2 x 2 features. With ``max_features`` at most the last block's channels, the last block's
    features are the backbone's own globally pooled ones.

    ``probe``: "linear" (:func:`linear_probe` on a class-balanced ``fraction`` of the training
    labels) or "knn" (:func:`knn_accuracy`, k and temperature). Memory: the pooled features of
    every block, for both splits, at once (N x the sum of the blocks' dimensions floats).
    """
    if not isinstance(getattr(backbone, "blocks", None), nn.ModuleList):
        raise TypeError(f"layerwise_probe needs a backbone with its stages in `.blocks` (an nn.ModuleList), "
                        f"got a {type(backbone).__name__} without one")
    if probe not in ("linear", "knn"):
        raise ValueError(f"probe must be 'linear' or 'knn', got {probe!r}")
    if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
        raise ValueError(f"max_features must be a positive int, got {max_features!r}")
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"data set {data.name!r} has no labels: probes need them")
    train_blocks = _pooled_block_outputs(backbone, data.train_images, device, batch_size, max_features)
    test_blocks = _pooled_block_outputs(backbone, data.test_images, device, batch_size, max_features)
    accuracy = {}
    for i, (train_f, test_f) in enumerate(zip(train_blocks, test_blocks)):
        if probe == "linear":
            accuracy[f"block{i + 1}"] = linear_probe(train_f, data.train_labels, test_f, data.test_labels,
                                                     fraction, seed)
        else:
            accuracy[f"block{i + 1}"] = knn_accuracy(train_f, data.train_labels, test_f, data.test_labels, k,
                                                     temperature)
    return accuracy
