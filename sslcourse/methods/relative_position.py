"""Relative patch position: where does the second patch lie around the first, of 8 places?

Doersch, Gupta, Efros. "Unsupervised Visual Representation Learning by Context
Prediction." ICCV 2015.

    on a 3x3 grid of patches, take the centre one and one of its 8 neighbours, label y in 0..7
    (0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right)
    y_hat = classifier([f(centre), f(neighbour)])       one backbone f for both patches
    loss = cross-entropy(y_hat, y)

Trivial shortcuts, and the paper's fixes. Neighbouring patches continue each other's edges and
textures: a **gap** between the patches (paper: 48 px between 96 px patches) and a random
**jitter** of each patch (up to 7 px) make low-level continuity useless. Lenses shift colour
channels against each other more towards the image borders (chromatic aberration), which tells
a patch's absolute position: the paper drops 2 of the 3 colour channels of each patch and
replaces them with faint noise ("colour dropping"), or projects out the green-magenta axis.

Sizes on small images. The paper's patches are 96 px in images of 150K-450K pixels. A 3x3
grid must fit in the image: 3 P + 2 G + 2 J <= image side (P patch, G gap, J jitter). On 32 px
images that leaves patches of 8 px, gaps of 3 px and 1 px of jitter (the defaults for
``image_size=32``: P = side // 4, the rest split between gaps and jitter); the gap is 3/8 of
a patch (paper: 1/2) and the jitter 1/8 (paper: 7/96). Patches are resized to ``input_size``
(16 px by default, the smallest input the course's ConvNet takes) before the backbone.

Colour dropping is here (``color_drop_p``, default 0): the course's world is rendered, without
lenses, so it has no chromatic aberration to hide; switch it on for real photographs. (On 2000
world images, 8 epochs, it only slowed the task down: loss 2.06 against 1.70 without it.)
"""
import torch

from ..models import MLPHead
from ..transforms import LOCAL_CROP_MIN_SIZE, check_generator, check_images, check_prob, resize, to_float
from ..utils import check_dim
from .pretext import PretextTask

# (row, column) of each label's neighbour, in grid cells from the centre patch.
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _check_count(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_patch_grid(height: int, width: int, patch_size: int, gap: int, jitter: int) -> None:
    """Raise unless a 3x3 grid of ``patch_size`` patches, ``gap`` apart, each moved by up to
    ``jitter`` pixels, fits in ``height`` x ``width`` images and jittered patches cannot overlap."""
    _check_count(patch_size, "patch_size", 1)
    _check_count(gap, "gap", 0)
    _check_count(jitter, "jitter", 0)
    if 2 * jitter > gap:
        raise ValueError(f"jitter must be at most gap / 2, so that two jittered patches cannot overlap; "
                         f"got gap={gap}, jitter={jitter}")
    needed = 3 * patch_size + 2 * gap + 2 * jitter
    if needed > min(height, width):
        raise ValueError(f"a 3x3 grid of {patch_size} px patches with {gap} px gaps and {jitter} px jitter needs "
                         f"images of at least 3*{patch_size} + 2*{gap} + 2*{jitter} = {needed} px, "
                         f"got {height}x{width}")


def default_patch_grid(image_size: int) -> tuple[int, int, int]:
    """(patch_size, gap, jitter) for square images of ``image_size`` px: a quarter of the side per
    patch, the remaining quarter split into 2 gaps and 2 jitters (32 px: 8, 3, 1)."""
    patch = image_size // 4
    room = image_size - 3 * patch
    jitter = room // 8
    return patch, (room - 2 * jitter) // 2, jitter


def crop_patches(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) images, (N, K) top and left corners -> (N, K, C, size, size): K patches per image."""
    offsets = torch.arange(size)
    rows = (top[..., None] + offsets).to(images.device)                     # (N, K, size)
    cols = (left[..., None] + offsets).to(images.device)
    batch = torch.arange(len(images), device=images.device).view(-1, 1, 1, 1)
    # Advanced indices on dims 0, 2, 3 with a slice between them: the channels come last.
    return images[batch, :, rows[..., :, None], cols[..., None, :]].permute(0, 1, 4, 2, 3)


def drop_colours(patches: torch.Tensor, generator: torch.Generator, noise_ratio: float = 0.01) -> torch.Tensor:
    """Doersch et al.'s colour dropping: keep one random channel per patch, replace the other two by
    Gaussian noise with ``noise_ratio`` times the kept channel's standard deviation (paper: ~1/100)."""
    n, c = patches.shape[:2]
    kept = torch.randint(c, (n,), generator=generator).to(patches.device)
    noise = torch.randn(patches.shape, generator=generator).to(patches.device, patches.dtype)
    keep = (torch.arange(c, device=patches.device) == kept[:, None]).view(n, c, 1, 1)  # (N, C, 1, 1)
    kept_std = patches[torch.arange(n, device=patches.device), kept].flatten(1).std(dim=1).view(n, 1, 1, 1)
    return torch.where(keep, patches, noise * noise_ratio * kept_std)


def sample_patch_pairs(images: torch.Tensor, generator: torch.Generator, patch_size: int, gap: int, jitter: int):
    """(N, C, H, W) images -> (centre, neighbour, labels): two (N, C, P, P) patches and (N,) labels in 0..7.

    Per image, a 3x3 grid of cells of side P + G sits at a random place in the image; the centre
    patch and the neighbour ``NEIGHBOUR_OFFSETS[label]`` are each moved by their own random jitter
    in [-J, J] along both axes. Any dtype; outputs on the images' device.
    """
    check_images(images)
    check_generator(generator)
    n, _, height, width = images.shape
    check_patch_grid(height, width, patch_size, gap, jitter)
    cell, extent = patch_size + gap, 3 * patch_size + 2 * gap
    labels = torch.randint(len(NEIGHBOUR_OFFSETS), (n,), generator=generator)
    # The grid's top-left corner, far enough from the borders for any jitter.
    origin = torch.stack([torch.randint(jitter, side - extent - jitter + 1, (n,), generator=generator)
                          for side in (height, width)], dim=1)                                # (N, 2)
    moves = torch.randint(-jitter, jitter + 1, (2, n, 2), generator=generator)             # centre, neighbour
    centre_at = origin + cell + moves[0]                                                    # (N, 2) row, column
    neighbour_at = origin + cell * (1 + torch.tensor(NEIGHBOUR_OFFSETS)[labels]) + moves[1]
    corners = torch.stack([centre_at, neighbour_at], dim=1)                                 # (N, 2 patches, 2)
    patches = crop_patches(images, corners[..., 0], corners[..., 1], patch_size)            # (N, 2, C, P, P)
    return patches[:, 0], patches[:, 1], labels.to(images.device)


class RelativePosition(PretextTask):
    name = "relative_position"
    paper = ("Doersch, Gupta, Efros. Unsupervised Visual Representation Learning by Context Prediction. "
             "ICCV 2015.")
    summary = "predict where a neighbour patch lies around the centre patch (8 places), with gaps and jitter"
    defaults = {**PretextTask.defaults, "lr": 3e-3, "batch_size": 64}

    def __init__(self, backbone, image_size: int = 32, patch_size: int | None = None, gap: int | None = None,
                 jitter: int | None = None, input_size: int = LOCAL_CROP_MIN_SIZE, color_drop_p: float = 0.0,
                 head_hidden_dim: int = 512):
        """``patch_size``, ``gap``, ``jitter`` in pixels; None takes :func:`default_patch_grid` of
        ``image_size``. ``color_drop_p``: probability that a pair goes through :func:`drop_colours`
        (each patch keeps its own channel). The head, as the paper's fc7-fc8 on the two patches'
        concatenated features: Linear-BN-ReLU-Linear to 8 classes.
        """
        super().__init__(backbone)
        defaults = default_patch_grid(image_size)
        self.patch_size, self.gap, self.jitter = (default if value is None else value
                                                  for value, default in zip((patch_size, gap, jitter), defaults))
        check_patch_grid(image_size, image_size, self.patch_size, self.gap, self.jitter)
        self.image_size = image_size
        self.input_size = check_dim(input_size, "input_size")
        self.color_drop_p = check_prob(color_drop_p, "color_drop_p")
        self.head_hidden_dim = check_dim(head_hidden_dim, "head_hidden_dim")
        self.head = MLPHead(2 * backbone.out_dim, head_hidden_dim, len(NEIGHBOUR_OFFSETS))

    def make_pseudo_labels(self, images, generator):
        """-> inputs (2N, C, input_size, input_size): the N centre patches then the N neighbours; labels (N,)."""
        centre, neighbour, labels = sample_patch_pairs(to_float(images), generator, self.patch_size, self.gap,
                                                       self.jitter)
        patches = torch.cat([centre, neighbour])
        if self.color_drop_p > 0:
            drop = (torch.rand(len(centre), generator=generator) < self.color_drop_p).repeat(2).to(patches.device)
            patches = torch.where(drop.view(-1, 1, 1, 1), drop_colours(patches, generator), patches)
        return resize(patches, self.input_size), labels

    def predict(self, inputs):
        centre, neighbour = self.backbone(inputs).chunk(2)                    # (N, D) each
        return self.head(torch.cat([centre, neighbour], dim=1))              # (N, 8)

    def hparams(self):
        return {"image_size": self.image_size, "patch_size": self.patch_size, "gap": self.gap,
                "jitter": self.jitter, "input_size": self.input_size, "color_drop_p": self.color_drop_p,
                "head_hidden_dim": self.head_hidden_dim}
