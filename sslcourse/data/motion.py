"""Motion masks from frame differences: an automatic annotator of what moves in a video.

Pathak, Girshick, Dollár, Darrell, Hariharan. "Learning Features by Watching Objects
Move." CVPR 2017. An unsupervised motion segmentation of each video frame labels the pixels
that move; a network then learns to draw those masks from a single still frame, so it must
learn what an object looks like. The annotator needs no labels, only video.

In the world's videos the background and the clutter stay still and only the objects move
(``sslcourse.data.video``), so a pixel whose colour changes between two frames lies on an
object in one of them. Three-frame differencing (a classic of video surveillance):

    D(s, t)(p) = sum_c |x_t(p, c) - x_s(p, c)| > threshold              changed pixels (0..255 units)
    M(s, t)    = fill(close_r(D(s, t)))                                  a solid region: object at s and at t
    mask_t     = M(t-1, t) AND M(t, t+1)                                 the object at t only

The difference of two frames marks the object where it was and where it went, but a
flat-coloured object differs from itself only at its leading and trailing rims: its interior
stays the same colour. ``close_r`` (dilate, then erode, by a (2r+1)-square) joins the rims, and
``fill`` fills the holes, the pixels no path of unchanged pixels links to the image border.
Intersecting the regions of the frame pairs before and after t keeps the object at t.

Where this differs from the paper: Pathak et al. segment real videos (from YFCC100m) with
uNLC, their unsupervised reimplementation of Faktor and Irani's NLC motion segmentation
without its trained edge detector, built on optical flow; its masks are noisy. The world's
static background makes plain frame differences enough, and the masks are noisy in their own
way: a slow object shows a thin change that the closing does not join, an object coloured
like its background changes little, the corners of a rotating shape are cut, and the closing
rounds concave outlines. On the world's videos (16 px, speeds 0.05-0.1 of the side per
frame) the masks reach an IoU of 0.66 with the true object maps, where the all-foreground
mask has 0.14 and the best centred disk, the best mask that ignores the frame, 0.37.
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 765:
        raise ValueError(f"threshold must be a number in [0, 765) (a change summed over 3 channels of 0..255), "
                         f"got {threshold!r}")
    return float(threshold)


def _check_radius(radius) -> int:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0 (pixels of the closing), got {radius!r}")
    return radius


def _as_255(x: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 (0..255) or float [0, 1] frames -> float32 in 0..255."""
    if x.dtype == torch.uint8:
        return x.float()
    if not x.is_floating_point():
        raise TypeError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {x.dtype}")
    return x.float() * 255


def frame_difference(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) frames, uint8 or [0, 1] float -> (N, H, W) float: sum over channels of
    |second - first|, in 0..255 units."""
    check_tensor(first, "first", ndim=4)
    check_tensor(second, "second", ndim=4)
    if first.shape != second.shape:
        raise ValueError(f"the two frames must have the same shape (N, C, H, W), got {tuple(first.shape)} "
                         f"and {tuple(second.shape)}")
    return (_as_255(second, "second") - _as_255(first, "first")).abs().sum(dim=1)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) bool -> bool: True within ``radius`` (a square) of a True pixel."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, 1, radius)[:, 0] > 0


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) bool -> bool: True where every pixel within ``radius`` is (outside the image counts as True)."""
    return ~dilate(~mask, radius)


def close(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) bool -> bool: dilate, then erode, by ``radius``; joins parts up to 2 ``radius`` apart.

    On a canvas padded by ``radius`` (False), so that the image border neither stops the dilation
    nor keeps what the dilation carried up to it.
    """
    if radius == 0:
        return mask
    padded = F.pad(mask, (radius,) * 4)
    return erode(dilate(padded, radius), radius)[:, radius:-radius, radius:-radius]


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> bool: ``mask`` plus every pixel that no 4-connected path of False pixels links to the border.

    Morphological reconstruction: the outside grows from the border's False pixels, one
    cross-shaped dilation at a time, within the False pixels, until it stops changing.
    """
    free = ~mask
    outside = torch.zeros_like(mask)
    outside[:, 0, :], outside[:, -1, :], outside[:, :, 0], outside[:, :, -1] = True, True, True, True
    outside &= free
    cross = torch.tensor([[0., 1., 0.], [1., 1., 1.], [0., 1., 0.]], device=mask.device).view(1, 1, 3, 3)
    while True:
        grown = (F.conv2d(outside[:, None].float(), cross, padding=1)[:, 0] > 0) & free
        if torch.equal(grown, outside):
            return ~outside
        outside = grown


def changed_region(first: torch.Tensor, second: torch.Tensor, threshold: float = 30.0, radius: int = 3):
    """M(s, t): (N, C, H, W) frames s and t -> (N, H, W) bool, the changed pixels closed by ``radius`` and filled."""
    changed = frame_difference(first, second) > _check_threshold(threshold)          # (N, H, W)
    return fill_holes(close(changed, _check_radius(radius)))


def motion_mask(previous: torch.Tensor, frame: torch.Tensor, following: torch.Tensor, threshold: float = 30.0,
                radius: int = 3) -> torch.Tensor:
    """Frames t-1, t and t+1, each (N, C, H, W) -> (N, H, W) bool: the moving pixels of frame t."""
    return changed_region(previous, frame, threshold, radius) & changed_region(frame, following, threshold, radius)


def motion_masks(videos: torch.Tensor, threshold: float = 30.0, radius: int = 3) -> torch.Tensor:
    """(N, T, C, H, W) videos, T >= 3, uint8 or [0, 1] float -> (N, T - 2, H, W) bool motion masks.

    ``[:, i]`` is the mask of frame i + 1: the first and last frames lack a neighbour on one side.
    ``threshold``: the change (summed over channels, 0..255 units) above which a pixel moved;
    ``radius``: of the closing that joins an object's rims, up to 2 ``radius`` px apart (on the world's
    videos, IoU with the true object maps at 16 px: 0.52 with radius 1, 0.61 with 2, 0.66 with 3 to 5;
    at 32 px: 0.66 with 3, 0.74 with 5).
    """
    check_tensor(videos, "videos", ndim=5)
    if videos.shape[1] < 3:
        raise ValueError(f"videos must have at least 3 frames (N, T, C, H, W), got shape {tuple(videos.shape)}")
    n, frames = videos.shape[:2]
    changed = changed_region(videos[:, :-1].flatten(0, 1), videos[:, 1:].flatten(0, 1), threshold, radius)
    changed = changed.view(n, frames - 1, *videos.shape[-2:])                        # M(t, t+1), t = 0 .. T-2
    return changed[:, :-1] & changed[:, 1:]


def mask_iou(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool masks -> (N,) intersection over union per image (1 where both are empty)."""
    check_tensor(predicted, "predicted", ndim=3)
    check_tensor(true, "true", ndim=3)
    if predicted.shape != true.shape or predicted.dtype != torch.bool or true.dtype != torch.bool:
        raise ValueError(f"predicted and true must be bool masks of one shape (N, H, W), got "
                         f"{predicted.dtype} {tuple(predicted.shape)} and {true.dtype} {tuple(true.shape)}")
    intersection = (predicted & true).flatten(1).sum(1).float()
    union = (predicted | true).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))



def frame_blind_iou(true: torch.Tensor) -> float:
    """(..., H, W) bool object masks -> the best mean IoU of a mask that ignores the frame.

    The candidates are the all-foreground mask and a centred disk of every radius from 1 to H - 1:
    what a segmenter scores by drawing the same blob on every frame. A segmenter, or an annotator,
    reads the image only where it beats this.
    """
    check_tensor(true, "true")
    if true.dim() < 3 or true.dtype != torch.bool:
        raise ValueError(f"true must be bool masks (..., H, W), got {true.dtype} {tuple(true.shape)}")
    flat = true.flatten(0, -3)                                                # (N, H, W)
    height, width = flat.shape[-2:]
    rows = torch.arange(height, device=true.device)[:, None] - (height - 1) / 2
    cols = torch.arange(width, device=true.device)[None, :] - (width - 1) / 2
    distance = (rows ** 2 + cols ** 2).sqrt()                                 # (H, W) from the centre
    candidates = [torch.ones_like(distance, dtype=torch.bool)] + [distance <= r for r in range(1, height)]
    return max(mask_iou(c.expand_as(flat), flat).mean().item() for c in candidates)
