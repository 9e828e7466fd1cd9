"""One training loop for every method.

Warm-up plus cosine learning-rate schedule, a progress bar (terminal or notebook),
bf16 autocast and channels-last on CUDA, an atomic checkpoint every epoch, exact
resume (mid-epoch too), Ctrl-C that keeps the model and history, a clear stop on a
non-finite loss, a weighted-kNN monitor each epoch, and optional collapse diagnostics.

Randomness comes from two places only: the batch order of epoch e is a permutation
seeded by (seed, e), and every augmentation draws from one generator whose state is
checkpointed. So an interrupted and resumed run ends with the same weights as an
uninterrupted one on the CPU.
"""
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .analysis import collapse_report
from .checkpoint import load_checkpoint, save_atomic
from .evaluation import extract_features, knn_eval
from .utils import check_positive, resolve_device

DIAGNOSTIC_IMAGES = 512


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to 0 (Loshchilov and Hutter 2017)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params, name: str, lr: float, weight_decay: float):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'sgd'")


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def diagnostic_indices(n: int, count: int = DIAGNOSTIC_IMAGES) -> torch.Tensor:
    """``count`` training images spread evenly over the set (sorted folders too), without randomness."""
    return torch.linspace(0, n - 1, min(n, count)).round().long()


@torch.no_grad()
def collapse_diagnostics(method, images: torch.Tensor, device, batch_size: int = 256) -> dict:
    """``collapse_report`` of ``method.embed`` on un-augmented uint8 ``images``, in eval mode.

    Eval mode (BatchNorm's running statistics, no dropout) and no randomness: measuring
    changes neither the weights nor the augmentation generator, so a run trains the same
    with or without diagnostics.
    """
    return collapse_report(extract_features(method, images, device, batch_size, forward=method.embed))


def train(method, data, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          weight_decay: float | None = None, optimizer: str | None = None, warmup_epochs: int | None = None,
          device=None, seed: int = 0, out_dir=None, resume: bool = False, knn_every: int = 1,
          knn_max_train: int = 5000, knn_max_test: int = 1000, diagnostics_every: int = 0, progress: bool = True,
          callback=None) -> dict:
    """Train ``method`` on ``data.train_images``; return the history.

    Unset hyper-parameters come from ``method.defaults``. With ``out_dir``, a checkpoint
    is written there after every epoch and on Ctrl-C; ``resume=True`` continues from it.
    ``callback(method, history, epoch, step)``, if given, runs after every step.
    With ``diagnostics_every=k > 0``, every k epochs and after the last, ``method.embed``
    of 512 fixed training images (un-augmented, eval mode) goes through
    ``sslcourse.analysis.collapse_report``; the progress bar shows its std ratio and
    effective rank. History keys: ``loss`` and ``lr`` (per epoch), ``knn`` (per monitored
    epoch, with ``knn_epoch``), ``diagnostics`` (one report per diagnosed epoch, with its
    ``epoch``), ``seconds``, ``interrupted``.
    """
    cfg = {**method.defaults}
    for key, value in dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           optimizer=optimizer, warmup_epochs=warmup_epochs).items():
        if value is not None:
            cfg[key] = value
    check_positive(cfg["lr"], "lr")
    n = len(data.train_images)
    if not isinstance(cfg["epochs"], int) or cfg["epochs"] < 1:
        raise ValueError(f"epochs must be a positive integer, got {cfg['epochs']!r}")
    if not isinstance(cfg["batch_size"], int) or not 2 <= cfg["batch_size"] <= n:
        raise ValueError(f"batch_size must be an integer between 2 and the training set size {n}, "
                         f"got {cfg['batch_size']!r}")
    if isinstance(diagnostics_every, bool) or not isinstance(diagnostics_every, int) or diagnostics_every < 0:
        raise ValueError(f"diagnostics_every must be an integer >= 0 (epochs between collapse diagnostics, "
                         f"0 for none), got {diagnostics_every!r}")
    unknown = set(method.batch_extras) - {"index", "labels"}
    if unknown:
        raise ValueError(f"{method.name}.batch_extras asks for {sorted(unknown)}; the trainer gives 'index' and 'labels'")
    labels = data.train_labels
    if "labels" in method.batch_extras and labels is None:
        raise ValueError(f"{method.name} is supervised and needs training labels, but {data.name} has none")
    device = resolve_device(device)
    on_cuda = device.type == "cuda"
    method.to(device)
    if on_cuda:
        method.to(memory_format=torch.channels_last)
    opt = make_optimizer(method.parameters(), cfg["optimizer"], cfg["lr"], cfg["weight_decay"])
    steps_per_epoch = n // cfg["batch_size"]   # drop the ragged last batch: BN and in-batch negatives need full ones
    total_steps = cfg["epochs"] * steps_per_epoch
    warmup_steps = min(cfg["warmup_epochs"] * steps_per_epoch, total_steps // 2)
    generator = torch.Generator().manual_seed(seed)
    history = {"loss": [], "lr": [], "knn": [], "knn_epoch": [], "diagnostics": [], "seconds": 0.0,
               "interrupted": False, "config": {**cfg, "seed": seed}}
    diagnostic_images = data.train_images[diagnostic_indices(n)] if diagnostics_every else None
    start_epoch, start_step = 0, 0
    checkpoint_path = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None

    def checkpoint():
        """Save the state before the next step to run: (epoch, step) and the generator there."""
        if checkpoint_path is not None:
            save_atomic({"method": method.name, "hparams": method.hparams(), "model": method.state_dict(),
                         "optimizer": opt.state_dict(), "generator": next_generator_state, "epoch": next_epoch,
                         "step": next_step, "history": history, "partial_loss": running}, checkpoint_path)

    running = []   # losses of the current epoch so far
    if resume:
        if checkpoint_path is None:
            raise ValueError("resume=True needs out_dir, the folder that holds checkpoint.pt")
        state = load_checkpoint(checkpoint_path, map_location=device)
        if state["method"] != method.name:
            raise ValueError(f"{checkpoint_path} holds a {state['method']!r} run, not {method.name!r}")
        method.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history, running = state["history"], state["partial_loss"]
        history["interrupted"] = False
        history.setdefault("diagnostics", [])   # checkpoints written before diagnostics existed
        start_epoch, start_step = state["epoch"], state["step"]

    tic = time.perf_counter() - history["seconds"]
    next_epoch, next_step, next_generator_state = start_epoch, start_step, generator.get_state()
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch + start_step, desc=method.name,
               unit="step", disable=not progress, dynamic_ncols=True)

    def show(epoch: int, loss: float) -> None:
        postfix = {"epoch": f"{epoch + 1}/{cfg['epochs']}", "loss": f"{loss:.3f}",
                   "knn": f"{history['knn'][-1]:.3f}" if history["knn"] else "-"}
        if history["diagnostics"]:
            last = history["diagnostics"][-1]
            postfix.update(std_ratio=f"{last['std_ratio']:.2f}", erank=f"{last['effective_rank']:.1f}")
        bar.set_postfix(postfix)
    try:
        for epoch in range(start_epoch, cfg["epochs"]):
            order = epoch_order(n, seed, epoch)
            method.train()
            for step in range(start_step if epoch == start_epoch else 0, steps_per_epoch):
                global_step = epoch * steps_per_epoch + step
                for group in opt.param_groups:
                    group["lr"] = lr_at(global_step, total_steps, warmup_steps, cfg["lr"])
                index = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
                images = data.train_images[index].to(device, non_blocking=True)
                if on_cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                extras = {"index": index.to(device), "labels": labels[index].to(device) if labels is not None else None}
                extras = {key: extras[key] for key in method.batch_extras}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
                    loss = method.training_step(images, generator, **extras)
                if not torch.isfinite(loss):
                    where = f"the checkpoint in {checkpoint_path.parent}" if checkpoint_path else "no checkpoint"
                    raise TrainingDiverged(
                        f"the {method.name} loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"(lr {opt.param_groups[0]['lr']:.3g}). The last good state is {where}. "
                        f"Try a lower learning rate (--lr), a higher temperature, or check the input images.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                method.on_step_end((global_step + 1) / total_steps)
                running.append(loss.item())
                next_step, next_generator_state = step + 1, generator.get_state()
                bar.update(1)
                show(epoch, running[-1])
                if callback is not None:
                    callback(method, history, epoch, step)
            history["loss"].append(sum(running) / len(running))
            history["lr"].append(opt.param_groups[0]["lr"])
            running = []
            next_epoch, next_step = epoch + 1, 0
            if knn_every and data.train_labels is not None and ((epoch + 1) % knn_every == 0
                                                                or epoch + 1 == cfg["epochs"]):
                history["knn"].append(knn_eval(method.backbone, data, device=device, max_train=knn_max_train,
                                               max_test=knn_max_test))
                history["knn_epoch"].append(epoch + 1)
            if diagnostics_every and ((epoch + 1) % diagnostics_every == 0 or epoch + 1 == cfg["epochs"]):
                report = collapse_diagnostics(method, diagnostic_images, device)
                history["diagnostics"].append({"epoch": epoch + 1, **report})
            show(epoch, history["loss"][-1])
            history["seconds"] = time.perf_counter() - tic
            checkpoint()
    except KeyboardInterrupt:
        # Keep what was trained: the model stays in memory and on disk, and resuming continues
        # with the step that was in flight, from the generator state it started with.
        history["interrupted"] = True
        history["seconds"] = time.perf_counter() - tic
        checkpoint()
        where = f"; checkpoint saved to {checkpoint_path}, continue with --resume" if checkpoint_path else ""
        print(f"\nInterrupted before epoch {next_epoch + 1}, step {next_step + 1}: "
              f"the model and history are kept{where}.")
    finally:
        bar.close()
    method.eval()
    return history
