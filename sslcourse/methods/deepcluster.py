"""DeepCluster: k-means of the network's own features gives pseudo labels; a classifier learns them; repeat.

Caron, Bojanowski, Joulin, Douze. "Deep Clustering for Unsupervised Learning of Visual
Features." ECCV 2018.

Every epoch (Sec. 3.2):

    h_n = f(x_n)                                 features of every training image, eval mode, no augmentation
    h_n <- l2normalize(PCA-whiten_256(h_n))      reduced to 256 dimensions, whitened, on the unit sphere
    min_C sum_n min_y |h_n - C y_n|^2            k-means; y_n = the cluster of image n: its pseudo label
    g <- a new linear classifier                 re-initialised, since the cluster numbers mean nothing
    min_{f, g} 1/N sum_n loss(g(f(aug(x_n))), y_n)     an epoch of cross-entropy on the pseudo labels

Trivial solutions (Sec. 3.3), and the fixes kept here (``reseed_empty``, ``balance``):
an empty cluster takes a perturbed copy of a non-empty centroid and the two split its
points (``sslcourse.clustering.split_empty_clusters``); and since a classifier can score
well by predicting the one big cluster, the paper samples images uniformly over the pseudo
labels. The course's trainer draws its batches itself, uniformly over images, so each
image's loss is weighted instead by w_y = N / (K n_y), n_y its cluster's size and K the
number of non-empty clusters: over the trainer's uniform batches the expected weighted
loss is (1/K) sum_y (mean loss in cluster y), the loss under the paper's sampling, and
every image is still seen once per epoch.

Choices for a 32x32 CPU world, where the paper's differ:
- k: the paper takes k = 10,000 on ImageNet, 10 times its 1,000 classes ("some amount of
  over-segmentation is beneficial"). Here ``n_clusters`` = 100, 10 times the world's 10
  classes, is the default: 20 to 50 images per cluster on 2,000 to 5,000 images.
- Features: the paper clusters AlexNet's fc7 (4,096-d) after PCA to 256 dimensions; here
  the backbone's pooled features (128-d ConvNet, 512-d ResNet-18), the ones probes
  evaluate, so PCA to 256 only whitens the ConvNet's. The PCA runs in torch (a D x D
  eigendecomposition, cheap for D in the hundreds), as does k-means, on the features' device.
- The classifier is one linear layer on those features (the paper keeps its fc6-fc7 MLP
  across clusterings and re-initialises only the last layer), drawn from N(0, 0.01) with
  zero bias as the authors' code does, from the trainer's generator.
- The paper feeds the network Sobel-filtered grey images, to keep colour from deciding the
  clusters; the course's backbones take RGB everywhere (probes too), so colour jitter and
  grayscale on half of the views play that part, besides the paper's random resized crops
  and flips.
- k-means starts from k random points (faiss's default, which the paper used), 20 iterations.

The head is re-initialised in place, since the trainer's optimiser holds its parameters;
unlike the paper, which builds a new optimiser for the new head, AdamW's running moments
for the head carry over from the previous clustering (the first fades within tens of
steps, the second within about a thousand).

Measured on 2,000 world images at 16 px (1 thread, seed 0, linear probe on 500 test
images; random init 0.168): 10 epochs with these defaults reach 0.208; with the paper's
views on RGB (crops and flips only) 0.156 (crops of (0.2, 1), 10 epochs) and 0.146
((0.08, 1), 15 epochs). Cluster purity against the classes stays near its random-init
level (0.25 to 0.22 with k = 100; a random partition into clusters of 20 scores 0.22),
as on CIFAR-10 (facebookresearch/deepcluster issue 22: NMI with the
labels below 0.1 after 200 epochs): DeepCluster needs many images and epochs. No
cluster ever emptied or held more than 3.4 % of the images, even with both fixes off
(20 epochs at lr 1e-2, with or without the PCA-whitening): in runs this short the
features do not degenerate, so the collapse the fixes prevent does not show; k-means on
collapsed features shows it (``tests/test_deepcluster.py``). Started by hand from one giant
cluster (``set_pseudo_labels``: half of 5,000 images at 32 px in one cluster; lecture 02), one
epoch without ``balance`` teaches the network to answer that cluster for 82 % of the images
(2 clusters answered in all), with ``balance`` for none (12 answered): the paper's trivial
parametrization. It does not compound in this setting: the next k-means, from random images
on whitened features, is balanced again with or without the fixes (largest cluster 1.6 and 1.9 %).

Pseudo labels are recomputed at the first step of every epoch (``recluster_every``): the
method counts its optimiser steps (``on_step_end``) and knows the epoch from N // batch
size, the trainer's steps per epoch. The pseudo labels, the class weights, the step
counters and ``cluster_history`` are in the state dict, so a resumed run continues with
the same clustering. The true labels, when
``for_data`` finds them, serve only the per-clustering statistics in ``cluster_history``
(purity, NMI with the previous clustering, cluster sizes), never the loss.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..clustering import KMeansResult, cluster_purity, kmeans, normalized_mutual_information, pca_whiten
from ..evaluation import extract_features
from ..transforms import Augment
from ..utils import check_dim, check_tensor
from .base import check_index
from .pretext import PretextTask

N_CLUSTERS = 100     # the default k; the paper found k = 10,000 best on ImageNet


def cluster_pseudo_labels(features: torch.Tensor, n_clusters: int, generator: torch.Generator, pca_dim: int = 256,
                          iterations: int = 20, reseed_empty: bool = True) -> KMeansResult:
    """DeepCluster's pseudo labels: (N, D) features -> PCA-whitening to ``pca_dim``, l2-normalisation,
    k-means from ``n_clusters`` random points; the result's ``assignments`` (N,) are the labels."""
    check_tensor(features, "features", ndim=2, floating=True)
    points = F.normalize(pca_whiten(features.float(), pca_dim), dim=1)   # (N, min(pca_dim, D))
    return kmeans(points, n_clusters, iterations, generator, init="random", reseed_empty=reseed_empty)


def inverse_size_weights(assignments: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """(N,) cluster of each image -> (n_clusters,) weight w_y = N / (K n_y) of an image in cluster y.

    K counts the non-empty clusters, and an empty cluster's weight is 0: the weights average
    to 1 over the images, and each cluster weighs 1/K of the loss, whatever its size.
    """
    sizes = torch.bincount(assignments, minlength=n_clusters).float()    # (n_clusters,)
    nonempty = (sizes > 0).sum()
    return torch.where(sizes > 0, len(assignments) / (nonempty * sizes.clamp_min(1)), torch.zeros_like(sizes))


class DeepCluster(PretextTask):
    name = "deepcluster"
    paper = ("Caron, Bojanowski, Joulin, Douze. Deep Clustering for Unsupervised Learning of Visual "
             "Features. ECCV 2018.")
    summary = "k-means of the features every epoch gives pseudo labels; a re-initialised classifier learns them"
    batch_extras = ("index",)
    # The paper: SGD, lr 0.05, momentum 0.9, weight decay 1e-5, batch 256, 500 epochs. Short CPU runs:
    # AdamW at batch 64 (SGD at the paper's lr did no better on the world in 15 epochs).
    defaults = {**PretextTask.defaults, "batch_size": 64}

    def __init__(self, backbone, n_train: int, image_size: int = 32, n_clusters: int = N_CLUSTERS, pca_dim: int = 256,
                 kmeans_iterations: int = 20, recluster_every: int = 1, reseed_empty: bool = True,
                 balance: bool = True, crop_scale=(0.08, 1.0), jitter_p: float = 0.8, gray_p: float = 0.5,
                 train_images: torch.Tensor | None = None, train_labels: torch.Tensor | None = None):
        """``n_train``: the number of training images (``for_data`` passes it, and the images
        themselves as ``train_images``; ``train_labels`` only for the statistics).
        ``recluster_every``: epochs between clusterings (the paper: 1).
        ``reseed_empty`` and ``balance`` switch off the two fixes against trivial solutions.
        Views: random resized crops of ``crop_scale`` and flips (the paper's), then colour jitter
        (0.4, 0.4, 0.4, 0.1) with probability ``jitter_p`` and grayscale with ``gray_p``, which stand
        in for the paper's Sobel filter (``jitter_p=0, gray_p=0``: the paper's views on RGB).
        """
        super().__init__(backbone)
        self.n_train = check_dim(n_train, "n_train")
        self.n_clusters = check_dim(n_clusters, "n_clusters")
        if not 2 <= n_clusters <= n_train:
            raise ValueError(f"n_clusters must be between 2 and the number of training images {n_train}, "
                             f"got {n_clusters}")
        self.pca_dim = check_dim(pca_dim, "pca_dim")
        self.kmeans_iterations = check_dim(kmeans_iterations, "kmeans_iterations")
        self.recluster_every = check_dim(recluster_every, "recluster_every")
        for value, name in ((reseed_empty, "reseed_empty"), (balance, "balance")):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.reseed_empty, self.balance, self.image_size = reseed_empty, balance, image_size
        self.augment = Augment(image_size, scale=crop_scale, flip_p=0.5, jitter=(0.4, 0.4, 0.4, 0.1),
                               jitter_p=jitter_p, gray_p=gray_p)
        self.head = nn.Linear(backbone.out_dim, n_clusters)
        self.register_buffer("pseudo_labels", torch.zeros(n_train, dtype=torch.long))   # (n_train,)
        self.register_buffer("class_weights", torch.ones(n_clusters))                  # (n_clusters,)
        self.train_images = self.train_labels = None
        if train_images is not None:
            self.set_training_data(train_images, train_labels)
        self.steps_done, self.clustered_epoch = 0, -1
        self.cluster_history = []   # one dict of statistics per clustering

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        """As any method's; on fewer training images than the default 100 clusters (a quick
        `pretrain --method deepcluster --n-train 64`), half as many clusters as images."""
        n_train = len(data.train_images)
        n_clusters = hparams.pop("n_clusters", min(N_CLUSTERS, max(2, n_train // 2)))
        return cls(backbone, **{"n_train": n_train, "image_size": data.image_size, "n_clusters": n_clusters,
                                "train_images": data.train_images, "train_labels": data.train_labels, **hparams})

    def set_training_data(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Keep a reference to the training images (uint8, (n_train, C, H, W)) that the method clusters."""
        check_tensor(images, "train_images", ndim=4)
        if images.dtype != torch.uint8 or len(images) != self.n_train:
            raise ValueError(f"train_images must be uint8 of shape ({self.n_train}, C, H, W), "
                             f"got {images.dtype} {tuple(images.shape)}")
        if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (self.n_train,)):
            raise ValueError(f"train_labels must be None or a tensor of shape ({self.n_train},), "
                             f"got {getattr(labels, 'shape', type(labels).__name__)}")
        self.train_images, self.train_labels = images, labels

    def _check_training_images(self, what: str):
        if self.train_images is None:
            raise RuntimeError(f"DeepCluster {what} the training images, but has none: build it with "
                               "DeepCluster.for_data(backbone, data) or call set_training_data(images)")

    @torch.no_grad()
    def recluster(self, generator: torch.Generator, epoch: int | None = None) -> dict:
        """Cluster the features of every training image; the clusters become the pseudo labels
        (``set_pseudo_labels``). Returns (and appends to ``cluster_history``) the clustering's statistics.
        """
        self._check_training_images("clusters")
        device = self.pseudo_labels.device
        # The trainer's bf16 autocast would round k-means' distances: the clustering runs in float32.
        with torch.autocast(device.type, enabled=False):
            features = extract_features(self.backbone, self.train_images, device).to(device)   # (N, D)
            result = cluster_pseudo_labels(features, self.n_clusters, generator, self.pca_dim,
                                           self.kmeans_iterations, self.reseed_empty)
        return self.set_pseudo_labels(result.assignments, generator, epoch,
                                      inertia=result.inertia, empty_splits=result.empty_splits)

    @torch.no_grad()
    def set_pseudo_labels(self, labels: torch.Tensor, generator: torch.Generator, epoch: int | None = None,
                          **extra_stats) -> dict:
        """Make ``labels`` (n_train,), cluster numbers in [0, n_clusters), the pseudo labels from now on.

        Sets the class weights (inverse cluster sizes with ``balance``, else 1), re-initialises the
        head from ``generator`` and appends the labelling's statistics, ``extra_stats`` among them,
        to ``cluster_history`` (and returns them). ``recluster`` calls it with k-means' clusters; with
        an ``epoch``, training takes these labels as that epoch's clustering and does not recluster
        until the next one that ``recluster_every`` names. Called directly, it starts a run from a
        labelling of one's own (lecture 02 starts from one giant cluster to show what ``balance`` prevents).
        """
        check_tensor(labels, "labels", ndim=1)
        if labels.is_floating_point() or labels.dtype == torch.bool or len(labels) != self.n_train:
            raise ValueError(f"labels must hold {self.n_train} integer cluster numbers, "
                             f"got dtype {labels.dtype} and shape {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= self.n_clusters:
            raise ValueError(f"labels must lie in [0, {self.n_clusters}), got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        labels = labels.to(self.pseudo_labels.device, torch.long)
        sizes = torch.bincount(labels, minlength=self.n_clusters).float()
        shares = sizes[sizes > 0] / len(labels)
        stats = {"epoch": epoch, "inertia": None, "empty_splits": None, **extra_stats,
                 "nonempty": int((sizes > 0).sum()), "largest": float(shares.max()),
                 "effective_clusters": float((-(shares * shares.log()).sum()).exp()),
                 "nmi_previous": (normalized_mutual_information(labels, self.pseudo_labels)
                                  if self.cluster_history else None),
                 "purity": (cluster_purity(labels.cpu(), self.train_labels.cpu())
                            if self.train_labels is not None else None)}
        self.pseudo_labels.copy_(labels)
        self.class_weights.copy_(inverse_size_weights(labels, self.n_clusters) if self.balance
                                 else torch.ones(self.n_clusters))
        # In place: the trainer's optimiser holds these parameters.
        self.head.weight.copy_(0.01 * torch.randn(self.head.weight.shape, generator=generator))
        self.head.bias.zero_()
        if epoch is not None:
            self.clustered_epoch = epoch
        self.cluster_history.append(stats)
        return stats

    @torch.no_grad()
    def predicted_clusters(self) -> torch.Tensor:
        """(n_train,) the cluster the network predicts for each training image, unaugmented, in eval mode.

        Sec. 3.3's trivial parametrization shows here: trained without ``balance`` on a labelling
        where one cluster holds most images, the network predicts that cluster for (nearly) all.
        """
        self._check_training_images("predicts clusters for")
        device = self.pseudo_labels.device
        return extract_features(self, self.train_images, device, forward=self.predict).argmax(1)   # (n_train,)

    def training_step(self, images, generator, index):
        steps_per_epoch = max(1, self.n_train // len(images))   # the trainer drops the ragged last batch
        epoch = self.steps_done // steps_per_epoch
        if self.clustered_epoch < 0 or (epoch != self.clustered_epoch and epoch % self.recluster_every == 0):
            self.recluster(generator, epoch)
        inputs, targets = self.make_pseudo_labels(images, generator, index)
        return self.loss(self.predict(inputs), targets)

    def make_pseudo_labels(self, images, generator, index):
        """(N, C, H, W) uint8 images and their (N,) positions in the training set -> (augmented views, clusters)."""
        check_index(index, len(images), self.n_train)
        return self.augment(images, generator), self.pseudo_labels[index]

    def loss(self, predictions, targets):
        """Cross-entropy, each image weighted by its cluster's w_y (1 without ``balance``), averaged."""
        return (F.cross_entropy(predictions, targets, reduction="none") * self.class_weights[targets]).mean()

    def on_step_end(self, progress):
        self.steps_done += 1

    def get_extra_state(self):
        return {"steps_done": self.steps_done, "clustered_epoch": self.clustered_epoch,
                "cluster_history": self.cluster_history}

    def set_extra_state(self, state):
        self.steps_done, self.clustered_epoch = state["steps_done"], state["clustered_epoch"]
        self.cluster_history = list(state["cluster_history"])

    def hparams(self):
        return {"n_train": self.n_train, "image_size": self.image_size, "n_clusters": self.n_clusters,
                "pca_dim": self.pca_dim, "kmeans_iterations": self.kmeans_iterations,
                "recluster_every": self.recluster_every,
                "reseed_empty": self.reseed_empty, "balance": self.balance, "crop_scale": self.augment.scale,
                "jitter_p": self.augment.jitter_p, "gray_p": self.augment.gray_p}
