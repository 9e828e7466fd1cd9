"""The one trainer: schedule, checkpoints, exact resume, Ctrl-C, NaN, validation."""
import math

import pytest
import torch

from sslcourse.checkpoint import load_checkpoint, save_atomic
from sslcourse.methods import Method, build_method
from sslcourse.models import build_backbone
from sslcourse.trainer import TrainingDiverged, lr_at, train


def simclr(seed=0):
    torch.manual_seed(seed)
    return build_method("simclr", build_backbone("convnet"), image_size=32)


def weights(method):
    return {k: v.clone() for k, v in method.state_dict().items()}


def test_lr_schedule_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.01
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_same_seed_same_weights(small_world):
    runs = []
    for _ in range(2):
        method = simclr()
        train(method, small_world, epochs=1, batch_size=128, seed=3, knn_every=0, progress=False)
        runs.append(weights(method))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("interrupt_at", [(0, 2), (1, 0)])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(small_world, tmp_path, interrupt_at):
    reference = simclr()
    full = train(reference, small_world, epochs=2, batch_size=128, seed=1, knn_every=1,
                 knn_max_train=256, knn_max_test=128, progress=False)

    def ctrl_c(method, history, epoch, step):
        if (epoch, step) == interrupt_at:
            raise KeyboardInterrupt

    interrupted = simclr()
    partial = train(interrupted, small_world, epochs=2, batch_size=128, seed=1, knn_max_train=256,
                    knn_max_test=128, out_dir=tmp_path, progress=False, callback=ctrl_c)
    assert partial["interrupted"]
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (saved["epoch"], saved["step"]) == (interrupt_at[0], interrupt_at[1] + 1)
    # the in-memory model is kept as trained so far, and differs from the finished one
    assert any(not torch.equal(v, reference.state_dict()[k]) for k, v in interrupted.state_dict().items())

    resumed = simclr(seed=99)  # other initial weights: everything must come from the checkpoint
    history = train(resumed, small_world, epochs=2, batch_size=128, seed=1, knn_max_train=256, knn_max_test=128,
                    out_dir=tmp_path, resume=True, progress=False)
    final, expected = weights(resumed), weights(reference)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    assert history["loss"] == pytest.approx(full["loss"], rel=1e-6)
    assert history["knn"] == pytest.approx(full["knn"])
    assert not history["interrupted"]


class Exploding(Method):
    name = "exploding"

    def __init__(self, backbone):
        super().__init__(backbone)

    def training_step(self, images, generator):
        out = self.backbone(images.float()).mean()
        return out * float("nan")


def test_nan_loss_stops_with_a_clear_message(small_world):
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1.*lower learning rate"):
        train(Exploding(build_backbone("convnet")), small_world, epochs=1, batch_size=64, progress=False)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 10_000}, "batch_size must be an integer between 2 and the training set size 512"),
    ({"batch_size": 1}, "batch_size"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"lr": -1.0}, "lr must be"),
    ({"device": "tpu"}, "device"),
    ({"resume": True}, "resume=True needs out_dir"),
])
def test_bad_arguments(small_world, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train(simclr(), small_world, **{"epochs": 1, "progress": False, **kwargs})


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"epoch": 1}, path)

    def crash(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_missing_checkpoint_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


class RecordsExtras(Method):
    """A method whose loss is a plain linear score, recording what the trainer passed it."""
    name = "records_extras"

    def __init__(self, backbone, batch_extras=()):
        super().__init__(backbone)
        self.batch_extras, self.seen = tuple(batch_extras), []

    def training_step(self, images, generator, **extras):
        self.seen.append((images.clone(), extras))
        return self.backbone(images.float()).mean()


def test_trainer_passes_the_extras_a_method_asks_for(small_world):
    method = RecordsExtras(build_backbone("convnet"), batch_extras=("index", "labels"))
    train(method, small_world, epochs=1, batch_size=128, knn_every=0, progress=False)
    assert len(method.seen) == len(small_world.train_images) // 128
    for images, extras in method.seen:
        assert set(extras) == {"index", "labels"}
        assert torch.equal(images, small_world.train_images[extras["index"]])
        assert torch.equal(extras["labels"], small_world.train_labels[extras["index"]])
    plain = RecordsExtras(build_backbone("convnet"))
    train(plain, small_world, epochs=1, batch_size=256, knn_every=0, progress=False)
    assert all(extras == {} for _, extras in plain.seen)


def test_trainer_rejects_unknown_extras_and_missing_labels(small_world):
    with pytest.raises(ValueError, match=r"asks for \['colour'\]"):
        train(RecordsExtras(build_backbone("convnet"), ("colour",)), small_world, epochs=1, progress=False)
    unlabeled = type(small_world)(small_world.name, small_world.train_images, None, small_world.test_images, None,
                                  small_world.classes)
    with pytest.raises(ValueError, match="is supervised and needs training labels"):
        train(RecordsExtras(build_backbone("convnet"), ("labels",)), unlabeled, epochs=1, progress=False)
