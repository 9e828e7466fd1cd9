import copy
import json
import os

import pytest
import torch

from sslcourse.checkpoint import load_checkpoint
from sslcourse.cli import main
from sslcourse.data.world import load_world
from sslcourse.evaluation import knn_eval
from sslcourse.trainer import train


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """512 training and 256 test images of the world, generated once per test session."""
    return load_world(n_train=512, n_test=256, seed=0, root=tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _share_the_cores():
    # `make test` runs one pytest-xdist worker per core: each gets its share of the cores, since
    # oversubscribed threads spin and crawl (a single pytest process keeps two threads, as before).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers) if workers else 2)


@pytest.fixture
def cli_pretrain(tmp_path):
    """``run(method, n_train, n_test, dataset="world") -> checkpoint state``: ``python -m sslcourse pretrain``
    in process, one epoch at batch 32 on the CPU, checked to exit 0 and to write its results (naming the
    method and the data set) and checkpoint; the data lie under ``tmp_path / "data"``."""
    def run(method, n_train, n_test, dataset="world"):
        out = tmp_path / "run"
        assert main(["pretrain", "--method", method, "--dataset", dataset, "--epochs", "1", "--batch-size", "32",
                     "--n-train", str(n_train), "--n-test", str(n_test), "--device", "cpu", "--out", str(out),
                     "--no-progress", "--data-dir", str(tmp_path / "data")]) == 0
        results = json.loads((out / "results.json").read_text())
        assert (results["method"], results["dataset"]) == (method, dataset)
        state = load_checkpoint(out / "checkpoint.pt")
        assert state["method"] == method
        return state
    return run


@pytest.fixture
def knn_before_after():
    """``run(method, data, **train_settings) -> (history, kNN at random init, kNN after training)``.

    The learning tests' common core: keep the random-init backbone, train with the one trainer
    (seed 0, no kNN monitor, no progress bar), and measure both with the weighted kNN.
    """
    def run(method, data, **train_settings):
        random_init = copy.deepcopy(method.backbone)
        history = train(method, data, seed=0, knn_every=0, progress=False, **train_settings)
        return history, knn_eval(random_init, data), knn_eval(method.backbone, data)
    return run
