"""Why SimMIM's frozen features do not beat random init on the world, while MAE's do.

    python benchmarks/masked_probe_ablation.py                      # 8.5 min on a quiet 2-core machine
    python benchmarks/masked_probe_ablation.py epochs=40 fine_tune_seeds=1

Side by side, on the same 2,000 / 1,000 world images at 16 px, one seed, one thread:

- random init, the ViT that every run starts from;
- MAE at 55% masked (the ratio the MAE learning test uses), encoder on the visible patches only;
- the same MAE with the **mask tokens moved into the encoder** (``encoder_mask_tokens=True``),
  SimMIM-style: every patch enters the encoder, the masked ones replaced by a learned token, and
  the decoder reads all L outputs. This is MAE's own ablation (He et al. 2022, Table 1c, where
  the encoder without mask tokens won), and one of the choices SimMIM makes the other way;
- SimMIM with its defaults (2x2-patch blocks, 60% masked, linear head, l1 on raw pixels).

Each is probed frozen (kNN and linear probe, :func:`sslcourse.experiments.probe`) and fine-tuned
end to end (:func:`sslcourse.evaluation.fine_tune`, 10 epochs, batch 64) with a few fine-tuning
seeds, because one fine-tuning seed moves the accuracy by a few points. Measured (defaults):

                                          kNN  linear   fine-tuned (seeds)       seconds
    random init                         0.104   0.201   0.253 0.192 0.213  mean 0.219      86
    MAE                                 0.175   0.229   0.244 0.258 0.236  mean 0.246     120
    MAE, mask tokens in the encoder     0.135   0.186   0.262 0.227 0.247  mean 0.245     160
    SimMIM                              0.106   0.173   0.243 0.223 0.202  mean 0.223     143
"""
import json
import sys
import time

import torch

from sslcourse.data.world import load_world
from sslcourse.evaluation import fine_tune
from sslcourse.experiments import initial_backbone, pretrain, probe

torch.set_num_threads(1)
cfg = dict(epochs=20, n_train=2000, n_test=1000, image_size=16, batch_size=32, mae_ratio=0.55, fine_tune_seeds=3,
           seed=0)
for arg in sys.argv[1:]:
    key, value = arg.split("=")
    if key not in cfg:
        sys.exit(f"unknown setting {key!r}; choose from {', '.join(cfg)}")
    cfg[key] = type(cfg[key])(value)

data = load_world(n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0, image_size=cfg["image_size"])
train_settings = dict(epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"])
runs = {
    "random init": lambda: initial_backbone(data, cfg["seed"], "vit"),
    "MAE": lambda: pretrain("mae", data, backbone="vit", mask_ratio=cfg["mae_ratio"], **train_settings)[0].backbone,
    "MAE, mask tokens in the encoder": lambda: pretrain("mae", data, backbone="vit", mask_ratio=cfg["mae_ratio"],
                                                        encoder_mask_tokens=True, **train_settings)[0].backbone,
    "SimMIM": lambda: pretrain("simmim", data, backbone="vit", **train_settings)[0].backbone,
}
print(json.dumps(cfg))
print(f"{'':<34}{'kNN':>7}{'linear':>8}   fine-tuned (seeds)       seconds")
for name, build in runs.items():
    start = time.time()
    backbone = build()
    frozen = probe(backbone, data, seed=cfg["seed"])
    tuned = [fine_tune(backbone, data, epochs=10, batch_size=64, seed=s, progress=False)
             for s in range(cfg["fine_tune_seeds"])]
    print(f"{name:<34}{frozen['knn']:>7.3f}{frozen['linear']:>8.3f}   "
          f"{' '.join(f'{t:.3f}' for t in tuned)}  mean {sum(tuned) / len(tuned):.3f}   {time.time() - start:5.0f}",
          flush=True)
