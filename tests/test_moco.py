"""MoCo: the queue, the momentum encoder, shuffled batch norm, and that it learns."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslcourse.data.world import load_world
from sslcourse.methods import METHODS, build_method
from sslcourse.methods.momentum import Queue, cosine_momentum, enqueue, momentum_copy, momentum_update
from sslcourse.methods.moco import grouped_forward
from sslcourse.models import build_backbone
from sslcourse.trainer import train
from sslcourse.transforms import to_float


def reference_enqueue(queue, pointer, keys):
    """One key at a time, the slot after the last one written, back to 0 past the end."""
    queue = queue.clone()
    for key in keys:
        queue[pointer] = key
        pointer = (pointer + 1) % len(queue)
    return queue, pointer


@pytest.mark.parametrize("size,pointer,n", [(8, 0, 3), (8, 6, 3), (8, 5, 3), (7, 4, 7), (5, 0, 5), (6, 5, 1)])
def test_enqueue_wraps_around_like_a_ring_buffer(size, pointer, n):
    g = torch.Generator().manual_seed(size * 10 + n)
    queue, keys = torch.randn(size, 4, generator=g), torch.randn(n, 4, generator=g)
    expected, expected_pointer = reference_enqueue(queue, pointer, keys)
    new_pointer = enqueue(queue, pointer, keys)
    assert new_pointer == expected_pointer
    torch.testing.assert_close(queue, expected)


def test_enqueue_rejects_batches_larger_than_the_queue_and_wrong_dims():
    with pytest.raises(ValueError, match="does not fit a queue of 4"):
        enqueue(torch.zeros(4, 3), 0, torch.ones(5, 3))
    with pytest.raises(ValueError, match=r"keys must be \(N, 3\)"):
        enqueue(torch.zeros(4, 3), 0, torch.ones(2, 2))


def test_queue_starts_on_the_unit_sphere_and_stores_normalised_keys():
    queue = Queue(10, 4)
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(10))
    keys = torch.randn(3, 4) * 5
    queue.push(keys)
    torch.testing.assert_close(queue.keys[:3], F.normalize(keys, dim=1))
    assert int(queue.pointer) == 3
    with pytest.raises(ValueError, match="positive integers"):
        Queue(0, 4)


def test_momentum_update_follows_the_equation_and_copies_buffers():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(8, 3))  # moves the BN running statistics
    before = [p.clone() for p in target.parameters()]
    online_before = [p.clone() for p in online.parameters()]
    momentum_update(online, target, 0.9)
    for p_t, p_t0, p_o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(p_t, 0.9 * p_t0 + 0.1 * p_o)
    for p_o, p_o0 in zip(online.parameters(), online_before):
        assert torch.equal(p_o, p_o0)  # the online network is not touched
    for b_t, b_o in zip(target.buffers(), online.buffers()):
        assert torch.equal(b_t, b_o)
    momentum_update(online, target, 0.0)
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        assert torch.equal(p_t, p_o)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        momentum_update(online, target, 1.5)


def test_cosine_momentum_goes_from_base_to_one():
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_grouped_forward_normalises_each_group_on_its_own():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(8, 3) + torch.arange(8.0)[:, None]
    grouped = grouped_forward(bn, x, 2)
    torch.testing.assert_close(grouped, torch.cat([bn(x[:4]), bn(x[4:])]))
    assert not torch.allclose(grouped, bn(x), atol=1e-3)


def identity_views(method):
    method.augment = lambda images, generator: to_float(images)
    return method


def test_moco_keys_are_unshuffled_to_their_queries():
    """With one BN group a permutation changes nothing, so the enqueued keys must equal the
    key encoder's output on the images in their original order."""
    torch.manual_seed(0)
    method = identity_views(build_method("moco_v2", build_backbone("convnet"), queue_size=64, bn_groups=1))
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    method.train().training_step(images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = F.normalize(method.key_projector(method.key_backbone(to_float(images))), dim=1)
    torch.testing.assert_close(method.queue.keys[:16], expected, atol=1e-5, rtol=1e-4)


def test_moco_step_trains_the_query_encoder_only_then_moves_the_key_encoder():
    torch.manual_seed(0)
    method = build_method("moco_v1", build_backbone("convnet"), queue_size=128, momentum=0.9)
    assert method.temperature == 0.07 and len(method.projector) == 1  # v1: linear head, tau 0.07
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    loss = method.training_step(images, torch.Generator().manual_seed(1))
    loss.backward()
    assert all(p.grad is None for p in method.key_backbone.parameters())
    assert method.backbone.blocks[0][0].weight.grad.abs().sum() > 0
    assert int(method.queue.pointer) == 32
    key_before = method.key_backbone.blocks[0][0].weight.clone()
    with torch.no_grad():
        method.backbone.blocks[0][0].weight.add_(1.0)
    method.on_step_end(0.5)
    torch.testing.assert_close(method.key_backbone.blocks[0][0].weight,
                               0.9 * key_before + 0.1 * method.backbone.blocks[0][0].weight)


def test_moco_rejects_a_batch_that_does_not_split_into_bn_groups():
    method = build_method("moco_v2", build_backbone("convnet"), queue_size=64, bn_groups=4)
    with pytest.raises(ValueError, match="multiple of bn_groups=4"):
        method.training_step(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ValueError, match="bn_groups must be a positive integer"):
        build_method("moco_v2", build_backbone("convnet"), bn_groups=0)


def test_moco_same_seed_same_run(small_world):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        method = build_method("moco_v2", build_backbone("convnet"), queue_size=256)
        history = train(method, small_world, epochs=1, batch_size=64, knn_every=0, progress=False)
        runs.append((history["loss"], method.queue.keys.clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_for_data_warns_when_the_queue_is_not_smaller_than_the_training_set(small_world):
    n = len(small_world.train_images)                                   # 512
    with pytest.warns(UserWarning, match=rf"queue_size={n} is not smaller than the {n} training images"):
        METHODS["moco_v2"].for_data(build_backbone("convnet"), small_world, queue_size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        METHODS["moco_v2"].for_data(build_backbone("convnet"), small_world, queue_size=n // 4)


def test_registry_lists_both_moco_versions_and_simclr_v2():
    assert {"moco_v1", "moco_v2", "simclr_v2"} <= set(METHODS)
    method = build_method("simclr_v2", build_backbone("convnet"))
    encoder = method.encoder_for_fine_tuning()
    assert encoder.out_dim == 512 and len(method.projector) == 7  # 3 linear layers, 2 BN + ReLU between
    assert encoder(torch.randn(4, 3, 32, 32)).shape == (4, 512)
    assert encoder[0] is method.backbone  # shares the weights it fine-tunes


@pytest.mark.slow
def test_moco_v2_beats_random_init_on_the_world(tmp_path, knn_before_after):
    """16 px images make a step 4x cheaper than 32 px; MoCo needs about 600 steps to show clearly
    on the world, and the symmetric loss (both views as queries) learns more steadily in so few."""
    data = load_world(n_train=2000, n_test=500, seed=0, root=tmp_path, image_size=16)
    torch.manual_seed(0)
    method = build_method("moco_v2", build_backbone("convnet"), image_size=16, queue_size=512, symmetric=True)
    history, before, after = knn_before_after(method, data, epochs=20)
    assert history["loss"][-1] < history["loss"][0] - 0.3
    assert after > before + 0.05, f"kNN accuracy {before:.3f} at random init, {after:.3f} after MoCo v2"
