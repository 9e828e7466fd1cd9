"""What the temporal pretext tasks share: videos reach ``training_step`` by index.

The one trainer batches single images from ``data.train_images``. A video data set
(``sslcourse.data.video.load_videos``, ``--dataset videos``) keeps the first frame of each
video there, so the trainer, the kNN monitor and the probes all see single frames, and it
keeps the clips in ``data.train_videos``. A temporal task asks the trainer for each image's
``index`` (``batch_extras``), keeps the training clips it was built with (``for_data``), and
looks up the batch's clips by index:

    clips = videos[index]                       (N, T, C, H, W) uint8, moved to the batch's device
    inputs, targets = make_pseudo_labels(clips, generator)

The clips stay where the data set keeps them (the CPU), as the trainer's images do: only a
batch moves to the device. The backbone reads one frame at a time, so the probes evaluate
exactly the network the task trained, on single frames of held-out videos.
"""
import torch

from ..transforms import to_float
from ..utils import check_tensor
from .pretext import PretextTask


def check_videos(videos, min_frames: int, name: str = "videos") -> torch.Tensor:
    """Raise a clear error unless ``videos`` is (N, T, C, H, W) with C in (1, 3) and T >= ``min_frames``."""
    check_tensor(videos, name, ndim=5)
    if videos.shape[2] not in (1, 3):
        raise ValueError(f"{name} must be (N, T, C, H, W) with C in (1, 3), got shape {tuple(videos.shape)}")
    if videos.shape[1] < min_frames:
        raise ValueError(f"{name} must have at least {min_frames} frames per video for this task, "
                         f"got {videos.shape[1]} (shape {tuple(videos.shape)})")
    if videos.dtype != torch.uint8 and not videos.is_floating_point():
        raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {videos.dtype}")
    return videos


def sample_frame_indices(n: int, frames: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(n, k) frame indices, k distinct ones per video drawn uniformly from ``frames``, in time order."""
    if k > frames:
        raise ValueError(f"cannot draw {k} distinct frames from videos of {frames}")
    return torch.rand(n, frames, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values


def gather_frames(videos: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(N, T, C, H, W) videos and (N, k) frame indices -> (N, k, C, H, W): each video's chosen frames."""
    indices = indices.to(videos.device)
    return videos[torch.arange(len(videos), device=videos.device)[:, None], indices]


class VideoPretextTask(PretextTask):
    """A pretext task whose pseudo labels come from clips of ``min_frames`` frames or more.

    ``videos`` (N, T, C, H, W), the training clips, is data, not a hyper-parameter: ``for_data``
    passes ``data.train_videos``; a method rebuilt from a checkpoint's ``hparams`` has none
    until ``videos`` is set, and its backbone works on images all the same.
    """
    batch_extras = ("index",)
    min_frames = 2

    def __init__(self, backbone, videos: torch.Tensor | None = None, min_frames: int | None = None):
        """``min_frames``: the fewest frames per video the task needs, when it depends on its settings."""
        super().__init__(backbone)
        self.min_frames = type(self).min_frames if min_frames is None else min_frames
        self.videos = None if videos is None else check_videos(videos, self.min_frames)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        videos = getattr(data, "train_videos", None)
        if videos is None:
            raise ValueError(f"{cls.name} learns from videos, but the data set {data.name!r} holds still images; "
                             f"use sslcourse.data.video.load_videos (--dataset videos on the command line)")
        return cls(backbone, **{"videos": videos, **hparams})

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, k, C, H, W) uint8 or [0, 1] float frames -> (N, k, D): the backbone on each frame, one pass."""
        n, k = frames.shape[:2]
        return self.backbone(to_float(frames.flatten(0, 1))).view(n, k, -1)

    def training_step(self, images, generator, index=None):
        if self.videos is None:
            raise RuntimeError(f"{self.name} has no training videos: build it with for_data(backbone, "
                               f"load_videos(...)) or set .videos to (N, T, C, H, W) clips")
        if index is None:
            raise ValueError(f"{self.name}.training_step needs index, each image's position in the training set")
        clips = self.videos[index.cpu()].to(images.device, non_blocking=True)     # (N, T, C, H, W)
        return super().training_step(clips, generator)
