"""Training actually learns: SimCLR features beat the same network at random init."""

import pytest
import torch

from sslcourse.data.world import load_world
from sslcourse.methods import build_method
from sslcourse.models import build_backbone


@pytest.mark.slow
def test_simclr_beats_random_init_on_the_world(tmp_path, knn_before_after):
    data = load_world(n_train=2000, n_test=500, seed=0, root=tmp_path)
    torch.manual_seed(0)
    method = build_method("simclr", build_backbone("convnet"), image_size=32)
    history, before, after = knn_before_after(method, data, epochs=14)  # ~430 steps
    assert history["loss"][-1] < history["loss"][0] - 0.2
    assert after > before + 0.06, f"kNN accuracy {before:.3f} at random init, {after:.3f} after SimCLR"
