"""MAE's encoder on the visible tokens only against the same encoder on all tokens.

    python benchmarks/bench_mae_encoder.py [--device cpu] [--batch-size 128] [--steps 5] [--rounds 3]
                                           [--mask-ratio 0.75] [--image-size 32] [--patch-size 4]
                                           [--width 128] [--depth 4] [--heads 4] [--threads 0]

One training step of the encoder (forward, a stand-in loss, backward) on a batch, measured
side by side in one run: first on the K = round(L (1 - ratio)) visible tokens that MAE
encodes, then on all L tokens (what SimMIM, or MAE without dropping tokens, encodes).
Interleaved rounds, best of each, so that one slow round (another process) does not decide.
The FLOPs of both forward passes come from ``torch.utils.flop_counter``: the blocks' linear
layers scale with the number of tokens and attention with its square, while the patch
embedding runs on every patch in both cases (MAE embeds all patches, then drops the masked
ones), so the FLOPs ratio comes out near 1 - ratio.
"""
import argparse

import torch

from sslcourse.masking import random_masking
from sslcourse.methods.mae import MAE
from sslcourse.models import ViT
from sslcourse.profiling import best_seconds, forward_flops
from sslcourse.utils import resolve_device


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    vit = ViT(image_size=args.image_size, patch_size=args.patch_size, width=args.width, depth=args.depth,
              heads=args.heads)
    method = MAE(vit, image_size=args.image_size, mask_ratio=args.mask_ratio).to(device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    length = (args.image_size // args.patch_size) ** 2
    keep, _, _ = random_masking(args.batch_size, length, args.mask_ratio, torch.Generator().manual_seed(0), device)
    every = torch.arange(length, device=device).expand(args.batch_size, -1)          # all tokens, in order
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(positions):
        def run():
            with autocast:
                loss = method.encode_visible(x, positions).float().square().mean()
            loss.backward()
        return run

    def forward(positions):
        def run():
            with torch.no_grad(), autocast:
                method.encode_visible(x, positions)
        return run

    cases = {f"visible tokens only ({keep.shape[1]} of {length})": keep, f"all tokens ({length})": every}
    seconds = best_seconds({name: step(positions) for name, positions in cases.items()}, args.rounds, args.steps,
                           device=device)
    flops = {name: forward_flops(forward(positions)) for name, positions in cases.items()}
    visible, everything = cases
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.image_size} px, "
          f"patch {args.patch_size}, width {args.width}, depth {args.depth}, heads {args.heads}, "
          f"mask ratio {args.mask_ratio}; encoder forward + backward, best of {args.rounds} rounds of {args.steps} steps")
    print(f"{'':<32}{'ms/step':>10}{'GFLOP fwd':>12}")
    for name in cases:
        print(f"{name:<32}{seconds[name] * 1000:>10.1f}{flops[name] / 1e9:>12.2f}")
    print(f"ratio visible / all: time {seconds[visible] / seconds[everything]:.2f}, "
          f"FLOPs {flops[visible] / flops[everything]:.2f}")


if __name__ == "__main__":
    main()
