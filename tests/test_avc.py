"""Audio-visual correspondence (Look, Listen and Learn) on the world's sounds, and localisation maps."""
import math

import pytest
import torch

from sslcourse.data import ImageDataset
from sslcourse.data.sound import SAMPLES, world_sounds, world_sources
from sslcourse.data.world import load_world
from sslcourse.experiments import pretrain
from sslcourse.losses import correspondence_loss
from sslcourse.methods import AVC, METHODS
from sslcourse.methods.avc import correspondence_accuracy, localisation_map, peak_on_object
from sslcourse.models import build_backbone
from sslcourse.transforms import to_float


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """64 training and 32 test images at 32 px (a 2 x 2 last feature map)."""
    return load_world(n_train=64, n_test=32, seed=0, root=tmp_path_factory.mktemp("data"))


def build(data, seed=0, backbone="convnet", **hparams):
    torch.manual_seed(seed)
    return AVC.for_data(build_backbone(backbone), data, **hparams)


# ---------------------------------------------------------------- the loss

def correspondence_loss_loop(scores):
    """Half the mean logistic loss of the diagonal (positives), half that of the rest (negatives)."""
    n = len(scores)
    log_sigmoid = lambda s: -math.log1p(math.exp(-s))  # noqa: E731
    positive = sum(-log_sigmoid(scores[i][i]) for i in range(n)) / n
    negative = sum(-log_sigmoid(-scores[i][j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return (positive + negative) / 2


@pytest.mark.parametrize("n", [2, 3, 7])
def test_correspondence_loss_matches_a_loop(n):
    scores = 3 * torch.randn(n, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    assert correspondence_loss(scores).item() == pytest.approx(correspondence_loss_loop(scores.tolist()), rel=1e-12)


def test_correspondence_loss_is_low_when_only_the_diagonal_scores_high_and_has_gradients():
    right = 20 * (2 * torch.eye(5) - 1)                         # +20 on the diagonal, -20 elsewhere
    assert correspondence_loss(right).item() < 1e-8
    assert correspondence_loss(-right).item() == pytest.approx(20, rel=1e-6)
    assert correspondence_loss(torch.zeros(4, 4)).item() == pytest.approx(math.log(2))
    scores = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(correspondence_loss, (scores,))


@pytest.mark.parametrize("scores,error,message", [
    (torch.zeros(3, 4), ValueError, "square"),
    (torch.zeros(1, 1), ValueError, "N >= 2"),
    (torch.zeros(4), ValueError, "2 dimensions"),
    (torch.zeros(3, 3, dtype=torch.long), TypeError, "floating-point"),
])
def test_correspondence_loss_rejects_bad_input(scores, error, message):
    with pytest.raises(error, match=message):
        correspondence_loss(scores)


# ---------------------------------------------------------------- the method

@pytest.mark.parametrize("fusion", ["concat", "similarity"])
def test_avc_is_registered_and_trains_both_subnetworks_from_the_batch_sounds(tiny_world, fusion):
    assert METHODS["avc"] is AVC and AVC.batch_extras == ("index",)
    method = build(tiny_world, fusion=fusion)
    torch.testing.assert_close(method.sources, world_sources(tiny_world))
    index = torch.tensor([5, 17, 3, 40])
    loss = method.training_step(tiny_world.train_images[index], torch.Generator().manual_seed(0), index=index)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in method.parameters())
    # The index picks the sounds: the same images with other scenes' sounds give another loss.
    other = method.training_step(tiny_world.train_images[index], torch.Generator().manual_seed(0),
                                 index=index.flip(0))
    assert other.item() != pytest.approx(loss.item())
    x, waves = to_float(tiny_world.test_images[:3]), world_sounds(tiny_world, "test")[:5]
    assert method.scores(x, waves).shape == (3, 5)
    assert method.embed(x).shape == (3, 128)


def test_similarity_scores_are_the_calibrated_peak_of_the_localisation_map(tiny_world):
    method = build(tiny_world, fusion="similarity")
    images, waves = tiny_world.test_images[:6], world_sounds(tiny_world, "test")[:6]
    maps = localisation_map(method, images, waves)
    assert method.training                                          # measured in eval mode, then restored
    assert maps.shape == (6, 2, 2) and maps.abs().max() <= 1 + 1e-6
    weight, bias = method.calibration.detach()
    with torch.no_grad():
        own = torch.diagonal(method.eval().scores(to_float(images), waves))
    torch.testing.assert_close(own, weight * maps.flatten(1).amax(dim=1) + bias)


def test_correspondence_accuracy_pairs_each_image_with_its_own_and_another_sound(tiny_world):
    method = build(tiny_world)
    images, waves = tiny_world.test_images, world_sounds(tiny_world, "test")
    accuracy = correspondence_accuracy(method, images, waves, batch_size=10)
    assert accuracy == correspondence_accuracy(method, images, waves)       # batching changes nothing
    assert 0 <= accuracy <= 1 and (accuracy * 64) == pytest.approx(round(accuracy * 64))   # 32 + 32 pairs
    with torch.no_grad():                         # a classifier that always says yes gets the positives only
        method.classifier[1].weight.zero_()
        method.classifier[1].bias.fill_(1.0)
    assert correspondence_accuracy(method, images, waves) == 0.5


def test_avc_rejects_bad_input(tiny_world):
    method, images, g = build(tiny_world), tiny_world.train_images[:4], torch.Generator().manual_seed(0)
    for index in (torch.arange(3), torch.arange(4.0), torch.tensor([0, 1, 2, 64])):
        with pytest.raises(ValueError, match="positions in the training set"):
            method.training_step(images, g, index=index)
    with pytest.raises(RuntimeError, match="no sounds"):
        AVC(build_backbone("convnet"), n_train=64).training_step(images, g, index=torch.arange(4))
    with pytest.raises(ValueError, match=r"shape \(64, 1, 3\)"):
        method.set_sources(torch.zeros(10, 1, 3))
    with pytest.raises(ValueError, match="fusion must be one of"):
        build(tiny_world, fusion="sum")
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        build(tiny_world, noise=-1.0)
    plain = ImageDataset("plain", tiny_world.train_images, tiny_world.train_labels, tiny_world.test_images,
                         tiny_world.test_labels, tiny_world.classes)
    with pytest.raises(ValueError, match="load_world"):
        build(plain)
    waves = world_sounds(tiny_world, "test")
    with pytest.raises(ValueError, match="pair up one to one"):
        localisation_map(method, tiny_world.test_images[:3], waves[:2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        correspondence_accuracy(method, tiny_world.test_images[:1], waves[:1])
    with pytest.raises(ValueError, match="convolutional backbone"):
        localisation_map(build(tiny_world, backbone="vit"), tiny_world.test_images[:2], waves[:2])


def test_cli_pretrains_avc_and_its_checkpoint_rebuilds_the_method(tmp_path, cli_pretrain):
    state = cli_pretrain("avc", 64, 32)
    assert state["hparams"] == {"n_train": 64, "max_objects": 1, "image_size": 32, "embed_dim": 128,
                                "fusion": "concat", "noise": 0.05, "distractor": 0.1, "flip_p": 0.5}
    twin = METHODS["avc"](build_backbone("convnet"), **state["hparams"])
    twin.load_state_dict(state["model"])
    world = load_world(n_train=64, n_test=32, seed=0, root=tmp_path / "data")
    torch.testing.assert_close(twin.sources, world_sources(world))              # the sounds travel along
    trained = pretrain("avc", world, epochs=1, batch_size=32, seed=0)[0]       # the CLI's run, in process
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[name], value, msg=name)


def test_world_sounds_have_the_samples_the_audio_network_expects(tiny_world):
    method = build(tiny_world)
    assert method.encode_audio(world_sounds(tiny_world, "test")[:4]).shape == (4, 128)
    assert world_sounds(tiny_world).shape == (64, SAMPLES)


# ---------------------------------------------------------------- learning

@pytest.mark.slow
def test_correspondence_on_held_out_scenes_is_well_above_chance(tmp_path):
    # 1,500 scenes at 16 px, 5 epochs (1 thread, ~10-15 s on a shared 2-core machine). Measured: held-out
    # accuracy 0.773, 0.754, 0.736 for training seeds 0, 1, 2; chance is 0.5 (half the pairs are foreign).
    data = load_world(n_train=1500, n_test=500, seed=0, image_size=16, root=tmp_path)
    method, _ = pretrain("avc", data, epochs=5, seed=0)
    accuracy = correspondence_accuracy(method, data.test_images, world_sounds(data, "test", seed=0))
    assert accuracy > 0.62, f"correspondence accuracy {accuracy:.3f} on held-out scenes (chance 0.5)"


def test_peak_on_object_scores_the_peak_cell_against_a_random_cell():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True                                          # map 0: the object fills cell (0, 0)
    masks[1, 4:, 5:] = True                                          # map 1: 3/4 of cell (1, 1), no other cell
    maps = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])   # both peak at cell (0, 0)
    assert peak_on_object(maps, masks) == (0.5, 0.25)               # map 0 hits, map 1 misses; 2 of 8 cells
    with pytest.raises(ValueError, match="multiples of the map's 2 x 2"):
        peak_on_object(maps, masks[:, :7, :7])
    with pytest.raises(ValueError, match="one per map"):
        peak_on_object(maps, masks[:1])


@pytest.mark.slow
def test_localisation_map_peaks_on_the_sounding_object_more_often_than_a_random_cell(tmp_path):
    # AVOL-style training (fusion="similarity") at 64 px, where the convnet's last map is 4 x 4 (at 32 px
    # it is 2 x 2 and the peak stays at chance). 640 scenes, 6 epochs at batch 32 (1 thread, ~15-18 s on a
    # shared 2-core machine). Measured: the peak's cell is at least half object in 0.655, 0.340, 0.725 of the
    # held-out images for training seeds 0, 1, 2; a random cell is, in 0.105.
    data = load_world(n_train=640, n_test=200, seed=0, image_size=64, root=tmp_path)
    method, _ = pretrain("avc", data, epochs=6, batch_size=32, seed=0, fusion="similarity")
    maps = localisation_map(method, data.test_images, world_sounds(data, "test", seed=0))         # (N, 4, 4)
    assert maps.shape == (200, 4, 4)
    hit, chance = peak_on_object(maps, torch.from_numpy(data.extras["test"]["mask"] == 0))      # (N, 64, 64) masks
    assert hit > chance + 0.12, f"the map peaks on the object in {hit:.3f} of the images, a random cell in {chance:.3f}"
