"""Backbones and heads: output shapes for the course's image sizes, and clear errors."""
import pytest
import torch

from sslcourse.evaluation import fine_tune
from sslcourse.models import MLPHead, PredictionHead, ProjectionHead, build_backbone


@pytest.mark.parametrize("name,dim", [("convnet", 128), ("resnet18", 512)])
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (3, 96)])
def test_backbones_pool_to_out_dim(name, dim, channels, size):
    net = build_backbone(name, channels=channels)
    assert net.out_dim == dim
    assert net(torch.randn(2, channels, size, size)).shape == (2, dim)


def test_resnet18_keeps_resolution_in_its_cifar_stem():
    stem = build_backbone("resnet18").blocks[0]
    assert stem(torch.randn(1, 3, 32, 32)).shape[-1] == 32   # 3x3 stride-1 conv, no max-pool


@pytest.mark.parametrize("call,message", [
    (lambda: build_backbone("vgg"), "unknown backbone 'vgg'; choose one of: convnet, resnet18"),
    (lambda: build_backbone("convnet", channels=4), "channels must be 1, 2 or 3, got 4"),
    (lambda: MLPHead(8, 8, 8, num_layers=0), "num_layers must be >= 1"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_heads():
    z = ProjectionHead(128)(torch.randn(4, 128))
    assert z.shape == (4, 128)
    assert PredictionHead(128, 64, 32)(z).shape == (4, 32)
    deep = MLPHead(16, 32, 8, num_layers=3, last_bn=True)
    assert sum(isinstance(m, torch.nn.Linear) for m in deep) == 3
    assert deep(torch.randn(5, 16)).shape == (5, 8)


def test_fine_tune_trains_a_copy_and_leaves_the_backbone_alone(small_world):
    net = build_backbone("convnet")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    accuracy = fine_tune(net, small_world, fraction=0.5, epochs=1, batch_size=64, progress=False)
    assert 0.0 <= accuracy <= 1.0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
