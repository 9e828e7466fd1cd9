"""The main job: pretrain a backbone, then compare it with its own random init.

``python -m sslcourse pretrain`` and lecture 00 both call :func:`run`, so the table a
student sees in the notebook is made by the same code as the command line's.
"""
import copy
import json
import time
from pathlib import Path

from .data import DATA_ROOT, load_dataset
from .evaluation import evaluate, extract_features
from .methods import METHODS
from .models import build_backbone
from .trainer import train
from .utils import resolve_device, seed_everything

TABLE_ROWS = ("knn", "linear_1pct", "linear_10pct", "linear_100pct")


def default_out(method: str, dataset: str) -> Path:
    return Path("runs") / f"{method}-{Path(dataset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def run(method: str = "simclr", dataset: str = "world", backbone: str = "convnet", epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None, n_train: int | None = None,
        n_test: int | None = None, device="auto", seed: int = 0, out=None, resume: bool = False,
        data_dir=DATA_ROOT, download: bool = False, progress: bool = True, pictures: bool = True,
        diagnostics_every: int = 0) -> dict:
    """Pretrain ``method`` on ``dataset``, evaluate random init and pretrained features, write
    ``checkpoint.pt``, ``results.json``, ``tsne.png`` and ``distances.png`` into ``out``.

    ``diagnostics_every=k > 0`` logs collapse diagnostics every k epochs and after the last
    (``results["history"]["diagnostics"]``, see :func:`sslcourse.trainer.train`).
    Returns the results dict; ``results["history"]["interrupted"]`` tells whether Ctrl-C
    stopped training (then nothing is evaluated and the checkpoint allows ``resume``).
    Raises ValueError (bad values, unlabeled data), FileNotFoundError (missing data) and
    ``TrainingDiverged`` (non-finite loss).
    """
    seed_everything(seed)
    device = resolve_device(device)
    data = load_dataset(dataset, root=Path(data_dir), seed=seed, n_train=n_train, n_test=n_test,
                        download=download)
    out = Path(out) if out is not None else default_out(method, dataset)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}")
    model = METHODS[method].for_data(build_backbone(backbone, channels=data.channels), data)
    random_init = copy.deepcopy(model.backbone)  # the same initial weights, never trained: the baseline
    if progress:
        print(f"{method} on {data} with a {backbone} on {device}; writing to {out}")
    history = train(model, data, epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                    out_dir=out, resume=resume, diagnostics_every=diagnostics_every, progress=progress)
    results = {"method": method, "dataset": data.name, "backbone": backbone, "epochs": history["config"]["epochs"],
               "batch_size": history["config"]["batch_size"], "seed": seed, "seconds": round(history["seconds"], 1),
               "out": str(out), "history": history}
    if history["interrupted"]:
        return results
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"{data.name} has no labels, so it cannot be evaluated; the pretrained model is in "
                         f"{out / 'checkpoint.pt'}")
    results["random_init"] = evaluate(random_init, data, device=device, seed=seed)
    results["pretrained"] = evaluate(model.backbone, data, device=device, seed=seed)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if pictures:
        save_pictures(random_init, model.backbone, data, out, method, device, seed)
    results["model"] = model
    return results


def save_pictures(random_init, pretrained, data, out: Path, method: str, device, seed: int, n: int = 1000):
    """t-SNE and intra- vs inter-class distance histograms, random init beside pretrained."""
    import matplotlib.pyplot as plt

    from .plots import plot_distance_distributions, plot_tsne

    images, labels = data.test_images[:n], data.test_labels[:n]
    features = {"random init": extract_features(random_init, images, device),
                f"{method} pretrained": extract_features(pretrained, images, device)}
    for name, figure in (("tsne.png", plot_tsne(features, labels, data.classes, seed=seed)),
                         ("distances.png", plot_distance_distributions(features, labels, seed=seed))):
        figure.savefig(out / name, dpi=120)
        plt.close(figure)


def format_table(results: dict) -> str:
    """The results table: accuracy of random init and pretrained features, and the gain."""
    lines = [f"{'accuracy':<15}{'random init':>12}{'pretrained':>12}{'gain':>8}"]
    for row in TABLE_ROWS:
        r, p = results["random_init"][row], results["pretrained"][row]
        lines.append(f"{row:<15}{r:>12.3f}{p:>12.3f}{p - r:>+8.3f}")
    return "\n".join(lines)


def format_diagnostics(report: dict) -> str:
    """One line on a ``collapse_report`` (with its ``epoch``), as the trainer logs it."""
    verdict = "COLLAPSED" if report["collapsed"] else "not collapsed"
    return (f"collapse diagnostics after epoch {report['epoch']}: {verdict}; std of normalised outputs "
            f"{report['std']:.4f} = {report['std_ratio']:.2f} x 1/sqrt({report['dim']}), effective rank "
            f"{report['effective_rank']:.1f} of {report['dim']}, uniformity {report['uniformity']:.2f}")
