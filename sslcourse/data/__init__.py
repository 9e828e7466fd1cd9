"""Data sets as plain uint8 tensors, ready for on-device augmentation.

Every loader returns an :class:`ImageDataset`: ``train_images`` and ``test_images`` are
``uint8`` tensors of shape (N, C, H, W) with C in {1, 3}; labels are ``int64`` (N,)
or ``None`` where a data set has none. Images stay uint8 until a batch reaches the
device: 10,000 32x32 RGB images are 30 MB, and conversion costs nothing there.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch

DATA_ROOT = Path(__file__).resolve().parents[2] / "data"


@dataclass
class ImageDataset:
    name: str
    train_images: torch.Tensor            # (N, C, H, W) uint8
    train_labels: torch.Tensor | None     # (N,) int64
    test_images: torch.Tensor             # (M, C, H, W) uint8
    test_labels: torch.Tensor | None      # (M,) int64
    classes: list[str]
    extras: dict = field(default_factory=dict)  # free labels (world), unlabeled split (STL-10), ...

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
                raise ValueError(
                    f"{self.name}: {split}_images must be uint8 of shape (N, C, H, W) with C in (1, 3), "
                    f"got {images.dtype} {tuple(images.shape)}")
            if labels is not None and labels.shape != (images.shape[0],):
                raise ValueError(f"{self.name}: {split}_labels must have shape ({images.shape[0]},), "
                                 f"got {tuple(labels.shape)}")

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    def __repr__(self):
        return (f"ImageDataset({self.name!r}, train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, classes={len(self.classes)})")


DATASETS = {
    "world": "the procedural world: 10 shapes under colour, texture, pose and clutter (offline, default)",
    "world-shortcut": "the world with colour correlated with class, to show shortcut learning",
    "world-upright": "the world with every shape upright (angle 0), so that rotation can be predicted",
    "cifar10": "CIFAR-10 through torchvision (files under data/, or --download where the network allows)",
    "stl10": "STL-10 through torchvision, 96x96",
    "mnist": "MNIST through torchvision, 1x28x28",
    "videos": "short videos of the world (8 frames, exact optical flow); images are first frames (offline)",
    "world-domains": "the world with up to 3 objects per image, clean and in a shifted rendering, with free "
                     "labels (mask, depth order, count): the data of free_labels (offline)",
}


def load_dataset(name: str, root=DATA_ROOT, seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None, download: bool = False) -> ImageDataset:
    """Load a data set by name (see ``DATASETS``) or from a path: an ``.npz`` file or a folder of images.

    ``n_train`` and ``n_test`` size the world, its videos and its two renderings, and cut the
    others (first images).
    """
    from pathlib import Path as _Path

    from . import domains, real, video, world

    sizes = {k: v for k, v in dict(n_train=n_train, n_test=n_test).items() if v is not None}
    if name == "videos":
        return video.load_videos(seed=seed, root=root, **sizes)
    if name == "world-domains":
        return domains.load_domains(seed=seed, root=root, **sizes)
    variants = {"world": {}, "world-shortcut": {"colour_shortcut": 0.9}, "world-upright": {"max_angle": 0.0}}
    if name in variants:
        data = world.load_world(seed=seed, root=root, **sizes, **variants[name])
        data.name = name
        return data
    loaders = {"cifar10": real.load_cifar10, "stl10": real.load_stl10, "mnist": real.load_mnist}
    if name in loaders:
        data = loaders[name](root=root, download=download)
    elif _Path(name).suffix == ".npz" and _Path(name).is_file():
        data = real.load_npz(name)
    elif _Path(name).is_dir():
        data = real.load_image_folder(name)
    else:
        raise ValueError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}, "
                         f"or give the path of an existing .npz file or folder of images")
    return subset(data, n_train, n_test)


def subset(data: ImageDataset, n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
    """The first ``n_train`` training and ``n_test`` test images (all when None)."""
    cut = lambda x, n: x if x is None or n is None else x[:n]  # noqa: E731
    return ImageDataset(data.name, cut(data.train_images, n_train), cut(data.train_labels, n_train),
                        cut(data.test_images, n_test), cut(data.test_labels, n_test), data.classes, data.extras)
