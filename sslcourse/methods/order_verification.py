"""Temporal order verification: is this triplet of frames in the order it happened?

Misra, Zitnick, Hebert. "Shuffle and Learn: Unsupervised Learning using Temporal Order
Verification." ECCV 2016.

From five frames a < b < c < d < e of one video (indices in time order):

    positive (label 1): (b, c, d) or (d, c, b)   the middle frame lies between the other two
    negative (label 0): (b, a, d) or (b, e, d)   the middle frame comes from outside the interval

A shared network embeds each frame (the paper: three AlexNet stacks up to fc7, with shared
weights); the three features are concatenated and a classifier says in order or not
(the paper's fc8, a cross-entropy over 2 classes). A tuple and its reverse get the same
label, because many motions look as plausible played backwards; here negatives are reversed
too, (d, a, b) and (d, e, b), so that the direction of time is no clue in either class.

Where this differs from the paper, for the world's short videos on a CPU:
- The paper samples frames from windows of high motion (by the optical flow's magnitude),
  because near-identical frames make the label ambiguous. Objects here move at a constant
  velocity through the whole video, so every window has the same motion: the five frames are
  drawn uniformly (any 5 of T). The exact flow (``load_videos``) would allow weighing by motion.
- The paper's fc8 is linear on the three fc7 outputs; here the features are the backbone's
  pooled features and the classifier is a 2-layer MLP on their concatenation, since a single
  linear layer cannot tell whether one frame's features lie between the other two's.
- Half the tuples are positive (``positive_fraction``, a setting), so chance is 50%.

What it learns depends on what moves. In the paper, people move, and the features learn their
pose. In the world, objects glide across a still background, so the frames are ordered by where
the object is: on 16 px videos the features learn the object's position well (a linear read-out
of its centre goes from R^2 0.67 at random init to 0.81), its shape, the class, much less.
"""
import torch

from ..models import MLPHead
from ..utils import check_dim
from .temporal import VideoPretextTask, check_videos, gather_frames, sample_frame_indices


def _check_fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def order_tuples(videos: torch.Tensor, generator: torch.Generator, positive_fraction: float = 0.5):
    """(N, T, C, H, W) videos, T >= 5 -> (tuples (N, 3, C, H, W), labels (N,) int64: 1 in order, 0 not).

    Per video: five distinct frames a < b < c < d < e, then (b, c, d) for a positive and
    (b, a, d) or (b, e, d) for a negative, each read backwards with probability 1/2.
    """
    check_videos(videos, 5)
    positive_fraction = _check_fraction(positive_fraction, "positive_fraction")
    n = len(videos)
    a, b, c, d, e = sample_frame_indices(n, videos.shape[1], 5, generator).unbind(dim=1)   # (N,) each
    positive = torch.rand(n, generator=generator) < positive_fraction
    outside = torch.where(torch.rand(n, generator=generator) < 0.5, a, e)   # a frame before b or after d
    middle = torch.where(positive, c, outside)
    backwards = torch.rand(n, generator=generator) < 0.5
    first, last = torch.where(backwards, d, b), torch.where(backwards, b, d)
    indices = torch.stack([first, middle, last], dim=1)                   # (N, 3) frame indices
    return gather_frames(videos, indices), positive.long().to(videos.device)


class OrderVerification(VideoPretextTask):
    name = "order_verification"
    paper = ("Misra, Zitnick, Hebert. Shuffle and Learn: Unsupervised Learning using Temporal Order "
             "Verification. ECCV 2016.")
    summary = "three frames of a video: is the middle one between the other two in time? (binary)"
    min_frames = 5

    def __init__(self, backbone, videos=None, hidden_dim: int = 256, positive_fraction: float = 0.5):
        """``hidden_dim``: width of the classifier on the three concatenated features."""
        super().__init__(backbone, videos)
        self.hidden_dim = check_dim(hidden_dim, "hidden_dim")
        self.positive_fraction = _check_fraction(positive_fraction, "positive_fraction")
        self.head = MLPHead(3 * backbone.out_dim, hidden_dim, 2)

    def make_pseudo_labels(self, videos, generator):
        return order_tuples(videos, generator, self.positive_fraction)

    def predict(self, tuples):
        return self.head(self.encode_frames(tuples).flatten(1))          # (N, 3 D) -> (N, 2)

    def hparams(self):
        return {"hidden_dim": self.hidden_dim, "positive_fraction": self.positive_fraction}
