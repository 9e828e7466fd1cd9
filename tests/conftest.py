import pytest
import torch

from sslcourse.data.world import load_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """512 training and 256 test images of the world, generated once per test session."""
    return load_world(n_train=512, n_test=256, seed=0, root=tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)
