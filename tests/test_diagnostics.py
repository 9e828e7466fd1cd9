"""Collapse diagnostics during training: when they are logged, what they hold, that measuring
changes nothing in the run (weights, augmentations), resume, a collapsed method, bad values, the CLI."""
import pytest
import torch
from torch import nn

from sslcourse.analysis import collapse_report
from sslcourse.checkpoint import load_checkpoint
from sslcourse.cli import main
from sslcourse.losses import nt_xent
from sslcourse.methods import Method
from sslcourse.trainer import collapse_diagnostics, diagnostic_indices, train
from sslcourse.transforms import recipe, to_float

REPORT_KEYS = {"epoch", "std", "std_isotropic", "std_ratio", "effective_rank", "dim", "uniformity", "collapsed"}


class TinySimCLR(Method):
    """SimCLR on a one-layer network with BatchNorm: cheap, random (augmentations) and stateful
    (BN running statistics), so a diagnostic that drew from the generator or ran in train mode
    would change the weights."""
    name = "tiny_simclr"

    def __init__(self, seed=0):
        torch.manual_seed(seed)
        super().__init__(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.projector = nn.Linear(8, 6)
        self.augment = recipe("simclr", 32)[0]

    def training_step(self, images, generator):
        z = self.embed(torch.cat([self.augment(images, generator), self.augment(images, generator)]))
        return nt_xent(*z.chunk(2), temperature=0.5)

    def embed(self, x):
        return self.projector(self.backbone(x))


class Constant(TinySimCLR):
    """Trains like TinySimCLR, but what it shows the diagnostics is one constant vector."""
    name = "constant"

    def embed(self, x):
        if self.training:
            return super().embed(x)
        return torch.ones(len(x), 6)


@pytest.fixture(scope="module")
def world(small_world):
    """The first 128 training images of the session's small world: 2 steps of 64 an epoch."""
    return type(small_world)(small_world.name, small_world.train_images[:128], small_world.train_labels[:128],
                             small_world.test_images, small_world.test_labels, small_world.classes)


def tiny_train(method, data, **kwargs):
    return train(method, data, **{"epochs": 2, "batch_size": 64, "knn_every": 0, "progress": False, **kwargs})


def weights(method):
    return {k: v.clone() for k, v in method.state_dict().items()}


def test_diagnostics_are_logged_every_k_epochs_and_after_the_last(world):
    method = TinySimCLR()
    history = tiny_train(method, world, epochs=5, diagnostics_every=2)
    assert [d["epoch"] for d in history["diagnostics"]] == [2, 4, 5]
    for report in history["diagnostics"]:
        assert set(report) == REPORT_KEYS and report["dim"] == 6
    # the last report is collapse_report of embed on the fixed, un-augmented training images, in eval mode
    images = world.train_images[diagnostic_indices(len(world.train_images))]
    with torch.no_grad():
        expected = collapse_report(method.eval().embed(to_float(images)))
    assert {k: v for k, v in history["diagnostics"][-1].items() if k != "epoch"} == pytest.approx(expected)
    assert tiny_train(TinySimCLR(), world, epochs=1)["diagnostics"] == []   # off by default


def test_the_diagnostic_images_are_fixed_and_spread_over_the_set():
    assert torch.equal(diagnostic_indices(10), torch.arange(10))
    index = diagnostic_indices(5000)
    assert len(index) == 512 and len(set(index.tolist())) == 512
    assert index[0] == 0 and index[-1] == 4999
    assert torch.equal(index, diagnostic_indices(5000))


def test_diagnostics_change_nothing_in_the_run(world):
    """Same weights (BN statistics included), losses and augmentations with and without diagnostics."""
    runs = {}
    for every in (0, 1):
        method = TinySimCLR()
        runs[every] = (tiny_train(method, world, diagnostics_every=every), weights(method))
    (plain, plain_weights), (diagnosed, diagnosed_weights) = runs[0], runs[1]
    assert len(diagnosed["diagnostics"]) == 2 and plain["diagnostics"] == []
    assert diagnosed["loss"] == plain["loss"]
    assert all(torch.equal(diagnosed_weights[k], plain_weights[k]) for k in plain_weights)


def test_collapse_diagnostics_restores_the_training_mode(world):
    method = TinySimCLR().train()
    collapse_diagnostics(method, world.train_images[:64], "cpu")
    assert method.training and all(m.training for m in method.modules())
    method.eval()
    collapse_diagnostics(method, world.train_images[:64], "cpu")
    assert not method.training


def test_resume_keeps_the_diagnostics(world, tmp_path):
    full = tiny_train(TinySimCLR(), world, epochs=3, diagnostics_every=1)

    def ctrl_c(method, history, epoch, step):
        if (epoch, step) == (1, 0):
            raise KeyboardInterrupt

    partial = tiny_train(TinySimCLR(), world, epochs=3, diagnostics_every=1, out_dir=tmp_path, callback=ctrl_c)
    assert partial["interrupted"] and [d["epoch"] for d in partial["diagnostics"]] == [1]
    assert [d["epoch"] for d in load_checkpoint(tmp_path / "checkpoint.pt")["history"]["diagnostics"]] == [1]
    resumed = tiny_train(TinySimCLR(seed=9), world, epochs=3, diagnostics_every=1, out_dir=tmp_path,
                         resume=True)
    assert [d["epoch"] for d in resumed["diagnostics"]] == [1, 2, 3]
    for got, want in zip(resumed["diagnostics"], full["diagnostics"]):
        assert got == pytest.approx(want)


def test_a_constant_output_is_reported_collapsed_and_a_learning_one_is_not(world):
    collapsed = tiny_train(Constant(), world, epochs=1, diagnostics_every=1)["diagnostics"][-1]
    assert collapsed["collapsed"] and collapsed["std_ratio"] == 0.0 and collapsed["effective_rank"] == 0.0
    healthy = tiny_train(TinySimCLR(), world, epochs=1, diagnostics_every=1)["diagnostics"][-1]
    assert not healthy["collapsed"] and healthy["effective_rank"] > 1.5


def test_the_progress_bar_shows_std_ratio_and_effective_rank(world, capsys):
    tiny_train(TinySimCLR(), world, epochs=1, diagnostics_every=1, progress=True)
    err = capsys.readouterr().err
    assert "std_ratio=" in err and "erank=" in err


@pytest.mark.parametrize("value", [-1, 1.5, True, "2", None])
def test_bad_diagnostics_every(world, value):
    with pytest.raises(ValueError, match=r"diagnostics_every must be an integer >= 0 .*got " + repr(value)):
        tiny_train(TinySimCLR(), world, diagnostics_every=value)


def test_cli_rejects_a_negative_diagnostics_every(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--diagnostics-every", "-2"])
    assert exit_.value.code == 2
    assert "--diagnostics-every must be an integer >= 0 (0: off), got -2" in capsys.readouterr().err


def test_cli_passes_diagnostics_every_and_prints_the_last_report(monkeypatch, tmp_path, capsys):
    import sslcourse.main_job as main_job

    seen = {}
    report = {"epoch": 3, "std": 0.001, "std_isotropic": 0.125, "std_ratio": 0.008, "effective_rank": 1.01,
              "dim": 64, "uniformity": -0.01, "collapsed": True}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        scores = {row: 0.1 for row in main_job.TABLE_ROWS}
        return {"history": {"interrupted": False, "diagnostics": [dict(report, epoch=1), report]}, "epochs": 3,
                "seconds": 1.0, "random_init": scores, "pretrained": scores}

    monkeypatch.setattr(main_job, "run", fake_run)
    assert main(["pretrain", "--diagnostics-every", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    assert seen["diagnostics_every"] == 2
    out = capsys.readouterr().out
    assert "collapse diagnostics after epoch 3: COLLAPSED" in out and "effective rank 1.0 of 64" in out


def test_run_passes_diagnostics_every_to_the_trainer(monkeypatch, tmp_path):
    import sslcourse.main_job as main_job

    seen = {}

    def fake_train(model, data, **kwargs):
        seen.update(kwargs)
        return {"interrupted": True, "seconds": 0.0, "config": {"epochs": 1, "batch_size": 2}, "diagnostics": []}

    monkeypatch.setattr(main_job, "train", fake_train)
    main_job.run("simclr", n_train=32, n_test=16, device="cpu", out=tmp_path / "run", data_dir=tmp_path / "data",
                 progress=False, diagnostics_every=4)
    assert seen["diagnostics_every"] == 4
