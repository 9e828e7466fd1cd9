"""Training actually learns: SimCLR features beat the same network at random init."""
import copy

import pytest
import torch

from sslcourse.data.world import load_world
from sslcourse.evaluation import knn_eval
from sslcourse.methods import build_method
from sslcourse.models import build_backbone
from sslcourse.trainer import train


@pytest.mark.slow
def test_simclr_beats_random_init_on_the_world(tmp_path):
    data = load_world(n_train=2000, n_test=500, seed=0, root=tmp_path)
    torch.manual_seed(0)
    method = build_method("simclr", build_backbone("convnet"), image_size=32)
    random_init = copy.deepcopy(method.backbone)
    history = train(method, data, epochs=14, seed=0, knn_every=0, progress=False)  # ~430 steps
    assert history["loss"][-1] < history["loss"][0] - 0.2
    before, after = knn_eval(random_init, data), knn_eval(method.backbone, data)
    assert after > before + 0.06, f"kNN accuracy {before:.3f} at random init, {after:.3f} after SimCLR"
