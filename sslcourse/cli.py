"""Command line: ``python -m sslcourse pretrain --method simclr`` and ``python -m sslcourse methods``."""
import argparse
import sys
from pathlib import Path

from .data import DATA_ROOT, DATASETS
from .methods import METHODS
from .models import BACKBONES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sslcourse",
                                     description="Self-supervised learning from scratch, on a laptop CPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{pretrain,methods}")
    commands.add_parser("methods", help="list the registered methods with their papers")
    p = commands.add_parser("pretrain", help="pretrain a backbone, then evaluate it against random init",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", default="simclr", choices=sorted(METHODS), help="self-supervised method")
    p.add_argument("--dataset", default="world",
                   help=f"one of {', '.join(DATASETS)}, or the path of an .npz file or folder of images")
    p.add_argument("--backbone", default="convnet", choices=sorted(BACKBONES))
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the method's)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the method's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the method's)")
    p.add_argument("--n-train", type=int, default=None, help="training images (world: generated; others: cut)")
    p.add_argument("--n-test", type=int, default=None, help="test images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default: runs/<method>-<dataset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--data-dir", default=str(DATA_ROOT), help="where data sets are cached and looked for")
    p.add_argument("--download", action="store_true", help="let torchvision download a real data set")
    p.add_argument("--diagnostics-every", type=int, default=0, metavar="K",
                   help="every K epochs (and after the last), log collapse diagnostics of the method's output; 0: off")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def list_methods() -> None:
    width = max(map(len, METHODS))
    for name, cls in sorted(METHODS.items()):
        print(f"{name:<{width}}  {cls.summary}\n{'':<{width}}  {cls.paper}")


def validate(parser, args) -> None:
    """Reject bad values before any work, exiting with code 2 and what is accepted."""
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    if args.batch_size is not None and args.batch_size < 2:
        parser.error(f"--batch-size must be at least 2 (contrastive losses need negatives), got {args.batch_size}")
    if args.diagnostics_every < 0:
        parser.error(f"--diagnostics-every must be an integer >= 0 (0: off), got {args.diagnostics_every}")
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    for flag in ("n_train", "n_test"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    if args.dataset not in DATASETS and not Path(args.dataset).exists():
        parser.error(f"--dataset {args.dataset!r} is neither a known data set ({', '.join(DATASETS)}) "
                     f"nor an existing .npz file or folder")
    if args.resume and args.out is None:
        parser.error("--resume needs --out, the run folder that holds checkpoint.pt")
    if args.resume and not (Path(args.out) / "checkpoint.pt").is_file():
        parser.error(f"--resume: no checkpoint.pt in {args.out}")
    from .utils import resolve_device
    try:
        resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")


def pretrain(parser, args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .main_job import default_out, format_diagnostics, format_table, run
    from .trainer import TrainingDiverged

    validate(parser, args)
    out = args.out or default_out(args.method, args.dataset)
    try:
        results = run(args.method, args.dataset, args.backbone, args.epochs, args.batch_size, args.lr, args.n_train,
                      args.n_test, args.device, args.seed, out, args.resume, args.data_dir, args.download,
                      progress=not args.no_progress, diagnostics_every=args.diagnostics_every)
    except FileNotFoundError as err:
        parser.error(str(err))
    except (TrainingDiverged, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if results["history"]["interrupted"]:
        print(f"Stopped early. Resume with: python -m sslcourse pretrain --method {args.method} "
              f"--dataset {args.dataset} --out {out} --resume")
        return 130
    print(format_table(results))
    if results["history"]["diagnostics"]:
        print(format_diagnostics(results["history"]["diagnostics"][-1]))
    print(f"trained {results['epochs']} epochs in {results['seconds']:.0f} s; wrote checkpoint.pt, "
          f"results.json, tsne.png, distances.png to {out}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "methods":
        list_methods()
        return 0
    return pretrain(parser, args)
