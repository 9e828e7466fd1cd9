"""Loaders of real data, run on tiny files written in the real on-disk formats.

Nothing here touches the network: download=True meets a patched torchvision download.
"""
import io
import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.utils
from PIL import Image

from sslcourse.data.real import (DatasetNotFoundError, load_cifar10, load_image_folder, load_mnist,
                                 load_npz, load_stl10)

rng = np.random.default_rng(0)
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def no_network(monkeypatch):
    """Every torchvision download fails as it would offline; records the URLs tried."""
    tried = []

    def fail(url, *args, **kwargs):
        tried.append(url)
        raise URLError("no network in tests")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fail)
    return tried


# --- CIFAR-10: Python 2 pickles ---------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 ``str``, as in the real CIFAR files (pickled by Python 2).

    Those load as ``str`` under encoding="latin1" (torchvision) and as ``bytes`` under
    encoding="bytes" (the recipe on the CIFAR page, hence its b'data' keys).
    """
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _py2_pickle(obj, path):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def write_cifar10(root, n=4):
    """Real layout; returns {file: (images (n, 3, 32, 32), labels)}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        # Rows are 3072 bytes: the red plane, then green, then blue, each row-major.
        _py2_pickle({b"batch_label": name.encode(), b"labels": labels, b"data": images.reshape(n, 3072),
                     b"filenames": [f"{i}.png".encode() for i in range(n)]}, folder / name)
        written[name] = images, labels
    _py2_pickle({b"label_names": [s.encode() for s in NAMES], b"num_cases_per_batch": n,
                 b"num_vis": 3072}, folder / "batches.meta")
    return written


def test_cifar_fixture_has_the_real_keys(tmp_path):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert {b"data", b"labels"} <= pickle.load(f, encoding="bytes").keys()


def test_cifar10(tmp_path):
    written = write_cifar10(tmp_path)
    ds = load_cifar10(tmp_path)
    assert ds.name == "cifar10" and ds.classes == NAMES
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (4, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.train_images.is_contiguous()
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(ds.train_images.numpy(), train)
    assert np.array_equal(ds.test_images.numpy(), written["test_batch"][0])
    assert ds.train_labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.test_labels.tolist() == written["test_batch"][1]


def test_cifar10_missing_files_say_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert "--dataset world" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_cifar10_names_only_the_missing_file(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing test_batch in"):
        load_cifar10(tmp_path)


# --- STL-10: column-major binaries -------------------------------------------------------

def _stl_bin(images, path):
    # Each image is 3 planes of 96x96 stored column by column (MATLAB order).
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes())


def write_stl10(root):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", 3), ("test", 2), ("unlabeled", 4)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        images[0, 0, 0, :] = 255        # first image: a white top row in the red plane
        images[0, 0, 1:, :] = 0
        _stl_bin(images, folder / f"{split}_X.bin")
        labels = rng.integers(0, 10, n)
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())  # 1-based
        out[split] = images, labels
    (folder / "class_names.txt").write_text("\n".join(NAMES) + "\n")
    return out


def test_stl10(tmp_path):
    written = write_stl10(tmp_path)
    ds = load_stl10(tmp_path)
    assert ds.name == "stl10" and ds.classes == NAMES and ds.extras == {}
    assert ds.train_images.shape == (3, 3, 96, 96) and ds.test_images.shape == (2, 3, 96, 96)
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.is_contiguous()
    red = ds.train_images[0, 0]
    assert (red[0] == 255).all() and (red[1:] == 0).all()    # a row, not a column: H and W not swapped
    for split in ("train", "test"):
        images, labels = written[split]
        assert np.array_equal(getattr(ds, f"{split}_images").numpy(), images)
        assert getattr(ds, f"{split}_labels").tolist() == labels.tolist()   # 0-based
        assert getattr(ds, f"{split}_labels").dtype == torch.int64


def test_stl10_unlabeled(tmp_path):
    written = write_stl10(tmp_path)
    unlabeled = load_stl10(tmp_path, unlabeled=True).extras["unlabeled_images"]
    assert unlabeled.dtype == torch.uint8 and unlabeled.shape == (4, 3, 96, 96)
    assert np.array_equal(unlabeled.numpy(), written["unlabeled"][0])


def test_stl10_missing_files_say_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_stl10(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "stl10_binary") in msg and "train_X.bin" in msg and "--dataset world" in msg


# --- MNIST: idx files --------------------------------------------------------------------

def write_mnist(root):
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        # idx: a big-endian magic (0x08 = unsigned byte, then the rank), the sizes, the data.
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())
        out[prefix] = images, labels
    return out


def test_mnist(tmp_path):
    written = write_mnist(tmp_path)
    ds = load_mnist(tmp_path)
    assert ds.name == "mnist" and len(ds.classes) == 10 and ds.channels == 1
    assert ds.train_images.shape == (5, 1, 28, 28) and ds.test_images.shape == (3, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert np.array_equal(ds.train_images[:, 0].numpy(), written["train"][0])
    assert np.array_equal(ds.test_images[:, 0].numpy(), written["t10k"][0])
    assert ds.train_labels.tolist() == written["train"][1].tolist()


def test_mnist_missing_files_say_where(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "--dataset world" in msg


# --- download=True offline ---------------------------------------------------------------

@pytest.mark.parametrize("load", [load_cifar10, load_stl10, load_mnist])
def test_failed_download_gives_the_same_clear_error(tmp_path, no_network, load):
    with pytest.raises(DatasetNotFoundError) as err:
        load(tmp_path, download=True)
    msg = str(err.value)
    assert no_network, "a download should have been attempted"
    assert "download failed" in msg and "no network in tests" in msg
    assert str(tmp_path) in msg and "--dataset world" in msg


def test_download_is_skipped_when_files_are_there(tmp_path, no_network):
    write_cifar10(tmp_path)
    write_mnist(tmp_path)
    assert len(load_cifar10(tmp_path, download=True).train_images) == 20
    assert len(load_mnist(tmp_path, download=True).train_images) == 5
    assert no_network == []


# --- your own images: .npz ---------------------------------------------------------------

def test_npz_grayscale_holds_out_a_seeded_test_split(tmp_path):
    images = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "digits.npz", images=images)
    ds = load_npz(tmp_path / "digits.npz")
    assert ds.name == "digits" and ds.channels == 1 and ds.classes == []
    assert ds.train_labels is None and ds.test_labels is None
    assert ds.train_images.shape == (8, 1, 8, 8) and ds.test_images.shape == (2, 1, 8, 8)
    test_idx = ds.extras["test_indices"]
    assert np.array_equal(ds.test_images[:, 0].numpy(), images[test_idx.numpy()])
    assert torch.equal(load_npz(tmp_path / "digits.npz").extras["test_indices"], test_idx)   # same split
    assert not torch.equal(load_npz(tmp_path / "digits.npz", seed=1).extras["test_indices"], test_idx)


def test_npz_rgb_with_labels_and_test_split(tmp_path):
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    test_images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", images=images, labels=np.array([3, 7, 3, 7, 7, 3], np.int32),
             test_images=test_images, test_labels=np.array([7, 3]))
    ds = load_npz(tmp_path / "mine.npz")
    assert ds.train_images.shape == (6, 3, 16, 16) and ds.test_images.shape == (2, 3, 16, 16)
    assert np.array_equal(ds.train_images.permute(0, 2, 3, 1).numpy(), images)
    assert ds.classes == ["3", "7"]                           # labels become indices into classes
    assert ds.train_labels.tolist() == [0, 1, 0, 1, 1, 0] and ds.test_labels.tolist() == [1, 0]
    assert ds.train_labels.dtype == torch.int64 and "test_indices" not in ds.extras


def test_npz_string_labels_held_out(tmp_path):
    labels = np.array(["dog", "cat", "dog", "cat", "bird"])
    np.savez(tmp_path / "pets.npz", images=np.zeros((5, 4, 4, 1), np.uint8), labels=labels)
    ds = load_npz(tmp_path / "pets.npz")
    assert ds.classes == ["bird", "cat", "dog"] and ds.test_images.shape == (1, 1, 4, 4)
    names = [ds.classes[i] for i in ds.train_labels.tolist() + ds.test_labels.tolist()]
    order = np.concatenate([np.setdiff1d(np.arange(5), ds.extras["test_indices"]), ds.extras["test_indices"]])
    assert names == labels[order].tolist()


@pytest.mark.parametrize("arrays, message", [
    ({"labels": np.zeros(4, np.int64)}, "must hold 'images'"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "label": np.zeros(4)}, "got keys \\['images', 'label'\\]"),
    ({"images": np.zeros((4, 8, 8), np.float32)}, "images must be uint8 .* got float32"),
    ({"images": np.zeros((4, 8, 8), np.int64)}, "x.astype\\(np.uint8\\)"),
    ({"images": np.zeros((4, 8), np.uint8)}, "\\(N, H, W\\) or \\(N, H, W, C\\) .* got \\(4, 8\\)"),
    ({"images": np.zeros((4, 3, 8, 8), np.uint8)}, "channels first"),
    ({"images": np.zeros((4, 8, 6), np.uint8)}, "square .* H=8, W=6"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(3, np.int64)}, "labels must have shape \\(4,\\)"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4)}, "integers or strings, got float64"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "test_labels": np.zeros(4, np.int64)}, "without 'test_images'"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(4, np.int64),
      "test_images": np.zeros((2, 8, 8), np.uint8)}, "both 'labels' and 'test_labels'"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "test_images": np.zeros((2, 8, 8, 3), np.uint8)},
     "match images in \\(C, H, W\\) = \\(1, 8, 8\\), got \\(3, 8, 8\\)"),
    ({"images": np.zeros((1, 8, 8), np.uint8)}, "at least 2 images"),
])
def test_npz_bad_inputs_say_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_npz_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="np.savez.*--dataset world"):
        load_npz(tmp_path / "nothing.npz")


# --- your own images: a folder -----------------------------------------------------------

def _png(path, color, size=(8, 8), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_folder_with_class_subfolders(tmp_path):
    for i in range(5):
        _png(tmp_path / "pets" / "cat" / f"{i}.png", (255, 0, 0))
        _png(tmp_path / "pets" / "dog" / f"{i}.jpg", (0, 0, 255))
    (tmp_path / "pets" / ".ipynb_checkpoints").mkdir()       # not a class
    ds = load_image_folder(tmp_path / "pets")
    assert ds.name == "pets" and ds.classes == ["cat", "dog"]
    assert ds.train_images.shape == (8, 3, 8, 8) and ds.test_images.shape == (2, 3, 8, 8)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        red = images[:, 0].float().mean(dim=(1, 2)) > 200
        assert torch.equal(red, labels == 0)                  # cats are red, dogs blue (JPEG: near)
    assert len(ds.extras["test_paths"]) == 2


def test_folder_with_train_and_test(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls, color in (("a", 40), ("b", 200)):
            for i in range(n):
                _png(tmp_path / split / cls / f"{i}.png", color, mode="L")
    _png(tmp_path / "test" / "b" / "2.png", 200, mode="L")   # test/ may have fewer or more per class
    ds = load_image_folder(tmp_path, image_size=4)
    assert ds.classes == ["a", "b"] and ds.channels == 1     # all grayscale: C = 1
    assert ds.train_images.shape == (6, 1, 4, 4) and ds.test_images.shape == (5, 1, 4, 4)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_labels.tolist() == [0, 0, 1, 1, 1]
    assert (ds.test_images[ds.test_labels == 1] == 200).all()


def test_flat_folder_is_unlabeled_and_center_cropped(tmp_path):
    _png(tmp_path / "a.png", (10, 20, 30))                       # 8x8: sets image_size
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, 4:12] = 255                                           # white center, black sides
    Image.fromarray(wide).save(tmp_path / "b.png")
    for i in range(3):
        _png(tmp_path / f"c{i}.png", (0, 255, 0), size=(32, 32))  # larger: resized down
    ds = load_image_folder(tmp_path, test_fraction=0.4)
    assert ds.train_labels is None and ds.test_labels is None and ds.classes == []
    assert ds.train_images.shape == (3, 3, 8, 8) and ds.test_images.shape == (2, 3, 8, 8)
    train_paths = [p for p in sorted(map(str, tmp_path.glob("*.png"))) if p not in ds.extras["test_paths"]]
    by_name = dict(zip(train_paths + ds.extras["test_paths"], torch.cat([ds.train_images, ds.test_images])))
    assert (by_name[str(tmp_path / "b.png")] == 255).all()       # the black sides were cropped off
    assert by_name[str(tmp_path / "a.png")][:, 0, 0].tolist() == [10, 20, 30]
    assert by_name[str(tmp_path / "c0.png")][:, 0, 0].tolist() == [0, 255, 0]


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="--dataset world"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no images"):
        load_image_folder(tmp_path / "empty")
    _png(tmp_path / "mixed" / "cat" / "0.png", 0)
    _png(tmp_path / "mixed" / "loose.png", 0)
    with pytest.raises(ValueError, match="both images and subfolders"):
        load_image_folder(tmp_path / "mixed")
    _png(tmp_path / "broken" / "0.png", 0)
    (tmp_path / "broken" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*1.png"):
        load_image_folder(tmp_path / "broken")
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tmp_path / "broken", image_size=0)
