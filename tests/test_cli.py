"""The command line: listing, validation (exit code 2 with what is accepted), and the main job."""
import json
import subprocess
import sys

import pytest

from sslcourse.cli import main
from sslcourse.methods import METHODS


def test_methods_lists_every_registered_method_with_its_paper(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, cls in METHODS.items():
        assert name in out and cls.paper in out


@pytest.mark.parametrize("argv,message", [
    (["pretrain", "--method", "nope"], "invalid choice: 'nope'"),
    (["pretrain", "--backbone", "vgg"], "invalid choice: 'vgg'"),
    (["pretrain", "--epochs", "0"], "--epochs must be a positive integer"),
    (["pretrain", "--epochs", "three"], "invalid int value"),
    (["pretrain", "--batch-size", "1"], "--batch-size must be at least 2"),
    (["pretrain", "--lr", "-0.1"], "--lr must be > 0"),
    (["pretrain", "--dataset", "imagenet"], "neither a known data set (world, world-shortcut, world-upright, cifar10"),
    (["pretrain", "--device", "quantum"], "--device"),
    (["pretrain", "--resume"], "--resume needs --out"),
    (["pretrain", "--n-train", "-5"], "--n-train must be a positive integer"),
    ([], "required"),
])
def test_bad_values_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_real_data_set_exits_2_and_names_the_world(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", "--dataset", "cifar10", "--epochs", "1", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "--dataset world" in err


def test_pretrain_writes_checkpoint_results_and_pictures(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "sslcourse", "pretrain", "--method", "simclr", "--epochs", "1", "--batch-size", "64",
         "--n-train", "256", "--n-test", "128", "--device", "cpu", "--out", str(out), "--no-progress",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "random init" in result.stdout and "linear_100pct" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert {"method", "dataset", "epochs", "seconds"} <= results.keys()
    assert (results["method"], results["dataset"], results["epochs"]) == ("simclr", "world", 1)
    for model in ("random_init", "pretrained"):
        assert set(results[model]) == {"knn", "linear_1pct", "linear_10pct", "linear_100pct"}
        assert all(0.0 <= v <= 1.0 for v in results[model].values())
    for name in ("checkpoint.pt", "tsne.png", "distances.png"):
        assert (out / name).stat().st_size > 1000, name
