"""Views per second: backbone alone, the full SimCLR step with on-device augmentation,
and the same step fed by torchvision's per-sample transforms in a DataLoader.

    python benchmarks/bench_augment.py [--device cpu] [--batch-size 256] [--steps 10] [--rounds 3]

The three are measured side by side in one run on the same images. "Backbone alone"
is forward + backward of the backbone on ready-made views; the full step adds the
augmentation of both views, the projection head, NT-Xent and the optimiser step.
"""
import argparse

import torch
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, Dataset

from sslcourse.data.world import load_world
from sslcourse.losses import nt_xent
from sslcourse.methods import build_method
from sslcourse.models import build_backbone
from sslcourse.profiling import seconds_per_call
from sslcourse.transforms import recipe
from sslcourse.utils import resolve_device


def torchvision_simclr(size):
    """The per-sample equivalent of recipe('simclr', size), as a torchvision pipeline."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize([0.5] * 3, [0.5] * 3),
    ])


class TwoViews(Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.transform(self.images[i])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    b, steps = args.batch_size, args.steps
    images = load_world(n_train=b * (steps + 2), n_test=10, seed=0).train_images
    method = build_method("simclr", build_backbone(args.backbone), image_size=32).to(device)
    if device.type == "cuda":
        method.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batch = images[:b].to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def backbone_alone(views=torch.randn(2 * b, 3, 32, 32, device=device)):
        with autocast:
            loss = method.backbone(views).float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def simclr_step(x=batch):
        with autocast:
            loss = method.training_step(x, g).float()
        opt.zero_grad()
        loss.backward()
        opt.step()

    augment = recipe("simclr", 32)[0]

    def augment_only():
        augment(batch, g), augment(batch, g)

    per_sample = TwoViews(images, torchvision_simclr(32))
    loader = DataLoader(per_sample, batch_size=b, shuffle=True, num_workers=args.workers, drop_last=True,
                        persistent_workers=args.workers > 0)
    stream = iter(loader)

    def torchvision_augment_only():
        next(stream)

    def torchvision_step():
        v1, v2 = next(stream)
        with autocast:
            z = method.projector(method.backbone(torch.cat([v1, v2]).to(device)))
            loss = nt_xent(*z.float().chunk(2))
        opt.zero_grad()
        loss.backward()
        opt.step()

    views = 2 * b * steps
    rows = {}
    # Interleaved rounds, best of each: one slow round (another process, a cold cache) does not decide.
    for _ in range(args.rounds):
        for name, fn in [("backbone alone (fwd+bwd)", backbone_alone),
                         ("SimCLR step, on-device aug", simclr_step),
                         ("on-device aug only", augment_only),
                         ("torchvision per-sample aug only", torchvision_augment_only),
                         ("SimCLR step, torchvision DataLoader", torchvision_step)]:
            if "torchvision" in name:
                stream = iter(loader)  # noqa: F841 -- a fresh epoch so the loader never runs dry
            rows[name] = max(rows.get(name, 0.0), views / (steps * seconds_per_call(fn, steps, 2, device)))
    base = rows["backbone alone (fwd+bwd)"]
    print(f"device {device}, backbone {args.backbone}, batch {b} images = {2 * b} views, {steps} steps, "
          f"best of {args.rounds} rounds, {torch.get_num_threads()} threads, DataLoader workers {args.workers}")
    print(f"{'':<38}{'views/s':>10}{'x backbone':>12}")
    for name, rate in rows.items():
        print(f"{name:<38}{rate:>10.0f}{rate / base:>12.2f}")


if __name__ == "__main__":
    main()
