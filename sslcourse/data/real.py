"""Real images from disk: CIFAR-10, STL-10, MNIST, and your own (an ``.npz`` or a folder).

Every loader returns an :class:`ImageDataset` of uint8 (N, C, H, W) tensors. Nothing here
needs a network: put the files where the error message says, or pass ``download=True``
where there is one. Without either, ``--dataset world`` is the built-in offline data set.

torchvision parses the standard formats (pickled CIFAR batches, STL-10's column-major
binaries, MNIST's idx files), so the real files are read by the field's own code. We take
its whole ``.data`` arrays and convert them once, never image by image through
``__getitem__``.

The md5 check. torchvision's CIFAR10 and STL10 compare the md5 of every extracted file
with the official one on each load. Two small subclasses below set those per-file
checksums to ``None``; torchvision's own ``check_integrity(path, None)`` then checks only
that each file exists. Why:

- we check presence first ourselves, so a missing file gets a message that names it and
  says where it goes, instead of "Dataset not found or corrupted";
- a corrupt or truncated file still fails loudly, when it is parsed (pickle or reshape error);
- hashing on every load reads 180 MB for CIFAR-10 and 3 GB for STL-10 (the unlabeled
  file is hashed even to load the 5,000 training images);
- tests write tiny files in the real formats and run the real parser on them.

A download is still verified: ``download=True`` runs torchvision's ``download()``, which
keeps the md5 of the archive. MNIST needs no change: torchvision checks only that its
raw files exist.
"""
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension, make_dataset

from . import DATA_ROOT, ImageDataset

WORLD_HINT = "or use --dataset world, the built-in offline data set"


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not on disk (and could not be downloaded)."""


def _presence_only(files):
    return [[name, None] for name, _md5 in files]


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10, checking that files exist rather than their md5 (see above)."""
    train_list = _presence_only(datasets.CIFAR10.train_list)
    test_list = _presence_only(datasets.CIFAR10.test_list)
    meta = {**datasets.CIFAR10.meta, "md5": None}


class _STL10(datasets.STL10):
    """torchvision's STL10, checking that files exist rather than their md5 (see above)."""
    train_list = _presence_only(datasets.STL10.train_list)
    test_list = _presence_only(datasets.STL10.test_list)


def _ensure_files(title: str, folder: Path, files: list[str], how: str, download: bool, fetch) -> None:
    """Raise DatasetNotFoundError naming the missing files, after a download if one is allowed."""
    def missing():
        return [f for f in files if not (folder / f).is_file()]

    failure = ""
    if missing() and download:
        try:
            fetch()
        except Exception as err:  # no network, a proxy, a bad checksum: the advice is the same
            failure = f" The download failed: {type(err).__name__}: {str(err).strip()}."
    if missing():
        raise DatasetNotFoundError(
            f"{title} not found: missing {', '.join(missing())} in {folder}/.{failure}\n"
            f"{how}\n"
            f"Or pass download=True (--download) where there is a network; {WORLD_HINT}.")


def _labels(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.int64)


def load_cifar10(root=DATA_ROOT, download: bool = False) -> ImageDataset:
    """CIFAR-10: 50,000 + 10,000 RGB images of 32x32, 10 classes (names from batches.meta)."""
    root = Path(root).expanduser()
    folder = root / _CIFAR10.base_folder
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    how = (f"Download {_CIFAR10.url} and extract it in {root}/, so that {folder}/ holds "
           f"data_batch_1..5, test_batch and batches.meta.")
    _ensure_files("CIFAR-10", folder, files, how, download, lambda: _CIFAR10(root, download=True))
    train, test = _CIFAR10(root, train=True), _CIFAR10(root, train=False)
    # torchvision's .data is (N, H, W, C), a transposed view of the file's (N, C, H, W)
    # rows: permuting back is contiguous again, so no copy is made.
    return ImageDataset("cifar10",
                        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(), _labels(train.targets),
                        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(), _labels(test.targets),
                        list(train.classes))


def load_stl10(root=DATA_ROOT, download: bool = False, unlabeled: bool = False) -> ImageDataset:
    """STL-10: 5,000 + 8,000 labelled RGB images of 96x96, 10 classes.

    ``unlabeled=True`` also loads the 100,000 unlabeled images into
    ``extras["unlabeled_images"]`` (2.8 GB as uint8; about twice that while loading).
    """
    root = Path(root).expanduser()
    folder = root / _STL10.base_folder
    files = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt"]
    how = (f"Download {_STL10.url} and extract it in {root}/, so that {folder}/ holds "
           f"{', '.join(files)}.")
    _ensure_files("STL-10", folder, files, how, download, lambda: _STL10(root, download=True))

    def images(ds):
        # The files are column-major; torchvision's .data is an (N, C, H, W) view with
        # H and W swapped back, so .contiguous() makes the one copy.
        return torch.from_numpy(ds.data).contiguous()

    train, test = _STL10(root, split="train"), _STL10(root, split="test")
    extras = {"unlabeled_images": images(_STL10(root, split="unlabeled"))} if unlabeled else {}
    return ImageDataset("stl10", images(train), _labels(train.labels), images(test), _labels(test.labels),
                        list(train.classes), extras)


def load_mnist(root=DATA_ROOT, download: bool = False) -> ImageDataset:
    """MNIST: 60,000 + 10,000 grayscale digits of 28x28 (C = 1)."""
    root = Path(root).expanduser()
    folder = root / "MNIST" / "raw"
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    how = (f"Download the four .gz files from {datasets.MNIST.mirrors[0]} and gunzip them into {folder}/: "
           f"{', '.join(files)}.")
    _ensure_files("MNIST", folder, files, how, download, lambda: datasets.MNIST(root, download=True))
    train, test = datasets.MNIST(root, train=True), datasets.MNIST(root, train=False)
    return ImageDataset("mnist", train.data.unsqueeze(1), train.targets.long(),
                        test.data.unsqueeze(1), test.targets.long(), list(train.classes))


# --- your own images -------------------------------------------------------------------

def _hold_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: the last ``fraction`` of a permutation seeded with ``seed``.

    The same file and seed always give the same split, so evaluations compare.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {fraction!r}")
    n_test = max(1, round(n * fraction))
    if n_test >= n:
        raise ValueError(f"need at least 2 images to hold out a test split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:-n_test]), np.sort(order[-n_test:])   # sorted: keep the file's order


def _encode(*label_arrays) -> tuple[list[str], list[torch.Tensor]]:
    """Classes are the sorted unique labels, as strings; labels become indices into them.

    Any integers or strings work as labels: {3, 7} become classes ["3", "7"], labels 0 and 1.
    """
    values = np.unique(np.concatenate(label_arrays))   # numeric order for ints, alphabetical for strings
    return [str(v) for v in values], [torch.from_numpy(np.searchsorted(values, a).astype(np.int64))
                                      for a in label_arrays]


def _check_npz_images(x: np.ndarray, key: str) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) tensor, or a ValueError that says what to do."""
    if x.dtype != np.uint8:
        raise ValueError(
            f"{key} must be uint8 (0..255), got {x.dtype}: convert with "
            f"(x * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1], "
            f"or x.astype(np.uint8) for integers already in 0..255")
    if x.ndim == 3:
        x = x[..., None]                                  # grayscale: C = 1
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        hint = " (channels first? use x.transpose(0, 2, 3, 1))" if x.ndim == 4 and x.shape[1] in (1, 3) else ""
        raise ValueError(f"{key} must have shape (N, H, W) or (N, H, W, C) with C in (1, 3), "
                         f"got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{key} holds no images")
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"{key} must be square (H == W), got H={x.shape[1]}, W={x.shape[2]}: "
                         f"crop them, or save them as files and use load_image_folder, which center-crops")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _check_npz_labels(y: np.ndarray, key: str, n: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{key} must have shape ({n},), one label per image, got {tuple(y.shape)}")
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if y.dtype.kind in "US":
        return y.astype(str)
    raise ValueError(f"{key} must be integers or strings, got {y.dtype}")


def load_npz(path, test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """Your own images from an ``.npz`` file, as written by ``np.savez(path, images=..., labels=...)``.

    Keys: ``images``, (N, H, W) or (N, H, W, C) uint8 with C in {1, 3} and H == W; optional
    ``labels`` (N,), integers or strings; optional ``test_images`` and ``test_labels``.
    Without ``test_images``, ``test_fraction`` of the images is held out as the test split
    (see :func:`_hold_out`); ``extras["test_indices"]`` says which rows of ``images``.
    Classes are the sorted unique labels as strings ([] without labels).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(f"no file {path}: save your images with "
                                   f"np.savez({str(path)!r}, images=..., labels=...); {WORLD_HINT}")
    allowed = {"images", "labels", "test_images", "test_labels"}
    npz = np.load(path, allow_pickle=False)   # no pickles: loading a file then runs no code
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array (.npy); save with np.savez(path, images=...)")
    with npz:
        keys = set(npz.files)
        if "images" not in keys or keys - allowed:
            raise ValueError(f"{path} must hold 'images' and optionally 'labels', 'test_images', "
                             f"'test_labels'; got keys {sorted(keys)}")
        try:
            arrays = {k: npz[k] for k in keys}
        except ValueError as err:   # object arrays need pickle, e.g. ragged lists of images
            raise ValueError(f"{path} holds an object array; save plain uint8 arrays of one shape") from err

    if "test_labels" in keys and "test_images" not in keys:
        raise ValueError(f"{path}: 'test_labels' without 'test_images'")
    if "test_images" in keys and ("labels" in keys) != ("test_labels" in keys):
        raise ValueError(f"{path}: give both 'labels' and 'test_labels', or neither")

    images = _check_npz_images(arrays["images"], "images")
    test_labels = None
    labels = _check_npz_labels(arrays["labels"], "labels", len(images)) if "labels" in keys else None
    extras = {}
    if "test_images" in keys:
        test_images = _check_npz_images(arrays["test_images"], "test_images")
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(f"test_images must match images in (C, H, W) = {tuple(images.shape[1:])}, "
                             f"got {tuple(test_images.shape[1:])}")
        if labels is not None:
            test_labels = _check_npz_labels(arrays["test_labels"], "test_labels", len(test_images))
        if labels is not None and labels.dtype.kind != test_labels.dtype.kind:
            raise ValueError(f"labels and test_labels must both be integers or both strings, "
                             f"got {arrays['labels'].dtype} and {arrays['test_labels'].dtype}")
    else:
        train_idx, test_idx = _hold_out(len(images), test_fraction, seed)
        extras["test_indices"] = torch.from_numpy(test_idx)
        images, test_images = images[train_idx], images[test_idx]
        if labels is not None:
            labels, test_labels = labels[train_idx], labels[test_idx]
    classes, (train_y, test_y) = _encode(labels, test_labels) if labels is not None else ([], (None, None))
    return ImageDataset(path.stem, images, train_y, test_images, test_y, classes, extras)


def _is_image(path: str) -> bool:
    # Dot files are skipped: macOS writes "._photo.jpg" metadata files beside the images.
    return has_file_allowed_extension(path, IMG_EXTENSIONS) and not Path(path).name.startswith(".")


def _scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[int] | None, list[str]]:
    """Image paths, labels and classes: from class subfolders, or loose images (labels None).

    ``classes`` (from train/) fixes the label of each test/ subfolder, even where test/
    lacks a class. Dot folders (.ipynb_checkpoints, ...) are not classes.
    """
    subdirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = sorted(str(p) for p in folder.iterdir() if p.is_file() and _is_image(str(p)))
    if subdirs and loose:
        raise ValueError(f"{folder} holds both images and subfolders ({', '.join(subdirs)}): "
                         f"put every image in a class subfolder, or use no subfolders")
    if not subdirs:
        return loose, None, []
    if classes is not None and set(subdirs) - set(classes):
        raise ValueError(f"{folder} has class folders not in train/: {sorted(set(subdirs) - set(classes))}")
    classes = classes or subdirs
    samples = make_dataset(str(folder), {c: i for i, c in enumerate(classes)},
                           is_valid_file=_is_image, allow_empty=True)
    return [p for p, _ in samples], [y for _, y in samples], classes


def _read_image(path: str) -> tuple[Image.Image, bool]:
    """The image as RGB, and whether it was grayscale; a ValueError names an unreadable file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB"), im.mode in ("1", "L", "LA")
    except OSError as err:   # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {path}: {err}") from err


def _read_images(paths: list[str], image_size: int | None) -> torch.Tensor:
    """Square (N, C, H, W) uint8: shorter side resized to image_size, then center-cropped."""
    if image_size is None:
        image_size = min(_read_image(paths[0])[0].size)
    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    all_gray = True
    for i, path in enumerate(paths):
        im, gray = _read_image(path)
        all_gray &= gray
        out[i] = np.asarray(TF.center_crop(TF.resize(im, image_size), image_size))
    if all_gray:
        out = out[..., :1]   # the three channels are equal: keep one
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))


def load_image_folder(path, image_size: int | None = None, test_fraction: float = 0.2,
                      seed: int = 0) -> ImageDataset:
    """Your own image files (jpg, png, ...), in one of the layouts of torchvision's ImageFolder.

        path/cat/1.jpg, path/dog/2.png, ...     one subfolder per class: classes are their sorted names
        path/1.jpg, path/2.png, ...             no subfolders: unlabeled (labels None, classes [])
        path/train/..., path/test/...           either layout inside each: a given test split

    Without train/ and test/, ``test_fraction`` of the images is held out as in :func:`load_npz`.
    Every image's shorter side is resized to ``image_size``, then its center cropped to
    ``image_size`` x ``image_size`` (torchvision's Resize + CenterCrop; square images are only
    resized). Default ``image_size``: the shorter side of the first image, in sorted path order.
    Images load grayscale (C = 1) when all are grayscale, else RGB (alpha dropped).
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(f"no folder {folder}: put your images there, one subfolder per class "
                                   f"(or none for unlabeled images); {WORLD_HINT}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")

    split_given = (folder / "train").is_dir() and (folder / "test").is_dir()
    if split_given:
        paths, labels, classes = _scan(folder / "train")
        test_paths, test_labels, _ = _scan(folder / "test", classes or None)
        if (labels is None) != (test_labels is None):
            raise ValueError(f"{folder}/train and {folder}/test must both have class subfolders, or neither")
    else:
        paths, labels, classes = _scan(folder)
        test_paths, test_labels = [], []
    for where, found in ([(folder / "train", paths), (folder / "test", test_paths)] if split_given
                         else [(folder, paths)]):
        if not found:
            raise DatasetNotFoundError(f"no images ({' '.join(IMG_EXTENSIONS)}) in {where}; {WORLD_HINT}")

    if split_given:
        train_idx, test_idx = np.arange(len(paths)), np.arange(len(paths), len(paths) + len(test_paths))
        extras = {}
    else:
        train_idx, test_idx = _hold_out(len(paths), test_fraction, seed)
        extras = {"test_paths": [paths[i] for i in test_idx]}
    # One read for both splits, so that they share image size and channels.
    images = _read_images(paths + test_paths, image_size)
    labels = None if labels is None else torch.tensor(labels + test_labels, dtype=torch.int64)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return ImageDataset(folder.name, images[train_idx], None if labels is None else labels[train_idx],
                        images[test_idx], None if labels is None else labels[test_idx], classes, extras)
