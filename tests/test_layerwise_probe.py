"""The layer-wise probe: one accuracy per block, features pooled to a bounded grid, and probes that can fail."""
import copy
import dataclasses

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")

import sslcourse.evaluation as evaluation   # noqa: E402
from sslcourse.data.world import load_world   # noqa: E402
from sslcourse.evaluation import extract_features, knn_accuracy, layerwise_probe, linear_probe   # noqa: E402
from sslcourse.experiments import Supervised   # noqa: E402
from sslcourse.models import build_backbone   # noqa: E402
from sslcourse.plots import plot_layerwise   # noqa: E402
from sslcourse.trainer import train   # noqa: E402
from sslcourse.transforms import to_float   # noqa: E402


def backbone(name="convnet", seed=0):
    torch.manual_seed(seed)
    return build_backbone(name)


@pytest.fixture
def probed_features(monkeypatch):
    """Run layerwise_probe with its probes spied on: returns the features each block's probe received."""
    seen = []

    def spy(probe):
        def record(train_f, train_y, test_f, test_y, *args):
            seen.append((train_f, test_f))
            return probe(train_f, train_y, test_f, test_y, *args)
        return record
    monkeypatch.setattr(evaluation, "linear_probe", spy(linear_probe))
    monkeypatch.setattr(evaluation, "knn_accuracy", spy(knn_accuracy))
    return seen


def test_one_accuracy_per_convnet_block_on_features_of_bounded_size(small_world, probed_features):
    net = backbone()
    result = layerwise_probe(net, small_world)
    assert list(result) == ["block1", "block2", "block3", "block4"]
    assert all(0.0 <= acc <= 1.0 for acc in result.values())
    # 32 px: maps of 16 x 16, 8 x 8, 4 x 4, 2 x 2 pooled to the largest grid with C g^2 <= 2048
    assert [train_f.shape[1] for train_f, _ in probed_features] == [16 * 11 * 11, 32 * 8 * 8, 64 * 4 * 4, 128 * 2 * 2]
    assert [len(train_f) for train_f, _ in probed_features] == [512] * 4
    assert [len(test_f) for _, test_f in probed_features] == [256] * 4
    with torch.no_grad():
        first = F.adaptive_avg_pool2d(net.eval().blocks[0](to_float(small_world.test_images)), 11).flatten(1)
    torch.testing.assert_close(probed_features[0][1], first)


def test_one_accuracy_per_resnet18_block(probed_features, tmp_path):
    data = load_world(n_train=96, n_test=48, seed=0, image_size=16, root=tmp_path)
    result = layerwise_probe(backbone("resnet18"), data, probe="knn", k=20)
    assert list(result) == ["block1", "block2", "block3", "block4", "block5"]
    # 16 px: the stem and layer1 keep 16 x 16, then 8 x 8, 4 x 4, 2 x 2
    assert [train_f.shape[1] for train_f, _ in probed_features] == [64 * 25, 64 * 25, 128 * 16, 256 * 4, 512 * 4]


@pytest.mark.parametrize("probe", ["linear", "knn"])
def test_the_last_block_pooled_to_one_cell_is_the_backbones_own_probe(small_world, probed_features, probe):
    net = backbone()
    net.train()
    state = copy.deepcopy(net.state_dict())
    result = layerwise_probe(net, small_world, probe=probe, max_features=128)   # 128 channels: a 1 x 1 grid
    train_f, test_f = extract_features(net, small_world.train_images), extract_features(net, small_world.test_images)
    torch.testing.assert_close(probed_features[-1][0], train_f)
    torch.testing.assert_close(probed_features[-1][1], test_f)
    expected = (linear_probe(train_f, small_world.train_labels, test_f, small_world.test_labels) if probe == "linear"
                else knn_accuracy(train_f, small_world.train_labels, test_f, small_world.test_labels))
    assert result["block4"] == expected
    assert net.training   # the mode is restored, and eval mode left the BN statistics alone
    assert all(torch.equal(value, state[key]) for key, value in net.state_dict().items())


def test_shuffled_labels_give_chance_accuracy_at_every_block(small_world):
    permutation = torch.randperm(512, generator=torch.Generator().manual_seed(0))
    shuffled = dataclasses.replace(small_world, train_labels=small_world.train_labels[permutation])
    net = backbone()
    true = layerwise_probe(net, small_world, max_features=512)
    chance = layerwise_probe(net, shuffled, max_features=512)
    sigma = (0.1 * 0.9 / 256) ** 0.5                              # 256 test images, 10 balanced classes
    assert max(chance.values()) < 0.1 + 4 * sigma, chance
    assert max(true.values()) > max(chance.values()) + 0.05, (true, chance)


def test_bad_inputs_raise_clearly(small_world):
    with pytest.raises(TypeError, match="needs a backbone with its stages in `.blocks`"):
        layerwise_probe(nn.Linear(3, 3), small_world)
    with pytest.raises(ValueError, match="probe must be 'linear' or 'knn', got 'svm'"):
        layerwise_probe(backbone(), small_world, probe="svm")
    with pytest.raises(ValueError, match="max_features must be a positive int, got 0"):
        layerwise_probe(backbone(), small_world, max_features=0)
    with pytest.raises(ValueError, match="has no labels"):
        layerwise_probe(backbone(), dataclasses.replace(small_world, test_labels=None))


def test_plot_layerwise_draws_one_row_per_task_and_one_column_per_block():
    fig = plot_layerwise({"rotation": {"block1": 0.2, "block2": 0.4}, "resnet": {"block1": 0.3, "block10": 0.5}},
                         chance=0.1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["block1", "block2", "block10"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["rotation", "resnet"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.20", "0.30", "0.40", "0.50"]   # missing cells stay blank
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="accuracy_by_task is empty"):
        plot_layerwise({})


@pytest.mark.slow
def test_a_supervised_backbone_beats_random_init_at_the_top_blocks(tmp_path):
    data = load_world(n_train=2000, n_test=500, seed=0, image_size=16, root=tmp_path)
    net = backbone()
    random_init = layerwise_probe(copy.deepcopy(net), data)
    train(Supervised.for_data(net, data), data, epochs=4, seed=0, knn_every=0, progress=False)
    trained = layerwise_probe(net, data)
    for block in ("block3", "block4"):
        assert trained[block] > random_init[block] + 0.1, (random_init, trained)
