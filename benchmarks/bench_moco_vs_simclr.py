"""MoCo v2 against end-to-end SimCLR at equal batch: time and memory per step, and accuracy
after the same training budget, side by side in one run.

    python benchmarks/bench_moco_vs_simclr.py [--device cpu] [--batch-size 128] [--steps 10]
        [--rounds 3] [--n-train 5000] [--epochs 10] [--queue-size 1024]

MoCo back-propagates through one view per image and encodes the other without gradient;
SimCLR back-propagates through both. So at equal batch MoCo should need less time and
less activation memory per step, while its queue gives it ``queue_size`` negatives instead
of SimCLR's 2(N - 1). (MoCo's paper, at batch 256 on 8 V100s: 5.0 GB and 53 h per 200
epochs for MoCo, 7.4 GB and 65 h end to end.)

Memory is measured as the bytes of tensors that autograd saves for the backward pass
(device independent and deterministic), plus the CUDA allocator's peak on a GPU.
"""
import argparse

import torch

from sslcourse.data.world import load_world
from sslcourse.evaluation import evaluate
from sslcourse.methods import build_method
from sslcourse.models import build_backbone
from sslcourse.profiling import seconds_per_call
from sslcourse.trainer import train
from sslcourse.utils import resolve_device


def saved_activation_bytes(step) -> int:
    """Bytes autograd keeps for backward during ``step()``'s forward pass (each storage once)."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(storages.values())


def build(name, args, device):
    torch.manual_seed(0)
    hparams = {"queue_size": args.queue_size} if name.startswith("moco") else {}
    return build_method(name, build_backbone(args.backbone), image_size=32, **hparams).to(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10, help="training budget for the accuracy comparison")
    parser.add_argument("--queue-size", type=int, default=1024)
    args = parser.parse_args()
    device = resolve_device(args.device)
    names = ("simclr", "moco_v2")
    data = load_world(n_train=args.n_train, n_test=args.n_test, seed=0)
    batch = data.train_images[:args.batch_size].to(device)
    g = torch.Generator().manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    # Time and memory per step, interleaved rounds, best of each.
    methods = {name: build(name, args, device) for name in names}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-3) for name, m in methods.items()}
    per_step, memory, cuda_peak = {}, {}, {}
    for name, method in methods.items():
        memory[name] = saved_activation_bytes(lambda: method.training_step(batch, g).float())
        method.zero_grad(set_to_none=True)
    for _ in range(args.rounds):
        for name, method in methods.items():
            opt = optimizers[name]

            def step():
                with autocast:
                    loss = method.training_step(batch, g).float()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                method.on_step_end(0.5)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            per_step[name] = min(per_step.get(name, float("inf")), seconds_per_call(step, args.steps, 1, device))
            if device.type == "cuda":
                cuda_peak[name] = torch.cuda.max_memory_allocated() / 2**20

    # Accuracy after the same budget: same data, seed, epochs and batch.
    results, seconds = {}, {}
    for name in names:
        method = build(name, args, device)
        history = train(method, data, epochs=args.epochs, batch_size=args.batch_size, device=device, seed=0,
                        knn_every=0, progress=False)
        seconds[name] = history["seconds"]
        results[name] = evaluate(method.backbone, data, device=device)

    print(f"device {device}, backbone {args.backbone}, batch {args.batch_size}, {torch.get_num_threads()} threads; "
          f"step time best of {args.rounds} rounds of {args.steps} steps; MoCo queue {args.queue_size}; "
          f"training {args.epochs} epochs on {args.n_train} world images, tested on {args.n_test}")
    rows = [("ms per step", {n: 1000 * per_step[n] for n in names}, ".1f"),
            ("images per s", {n: args.batch_size / per_step[n] for n in names}, ".0f"),
            ("saved activations, MB", {n: memory[n] / 2**20 for n in names}, ".1f")]
    if cuda_peak:
        rows.append(("CUDA peak allocated, MB", cuda_peak, ".0f"))
    rows += [("negatives per query", {"simclr": 2 * (args.batch_size - 1), "moco_v2": args.queue_size}, "d"),
             ("training seconds", seconds, ".0f")]
    rows += [(f"{key} accuracy", {n: results[n][key] for n in names}, ".3f")
             for key in ("knn", "linear_1pct", "linear_10pct", "linear_100pct")]
    print(f"{'':<26}{'SimCLR':>10}{'MoCo v2':>10}{'MoCo/SimCLR':>13}")
    for label, values, fmt in rows:
        ratio = values["moco_v2"] / values["simclr"] if values["simclr"] else float("nan")
        print(f"{label:<26}{values['simclr']:>10{fmt}}{values['moco_v2']:>10{fmt}}{ratio:>13.2f}")


if __name__ == "__main__":
    main()
