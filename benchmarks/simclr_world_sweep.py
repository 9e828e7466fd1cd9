"""SimCLR on the world with one setting changed at a time: how the defaults were chosen.

    python benchmarks/simclr_world_sweep.py n=5000 epochs=12 tau=0.2 scale=0.08 bs=64 s=1.0 lr=0.003 gray=0.5

Each key=value overrides one entry of ``cfg`` below (tau: NT-Xent temperature, scale:
lower bound of the crop area, s: colour-jitter strength, gray: grayscale probability,
bs: batch size). Prints the kNN monitor per epoch, the final kNN and linear probes, and
how well the features predict two nuisances (background kind, hue in 10 bins): a method
that learns colour or texture instead of shape shows it there. One thread, so that two
sweeps can run side by side on a 2-core machine.
"""
import json
import sys

import numpy as np
import torch

from sslcourse.data.world import load_world
from sslcourse.evaluation import evaluate, extract_features, linear_probe
from sslcourse.methods.simclr import SimCLR
from sslcourse.models.backbones import ConvNet
from sslcourse.trainer import train
from sslcourse.transforms import Augment

torch.set_num_threads(1)
cfg = dict(widths="16,32,64,128", epochs=8, lr=2e-3, n=3000, tau=0.5, scale=0.08, s=1.0, bs=256, gray=0.2,
           opt="adamw", wd=1e-4)
for arg in sys.argv[1:]:
    key, value = arg.split("=")
    cfg[key] = type(cfg[key])(value)
torch.manual_seed(0)
data = load_world(n_train=cfg["n"], n_test=1000, seed=0)
s = cfg["s"]
augment = Augment(32, scale=(cfg["scale"], 1.0), flip_p=0.5, jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
                  jitter_p=0.8, gray_p=cfg["gray"])
method = SimCLR(ConvNet(3, tuple(int(w) for w in cfg["widths"].split(","))), temperature=cfg["tau"], augment=augment)
history = train(method, data, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["bs"], optimizer=cfg["opt"],
                weight_decay=cfg["wd"], progress=False, knn_every=1, knn_max_test=1000)
final = evaluate(method.backbone, data)
print(json.dumps(cfg), f"s={history['seconds']:.0f}", "loss", [round(x, 2) for x in history["loss"]],
      "knn", [round(k, 3) for k in history["knn"]], "final", {k: round(v, 3) for k, v in final.items()})
train_f, test_f = extract_features(method.backbone, data.train_images), extract_features(method.backbone,
                                                                                         data.test_images)
nuisances = {"background": lambda split: data.extras[split]["background"],
             "hue10": lambda split: (np.asarray(data.extras[split]["hue"]) * 10).astype(int) % 10}
for name, labels in nuisances.items():
    print(name, round(linear_probe(train_f, torch.as_tensor(labels("train")), test_f,
                                   torch.as_tensor(labels("test"))), 3))
