"""Counting visual primitives: the counts of the 4 tiles must add up to the count of the whole.

Noroozi, Pirsiavash, Favaro. "Representation Learning by Learning to Count." ICCV 2017.

A counting network phi maps an image to k non-negative numbers, "counts" of visual primitives
it is free to choose. Counts do not change when the image is scaled, and they add up over
parts of the image: the whole, downsampled 2x (D), holds what its four quadrant tiles
(T_1..T_4) hold together. Counting everything as 0 satisfies that, so a contrastive term asks
the counts of another image y to differ from x's tiles by at least a margin M:

    l(x, y) = ||phi(D o x) - sum_j phi(T_j o x)||^2 + max(0, M - ||phi(D o y) - sum_j phi(T_j o x)||^2)

averaged over the batch (eq. 4-5 of the paper), y another image of the batch.

As in the paper: counts from a ReLU, margin M = 10, and each image downsampled by a randomly
chosen method (here nearest, bilinear, bicubic or area), so that the network cannot tell the
downsampled image from the tiles by its interpolation artefacts and use that to satisfy the loss. The tiles are exactly the size of the downsampled
image (even image sides); all views are resized to ``input_size`` before phi (on 32 px images
they are 16 px, the smallest input of the course's ConvNet, so nothing changes; on 16 px
images the 8 px views are upsampled to 16 px).

Two defaults differ from the paper's, against its one failure mode, the zero solution (every
count 0, the loss stuck at exactly M): k = 100 counts (paper: 1000, AlexNet's last layer) and
AdamW at lr 1e-3. Measured on 1000 world images: with k = 1000 the loss sat at M = 10 from the
second epoch at lr 3e-3 (32 px) and at lr 1e-3 (16 px); with k = 100 and lr 1e-3 it fell to
4.9 in 4 epochs (16 px).
"""
import torch
import torch.nn.functional as F

from ..models import MLPHead
from ..transforms import LOCAL_CROP_MIN_SIZE, check_generator, check_images, resize, to_float
from ..utils import check_dim, check_positive, check_tensor
from .pretext import PretextTask

DOWNSAMPLING = ("nearest", "bilinear", "bicubic", "area")
N_QUADRANTS = 4


def downsample_half(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) float images -> (N, C, H/2, W/2), each image by one of ``DOWNSAMPLING`` at random."""
    n, _, height, width = images.shape
    method = torch.randint(len(DOWNSAMPLING), (n,), generator=generator)
    out = images.new_empty(n, images.shape[1], height // 2, width // 2)
    for m, mode in enumerate(DOWNSAMPLING):
        picked = (method == m).nonzero().flatten().to(images.device)
        if len(picked):
            smooth = {"antialias": True} if mode in ("bilinear", "bicubic") else {}
            out[picked] = F.interpolate(images[picked], size=out.shape[-2:], mode=mode, **smooth)
    return out


def quadrants(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4, C, H/2, W/2): top-left, top-right, bottom-left, bottom-right."""
    rows = images.unflatten(2, (2, images.shape[2] // 2))                     # (N, C, 2, H/2, W)
    cells = rows.unflatten(4, (2, images.shape[3] // 2))                       # (N, C, 2, H/2, 2, W/2)
    return cells.permute(0, 2, 4, 1, 3, 5).flatten(1, 2)


def counting_views(images: torch.Tensor, generator: torch.Generator):
    """(N, C, H, W) images, H and W even -> (downsampled, tiles, other):

    downsampled (N, C, H/2, W/2) = D o x, tiles (N, 4, C, H/2, W/2) = T_j o x, and other (N,) the
    index of the image y contrasted with x, a random other image of the batch (never x itself).
    """
    check_images(images)
    check_generator(generator)
    n, _, height, width = images.shape
    if n < 2:
        raise ValueError(f"counting contrasts each image with another one of the batch: need N >= 2, got {n}")
    if height % 2 or width % 2 or height < 2:
        raise ValueError(f"counting splits images into 2x2 tiles: height and width must be even, "
                         f"got {height}x{width}")
    x = images if images.is_floating_point() else images.float()
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n
    return downsample_half(x, generator), quadrants(x), other.to(images.device)


def counting_loss(down_counts: torch.Tensor, tile_counts: torch.Tensor, other_counts: torch.Tensor,
                  margin: float = 10.0) -> torch.Tensor:
    """The paper's loss, averaged over the batch.

    down_counts (N, k) = phi(D o x), tile_counts (N, 4, k) = phi(T_j o x), other_counts (N, k) = phi(D o y).
    """
    check_tensor(down_counts, "down_counts", ndim=2, floating=True)
    check_tensor(tile_counts, "tile_counts", ndim=3, floating=True)
    check_tensor(other_counts, "other_counts", ndim=2, floating=True)
    n, k = down_counts.shape
    if tile_counts.shape != (n, N_QUADRANTS, k) or other_counts.shape != (n, k):
        raise ValueError(f"counting_loss needs down_counts (N, k), tile_counts (N, 4, k), other_counts (N, k); got "
                         f"{tuple(down_counts.shape)}, {tuple(tile_counts.shape)}, {tuple(other_counts.shape)}")
    tiles_total = tile_counts.sum(dim=1)                                           # (N, k)
    same = (down_counts - tiles_total).pow(2).sum(dim=1)                           # (N,)
    different = (other_counts - tiles_total).pow(2).sum(dim=1)
    return (same + F.relu(margin - different)).mean()


class Counting(PretextTask):
    name = "counting"
    paper = "Noroozi, Pirsiavash, Favaro. Representation Learning by Learning to Count. ICCV 2017."
    summary = "counts of the 4 tiles sum to the count of the downsampled image; margin against the zero solution"
    defaults = {**PretextTask.defaults, "lr": 1e-3, "batch_size": 64}

    def __init__(self, backbone, image_size: int = 32, n_counts: int = 100, margin: float = 10.0,
                 input_size: int | None = None, head_hidden_dim: int = 512):
        """phi = ReLU(head(backbone(x))), the head Linear-BN-ReLU-Linear to ``n_counts`` (k).
        ``input_size`` None: half the image size, at least 16 px.
        """
        super().__init__(backbone)
        self.image_size = image_size
        self.n_counts = check_dim(n_counts, "n_counts")
        self.margin = check_positive(margin, "margin")
        self.input_size = (max(image_size // 2, LOCAL_CROP_MIN_SIZE) if input_size is None
                           else check_dim(input_size, "input_size"))
        self.head_hidden_dim = check_dim(head_hidden_dim, "head_hidden_dim")
        self.head = MLPHead(backbone.out_dim, head_hidden_dim, n_counts)

    def count(self, x: torch.Tensor) -> torch.Tensor:
        """phi: (N, C, H, W) normalised float images -> (N, k) non-negative counts."""
        return F.relu(self.head(self.backbone(x)))

    def make_pseudo_labels(self, images, generator):
        """-> inputs (5N, C, s, s): the N downsampled images, then image i's 4 tiles at rows N + 4i..N + 4i + 3;
        targets (N,): the index of each image's contrast image y."""
        down, tiles, other = counting_views(to_float(images), generator)
        return resize(torch.cat([down, tiles.flatten(0, 1)]), self.input_size), other

    def predict(self, inputs):
        return self.count(inputs)

    def loss(self, predictions, targets):
        n = len(targets)
        down, tiles = predictions[:n], predictions[n:].unflatten(0, (n, N_QUADRANTS))
        return counting_loss(down, tiles, down[targets], self.margin)

    def hparams(self):
        return {"image_size": self.image_size, "n_counts": self.n_counts, "margin": self.margin,
                "input_size": self.input_size, "head_hidden_dim": self.head_hidden_dim}
