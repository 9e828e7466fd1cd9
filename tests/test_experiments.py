"""The miniature-experiment helpers that lectures 05 and 06 run dozens of times."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslcourse import experiments
from sslcourse.data import ImageDataset
from sslcourse.data.world import load_world
from sslcourse.evaluation import extract_features
from sslcourse.experiments import Supervised, contrastive_task, head_features, initial_backbone, pretrain, probe
from sslcourse.methods import METHODS, Method, MoCoV1, SimCLR, SimCLRv2
from sslcourse.transforms import to_float


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """256 training images at 16 x 16 pixels: training steps a quarter of the cost of 32 pixels."""
    return load_world(n_train=256, n_test=64, seed=0, image_size=16, root=tmp_path_factory.mktemp("data"))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- pretrain

def test_pretrain_builds_the_named_method_around_the_initial_backbone(small_world, monkeypatch):
    seen = {}

    def no_training(method, data, **settings):
        seen.update(settings)
        return {"loss": []}

    monkeypatch.setattr(experiments, "train", no_training)
    method, history = pretrain("simclr", small_world, epochs=3, batch_size=32, lr=0.01, seed=5, temperature=0.7)
    assert isinstance(method, SimCLR) and method.temperature == 0.7 and history == {"loss": []}
    assert same_weights(method.backbone, initial_backbone(small_world, seed=5))       # the documented start
    assert not same_weights(method.backbone, initial_backbone(small_world, seed=6))
    assert seen == {"epochs": 3, "batch_size": 32, "lr": 0.01, "seed": 5, "knn_every": 0, "diagnostics_every": 0,
                    "progress": False}


def test_pretrain_trains_and_is_deterministic(tiny_world):
    runs = [pretrain("simclr", tiny_world, epochs=1, batch_size=64, seed=0) for _ in range(2)]
    (first, history), (second, _) = runs
    assert len(history["loss"]) == 1 and math.isfinite(history["loss"][0])
    assert history["config"]["batch_size"] == 64 and history["knn"] == []           # the monitor is off
    assert not same_weights(first.backbone, initial_backbone(tiny_world, seed=0))     # it trained
    assert same_weights(first, second)                                                # one seed, one result
    assert not first.training                                                         # the trainer leaves eval mode


def test_pretrain_accepts_a_built_method(tiny_world):
    method = METHODS["moco_v1"].for_data(initial_backbone(tiny_world), tiny_world, queue_size=128)
    trained, history = pretrain(method, tiny_world, epochs=1, batch_size=128, diagnostics_every=1)
    assert trained is method and len(history["loss"]) == 1
    assert len(history["diagnostics"]) == 1 and "effective_rank" in history["diagnostics"][0], history["diagnostics"]


def test_pretrain_rejects_bad_input(small_world):
    with pytest.raises(ValueError, match="unknown method 'simclear'.*simclr"):
        pretrain("simclear", small_world, epochs=1)
    method = METHODS["simclr"].for_data(initial_backbone(small_world), small_world)
    with pytest.raises(ValueError, match=r"\['temperature'\] only apply when the method is given by name"):
        pretrain(method, small_world, epochs=1, temperature=0.5)
    with pytest.raises(TypeError, match="registered name or a Method, got int"):
        pretrain(3, small_world, epochs=1)


# ---------------------------------------------------------------- the supervised reference

def test_supervised_step_is_cross_entropy_on_the_augmented_views(small_world):
    method = Supervised.for_data(initial_backbone(small_world), small_world)
    assert method.n_classes == 10 and method.hparams() == {"n_classes": 10, "image_size": 32, "gray_p": 0.5}
    images, labels = small_world.train_images[:16], small_world.train_labels[:16]
    loss = method.training_step(images, torch.Generator().manual_seed(4), labels=labels)
    views = method.augment(images, torch.Generator().manual_seed(4))
    expected = -torch.log_softmax(method.classifier(method.backbone(views)), dim=1)[torch.arange(16), labels].mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_supervised_learns_and_needs_labels(tiny_world, small_world):
    method, history = pretrain(Supervised.for_data(initial_backbone(tiny_world), tiny_world), tiny_world,
                               epochs=4, batch_size=32)
    assert history["loss"][-1] < history["loss"][0] - 0.05
    unlabelled = ImageDataset("toy", small_world.train_images, None, small_world.test_images, None, [])
    with pytest.raises(ValueError, match="no training labels"):
        Supervised.for_data(initial_backbone(small_world), unlabelled)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2, got 1"):
        Supervised(initial_backbone(small_world), n_classes=1)


# ---------------------------------------------------------------- probe

def labelled(train_labels, test_labels):
    images = lambda n: torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    return ImageDataset("toy", images(len(train_labels)), train_labels, images(len(test_labels)), test_labels,
                        [str(c) for c in range(int(train_labels.max()) + 1)])


def test_probe_reads_features_that_carry_the_label_and_ignores_noise():
    g = torch.Generator().manual_seed(0)
    train_y, test_y = torch.arange(300) % 3, torch.arange(90) % 3
    data = labelled(train_y, test_y)
    informative = lambda y: F.one_hot(y, 8).float() * 3 + torch.randn(len(y), 8, generator=g)
    good = probe((informative(train_y), informative(test_y)), data)
    noise = probe((torch.randn(300, 8, generator=g), torch.randn(90, 8, generator=g)), data)
    assert set(good) == {"knn", "linear"}
    assert good["knn"] > 0.9 and good["linear"] > 0.9
    assert noise["knn"] < 0.6 and noise["linear"] < 0.6          # chance is 1/3


def test_probe_of_a_backbone_equals_probe_of_its_features(small_world):
    backbone = initial_backbone(small_world)
    features = (extract_features(backbone, small_world.train_images), extract_features(backbone, small_world.test_images))
    assert probe(backbone, small_world) == probe(features, small_world)


def test_probe_rejects_bad_input(small_world):
    with pytest.raises(ValueError, match="one row per image: 512 train and 256 test, got 512 and 10"):
        probe((torch.zeros(512, 4), torch.zeros(10, 4)), small_world)
    with pytest.raises(TypeError, match="backbone .* or a .* pair, got str"):
        probe("convnet", small_world)
    unlabelled = ImageDataset("toy", small_world.train_images, None, small_world.test_images, None, [])
    with pytest.raises(ValueError, match="has no labels"):
        probe(initial_backbone(small_world), unlabelled)


# ---------------------------------------------------------------- head_features

@pytest.mark.parametrize("cls, hidden", [(SimCLR, 1), (SimCLRv2, 2), (MoCoV1, 0)])
def test_head_features_at_every_depth(small_world, cls, hidden):
    method = cls.for_data(initial_backbone(small_world), small_world)
    method.train()
    images = small_world.test_images[:20]
    features = head_features(method, images, batch_size=8)
    assert list(features) == ["h (backbone)", *[f"head layer {i + 1}" for i in range(hidden)], "z (projection)"]
    method.eval()
    with torch.no_grad():
        h = method.backbone(to_float(images))
        z = method.projector(h)
        first = nn.Sequential(*list(method.projector)[:3])(h) if hidden else None
    method.train()
    assert torch.allclose(features["h (backbone)"], h, atol=1e-5)
    assert torch.allclose(features["z (projection)"], z, atol=1e-5)
    if hidden:
        assert torch.allclose(features["head layer 1"], first, atol=1e-5)
        assert (features["head layer 1"] >= 0).all()                         # after the ReLU
    assert method.training and method.projector.training                     # mode restored


# ---------------------------------------------------------------- contrastive_task

class Noisy(Method):
    """Images flattened; two views differ by Gaussian noise of scale ``noise``; a linear head."""

    def __init__(self, noise: float, temperature: float = 0.5):
        super().__init__(nn.Flatten())
        torch.manual_seed(0)
        self.projector = nn.Linear(48, 8)
        self.noise, self.temperature = noise, temperature

    def augment(self, images, generator):
        x = to_float(images)
        return x + self.noise * torch.randn(x.shape, generator=generator)


def reference_task(method, images, tau, g):
    """Loop over anchors, written from SimCLR's Table 5: softmax over the 2N - 1 other views."""
    with torch.no_grad():
        views = torch.cat([method.augment(images, g), method.augment(images, g)]).double()
        z = method.projector.double()(method.backbone(views))
        method.projector.float()
    n2 = len(z)
    correct, entropies = 0, []
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        others = [j for j in range(n2) if j != i]
        sims = torch.stack([F.cosine_similarity(z[i], z[j], dim=0) for j in others])
        p = torch.softmax(sims / tau, dim=0)
        entropies.append(-(p * p.log()).sum().item())
        correct += others[int(sims.argmax())] == positive
    return correct / n2, sum(entropies) / n2


@pytest.mark.parametrize("noise, tau", [(0.05, 0.5), (2.0, 0.1), (0.5, 1.0)])
def test_contrastive_task_matches_a_loop_reference(noise, tau):
    images = torch.randint(0, 256, (12, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    method = Noisy(noise, temperature=tau)
    result = contrastive_task(method, images, seed=3)
    accuracy, entropy = reference_task(method, images, tau, torch.Generator().manual_seed(3))
    assert result["contrastive_acc"] == pytest.approx(accuracy)
    assert result["entropy"] == pytest.approx(entropy, rel=1e-4)
    assert 0 <= result["entropy"] <= math.log(2 * 12 - 1) + 1e-6


def test_contrastive_task_in_batches_averages_full_batches():
    images = torch.randint(0, 256, (14, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    method = Noisy(1.0)
    result = contrastive_task(method, images, batch_size=6, seed=2)     # two batches of 6; the last 2 are dropped
    g = torch.Generator().manual_seed(2)
    parts = [reference_task(method, images[i:i + 6], 0.5, g) for i in (0, 6)]
    assert result["contrastive_acc"] == pytest.approx(sum(a for a, _ in parts) / 2)
    assert result["entropy"] == pytest.approx(sum(e for _, e in parts) / 2, rel=1e-4)
    assert result["entropy"] <= math.log(2 * 6 - 1) + 1e-6


def test_contrastive_task_extremes():
    images = torch.randint(0, 256, (16, 3, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    clean = contrastive_task(Noisy(0.0), images)            # identical views: the positive is always found
    assert clean["contrastive_acc"] == 1.0
    flat = contrastive_task(Noisy(0.0), images, temperature=1e4)   # a very flat softmax is nearly uniform
    assert flat["entropy"] == pytest.approx(math.log(31), abs=1e-3)
    sharp = contrastive_task(Noisy(0.0), images, temperature=1e-3)
    assert sharp["entropy"] < 0.05
    method = Noisy(0.1)
    method.train()
    contrastive_task(method, images)
    assert method.training                                   # mode restored


def test_contrastive_task_rejects_bad_input():
    images = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0"):
        contrastive_task(Noisy(0.1), images, temperature=0)
    with pytest.raises(ValueError, match="need batches of at least 2 images .* got batch_size=None for 1 images"):
        contrastive_task(Noisy(0.1), images[:1])
    with pytest.raises(ValueError, match="at most the 4 given, got batch_size=5"):
        contrastive_task(Noisy(0.1), images, batch_size=5)
