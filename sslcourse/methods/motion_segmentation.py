"""Learning features by watching objects move: draw the motion mask from one still frame.

Pathak, Girshick, Dollár, Darrell, Hariharan. "Learning Features by Watching Objects
Move." CVPR 2017.

    m_t = motion_mask(x_{t-1}, x_t, x_{t+1})      the automatic annotator (sslcourse.data.motion)
    m^  = g(f(x_t))                                one frame: backbone f, decoder g -> (H, W) logits
    L   = mean_p BCE(sigmoid(m^(p)), m_t(p))       per-pixel cross-entropy against the pseudo mask

The annotator sees three frames and the network only one, so to draw the mask it must find
the object in a still image: its shape against the textured background and the clutter. The
pseudo labels are computed from each batch's clips as it comes (a frame t drawn per clip
from 1 .. T-2, which have a neighbour on either side), so nothing is stored besides the clips.

Where this differs from the paper, for 16-32 px videos and CPU runs:
- the paper's annotator is uNLC on real videos; here frame differences (see
  ``sslcourse.data.motion`` for what that misses);
- the paper's network is AlexNet with a low-resolution mask on top; here the decoder of the
  generation-based tasks (``ConvDecoder``) draws a full-resolution map from the backbone's
  pooled features only, so the whole mask passes through the representation that the probes
  evaluate (the world's videos hold one object, whose place and shape fit in a pooled vector);
- plain per-pixel cross-entropy on every pixel, without weights for the rarer foreground and
  without the paper's crop jittering.

On 2,000 world videos at 16 px (5 epochs), the network's masks reach an IoU of 0.59 with the
true object maps on held-out frames: more than the best mask that ignores the frame (0.35),
less than the annotator (0.66), which sees three frames. The paper finds the network's masks
often cleaner than uNLC's; in this budget it does not outdo its teacher.
"""
import torch
import torch.nn.functional as F

from ..data.motion import _check_radius, _check_threshold, mask_iou, motion_mask
from ..models.decoders import ConvDecoder
from ..transforms import to_float
from ..utils import check_dim, check_tensor, eval_mode
from .temporal import VideoPretextTask, check_videos, gather_frames


def motion_mask_examples(videos: torch.Tensor, generator: torch.Generator, threshold: float = 30.0,
                         radius: int = 3):
    """(N, T, C, H, W) videos, T >= 3 -> (frames (N, C, H, W), pseudo masks (N, H, W) bool), one frame t per video
    drawn uniformly from 1 .. T-2, with its motion mask from frames t-1, t, t+1."""
    check_videos(videos, 3)
    n, frames = videos.shape[:2]
    t = torch.randint(1, frames - 1, (n,), generator=generator)
    triple = gather_frames(videos, t[:, None] + torch.arange(-1, 2))                # (N, 3, C, H, W)
    return triple[:, 1], motion_mask(triple[:, 0], triple[:, 1], triple[:, 2], threshold, radius)


class MotionSegmentation(VideoPretextTask):
    name = "motion_segmentation"
    paper = ("Pathak, Girshick, Dollar, Darrell, Hariharan. Learning Features by Watching Objects Move. "
             "CVPR 2017.")
    summary = "motion masks from frame differences label each frame; draw the mask from the still frame (per-pixel BCE)"
    min_frames = 3

    def __init__(self, backbone, image_size: int = 32, videos=None, threshold: float = 30.0, radius: int = 3,
                 decoder_width: int = 64):
        """``threshold``, ``radius``: the annotator's (``sslcourse.data.motion.motion_masks``);
        ``decoder_width``: channels of the decoder's first map."""
        super().__init__(backbone, videos)
        self.image_size = check_dim(image_size, "image_size")
        self.threshold, self.radius = _check_threshold(threshold), _check_radius(radius)
        self.decoder = ConvDecoder(backbone.out_dim, 1, image_size, decoder_width)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        return super().for_data(backbone, data, **{"image_size": data.image_size, **hparams})

    def make_pseudo_labels(self, videos, generator):
        if check_videos(videos, 3).shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.name} was built for {self.image_size} px frames, got {videos.shape[-1]} px "
                             f"(videos of shape {tuple(videos.shape)})")
        frames, masks = motion_mask_examples(videos, generator, self.threshold, self.radius)
        return frames, masks.float()

    def predict(self, frames):
        """(N, C, H, W) uint8 or [0, 1] frames -> (N, H, W) foreground logits."""
        return self.decoder(self.backbone(to_float(frames)))[:, 0]

    def loss(self, logits, masks):
        return F.binary_cross_entropy_with_logits(logits.float(), masks)

    @torch.no_grad()
    def segment(self, frames: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(N, C, H, W) frames -> (N, H, W) bool: foreground where the predicted probability exceeds 1/2 (eval mode)."""
        check_tensor(frames, "frames", ndim=4)
        device = next(self.parameters()).device
        with eval_mode(self):
            return torch.cat([self.predict(frames[i:i + batch_size].to(device)).cpu() > 0
                              for i in range(0, len(frames), batch_size)])

    def hparams(self):
        return {"image_size": self.image_size, "threshold": self.threshold, "radius": self.radius,
                "decoder_width": self.decoder.width}


def segmentation_iou(method: MotionSegmentation, videos: torch.Tensor, object_maps) -> float:
    """Mean IoU of ``method.segment`` on every frame of ``videos`` (N, T, C, H, W) against the true
    object maps (N, T, H, W; >= 0 on an object, as ``load_videos`` keeps them in ``extras[split]["masks"]``)."""
    check_videos(videos, 1)
    true = torch.as_tensor(object_maps) >= 0
    if true.shape != videos.shape[:2] + videos.shape[-2:]:
        raise ValueError(f"object_maps must be (N, T, H, W) = {tuple(videos.shape[:2] + videos.shape[-2:])} "
                         f"like the videos, got {tuple(true.shape)}")
    return mask_iou(method.segment(videos.flatten(0, 1)), true.flatten(0, 1)).mean().item()
