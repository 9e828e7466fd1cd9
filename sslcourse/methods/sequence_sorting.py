"""Sequence sorting: which shuffle of four frames is this, up to the direction of time?

Lee, Huang, Singh, Yang. "Unsupervised Representation Learning by Sorting Sequences."
ICCV 2017.

Four frames of a video, in time order, are shuffled by one of the 4! = 24 permutations; the
network predicts which one. A video played backwards is often just as plausible, so a
permutation and its time reversal form one class: 24 / 2 = 12 classes for 4 frames
(n! / 2 for n). Time reversal maps frame i to frame n-1-i, so the shuffle p of the reversed
video shows exactly the frames that the shuffle n-1-p shows of the video itself:

    p = (1, 0, 2, 3)  ~  3 - p = (2, 3, 1, 0)          (b, a, c, d) ~ (c, d, b, a)
    p = (0, 1, 2, 3)  ~  3 - p = (3, 2, 1, 0)          (a, b, c, d) ~ (d, c, b, a)

Each class keeps the lexicographically smaller of the two as its representative P, and
putting the shuffled frames back in the order argsort(P) gives them forward or backward.

The paper's Order Prediction Network (OPN) extracts features of each frame with a shared
network (fc6), then of every pair of frames (fc7, shared over the 6 pairs: the features of
frames i < j concatenated), and classifies the 6 pair features concatenated (fc8):

    f_i = backbone(x_i)                 h_ij = ReLU(W7 [f_i, f_j] + b7)
    logits = W8 [h_01, h_02, h_03, h_12, h_13, h_23] + b8          (12 classes)

Where this differs from the paper, for the world's short videos on a CPU:
- The paper picks 4 frames from windows of high motion (optical-flow magnitude); objects here
  move at a constant velocity, so the frames are any 4 of the T, drawn uniformly.
- fc6 is the backbone's pooled features (no extra layer per frame).
- The paper's channel splitting (one colour channel copied to all three) and spatial jittering
  counter low-level clues of real footage (chromatic aberration, exact pixel alignment); the
  world's renderer has neither, so frames enter as they are.

On the world's 16 px videos, within a CPU lab's budget (a few hundred steps), sorting 4 frames
stayed at chance while sorting 3 (n_frames=3: which frame is the middle one, 3 classes) learned;
like order verification, it learns mostly where the object is.
"""
import itertools

import torch
from torch import nn

from ..utils import check_dim
from .temporal import VideoPretextTask, check_videos, gather_frames, sample_frame_indices


def order_classes(n_frames: int = 4) -> torch.Tensor:
    """(n! / 2, n) int64: one permutation per class, the smaller of p and its time reversal n-1-p."""
    check_dim(n_frames, "n_frames")
    if n_frames < 2:
        raise ValueError(f"n_frames must be at least 2 to have an order, got {n_frames}")
    reverse = lambda p: tuple(n_frames - 1 - i for i in p)   # noqa: E731
    keep = [p for p in itertools.permutations(range(n_frames)) if p < reverse(p)]
    return torch.tensor(keep, dtype=torch.long)


def shuffle_tuples(videos: torch.Tensor, generator: torch.Generator, n_frames: int = 4, classes=None):
    """(N, T, C, H, W) videos -> (shuffled (N, n_frames, C, H, W), labels (N,) int64 in [0, n! / 2)).

    Per video: ``n_frames`` distinct frames in time order, a class c, and a coin that shows them
    in the order classes[c] or in its time reversal. ``classes`` defaults to ``order_classes(n_frames)``.
    """
    check_videos(videos, n_frames)
    classes = order_classes(n_frames) if classes is None else classes
    n = len(videos)
    in_order = sample_frame_indices(n, videos.shape[1], n_frames, generator)     # (N, n_frames)
    labels = torch.randint(len(classes), (n,), generator=generator)
    order = classes[labels]                                                       # (N, n_frames)
    backwards = torch.rand(n, generator=generator) < 0.5
    order = torch.where(backwards[:, None], n_frames - 1 - order, order)
    return gather_frames(videos, in_order.gather(1, order)), labels.to(videos.device)


class SequenceSorting(VideoPretextTask):
    name = "sequence_sorting"
    paper = ("Lee, Huang, Singh, Yang. Unsupervised Representation Learning by Sorting Sequences. "
             "ICCV 2017.")
    summary = "four shuffled frames: predict the shuffle up to time reversal (12 classes), pairwise features"

    def __init__(self, backbone, videos=None, n_frames: int = 4, pair_dim: int = 256):
        """``n_frames`` per tuple (paper: 4; n! / 2 classes); ``pair_dim``: width of the pairwise layer."""
        classes = order_classes(n_frames)                                  # checks n_frames
        super().__init__(backbone, videos, min_frames=n_frames)
        self.n_frames, self.pair_dim = n_frames, check_dim(pair_dim, "pair_dim")
        self.classes = classes                                             # CPU, like the random draws
        self.pairs = torch.combinations(torch.arange(n_frames), 2).T       # (2, n_pairs): i < j
        self.pair = nn.Sequential(nn.Linear(2 * backbone.out_dim, pair_dim), nn.ReLU(inplace=True))   # fc7
        self.head = nn.Linear(self.pairs.shape[1] * pair_dim, len(classes))                          # fc8

    def make_pseudo_labels(self, videos, generator):
        return shuffle_tuples(videos, generator, self.n_frames, self.classes)

    def predict(self, shuffled):
        f = self.encode_frames(shuffled)                                   # (N, n, D)
        i, j = self.pairs
        pairs = torch.cat([f[:, i], f[:, j]], dim=2)                       # (N, n_pairs, 2 D)
        return self.head(self.pair(pairs).flatten(1))                      # (N, n! / 2)

    def hparams(self):
        return {"n_frames": self.n_frames, "pair_dim": self.pair_dim}
