"""Evaluation of frozen features: weighted kNN, linear probes with label fractions, fine-tuning.

Every protocol reads the backbone's pooled features of un-augmented images,
normalised exactly as during training (``sslcourse.transforms.to_float``).
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from .transforms import recipe, to_float

FRACTIONS = {"linear_1pct": 0.01, "linear_10pct": 0.10, "linear_100pct": 1.0}


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, device="cpu", batch_size: int = 512,
                     forward=None) -> torch.Tensor:
    """(N, C, H, W) uint8 images -> (N, D) float features on the CPU, in eval mode.

    ``forward`` is what runs on each batch, ``backbone`` itself by default; pass a method as
    ``backbone`` and ``forward=method.embed`` for the embeddings its loss sees.
    """
    forward = backbone if forward is None else forward
    was_training = backbone.training
    backbone.eval()
    chunks = [forward(to_float(images[i:i + batch_size].to(device))).float().cpu()
              for i in range(0, len(images), batch_size)]
    backbone.train(was_training)
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
