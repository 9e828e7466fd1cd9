"""Contrastive predictive coding on images (rows of patches) and on 1-D signals.

van den Oord, Li, Vinyals. "Representation Learning with Contrastive Predictive Coding."
2018. Images as in Henaff, Srinivas, De Fauw, Razavi, Doersch, Eslami, van den Oord.
"Data-Efficient Image Recognition with Contrastive Predictive Coding." ICML 2020 (CPC v2).

Images: a grid of overlapping patches, each encoded by the backbone into z (one vector per
patch); the rows are time. A context network that only looks upwards summarises the rows
above and the current one into c; W_k c predicts the latent k rows below, among all the
patch latents k rows below in the batch (``sslcourse.losses.cpc``):

    32 x 32 image -> 3 x 3 grid of 16 x 16 patches (stride 8) -> z: (B, D, 3, 3)
    c = upward-looking convolutions of z         (B, C, 3, 3), row r sees rows <= r
    loss = CPC over the columns, predicting k = 1..K rows ahead (K = 1)

Each patch is augmented on its own (colour jitter, grayscale), as CPC v2 does, so that
colour shared by all patches of an image is no shortcut to its latents. The backbone
pools globally, so after training it maps full images to features like any other.

1-D signals (``SequenceCPC``, ``train_sequence_cpc``): a strided 1-D convolution encoder,
a GRU context and the same loss, small enough to learn on ``sslcourse.data.signals`` in
seconds.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import cpc
from ..transforms import color_jitter, normalize, random_grayscale, random_resized_crop, to_float
from .base import Method


def patch_grid(images: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, rows, cols, C, size, size): every size x size patch, ``stride`` apart."""
    patches = images.unfold(2, size, stride).unfold(3, size, stride)   # (B, C, rows, cols, size, size)
    return patches.permute(0, 2, 3, 1, 4, 5)


class UpwardContext(nn.Module):
    """Context over a grid of latents in which row r sees only rows <= r (all columns).

    Each layer is a (2 x 3) convolution over the grid padded with one row of zeros on top:
    it reads the row itself and the one above, so ``layers`` layers reach ``layers`` rows up.
    """

    def __init__(self, dim: int, context_dim: int, layers: int = 2):
        super().__init__()
        dims = [dim] + [context_dim] * layers
        self.convs = nn.ModuleList(nn.Conv2d(i, o, kernel_size=(2, 3), padding=(0, 1)) for i, o in zip(dims, dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:   # (B, D, rows, cols) -> (B, C, rows, cols)
        for i, conv in enumerate(self.convs):
            z = conv(F.pad(z, (0, 0, 1, 0)))              # one zero row on top: no peeking below
            if i < len(self.convs) - 1:
                z = F.relu(z)
        return z


def columns_as_sequences(grid: torch.Tensor) -> torch.Tensor:
    """(B, D, rows, cols) -> (B cols, rows, D): each column a sequence running down the rows."""
    b, d, rows, cols = grid.shape
    return grid.permute(0, 3, 2, 1).reshape(b * cols, rows, d)


class CPC(Method):
    name = "cpc"
    paper = ("van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding. 2018 "
             "(images: Henaff et al. ICML 2020).")
    summary = "predict the latents of the patch rows below from the rows above; InfoNCE over the batch"
    # The CPC paper (Sec. 3.2) cuts 256 px images into a 7 x 7 grid of 64 px patches overlapping by 32 px
    # and trains for hundreds of thousands of steps. On 32 px images, 16 px patches (the ConvNet's smallest input) with
    # stride 8 give a 3 x 3 grid; a step costs about a SimCLR step (stride 4, a 5 x 5 grid: 4.5 times
    # more). On 1,000 world images, 8 epochs: kNN 0.132 at init, 0.218 with K = 1, 0.176 with K = 2
    # (measured). AdamW at batch 64, as SimCLR here.
    defaults = {**Method.defaults, "lr": 3e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, image_size: int = 32, patch_size: int = 16, patch_stride: int = 8,
                 steps: int = 1, context_dim: int = 128, gray_p: float = 0.5):
        """``steps``: K, the number of rows predicted ahead (the grid must have more rows than K)."""
        super().__init__(backbone)
        rows = (image_size - patch_size) // patch_stride + 1 if patch_size <= image_size else 0
        if rows <= steps or steps < 1:
            raise ValueError(f"a {image_size} px image cut into {patch_size} px patches every {patch_stride} px "
                             f"has {rows} rows; predicting steps={steps} rows ahead needs 1 <= steps < rows")
        self.image_size, self.patch_size, self.patch_stride, self.gray_p = image_size, patch_size, patch_stride, gray_p
        self.context = UpwardContext(backbone.out_dim, context_dim)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, backbone.out_dim, bias=False) for _ in range(steps))

    def training_step(self, images, generator):
        x = random_resized_crop(to_float(images, mean=0.0, std=1.0), generator, self.image_size,
                                scale=(0.5, 1.0), flip_p=0.5)                     # (B, C, H, W) in [0, 1]
        grid = patch_grid(x, self.patch_size, self.patch_stride)                  # (B, rows, cols, C, P, P)
        b, rows, cols = grid.shape[:3]
        patches = grid.reshape(b * rows * cols, *grid.shape[3:])
        patches = color_jitter(patches, generator, 0.4, 0.4, 0.4, 0.1, p=0.8)    # each patch its own colours
        patches = normalize(random_grayscale(patches, generator, self.gray_p))
        z = self.backbone(patches).view(b, rows, cols, -1).permute(0, 3, 1, 2)    # (B, D, rows, cols)
        c = self.context(z)                                                       # (B, C, rows, cols)
        return cpc(columns_as_sequences(c), columns_as_sequences(z), self.predictors)

    def hparams(self):
        return {"image_size": self.image_size, "patch_size": self.patch_size, "patch_stride": self.patch_stride,
                "steps": len(self.predictors), "context_dim": self.context.convs[-1].out_channels,
                "gray_p": self.gray_p}


# ---------------------------------------------------------------- 1-D signals

class SignalEncoder(nn.Module):
    """(B, 1, L) signal -> (B, L / 16, dim) latents: strided 1-D convolutions, one latent per 16 samples
    (each sees 44 samples)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(1, dim, 8, stride=4, padding=2), nn.ReLU(),
                                 nn.Conv1d(dim, dim, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv1d(dim, dim, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv1d(dim, dim, 1))
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).transpose(1, 2)


class SequenceCPC(nn.Module):
    """CPC as in the paper's audio model, in miniature: encoder -> z_t, GRU -> c_t, W_k c_t -> z_{t+k}."""

    def __init__(self, dim: int = 32, context_dim: int = 32, steps: int = 4):
        super().__init__()
        self.encoder = SignalEncoder(dim)
        self.gru = nn.GRU(dim, context_dim, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(context_dim, dim, bias=False) for _ in range(steps))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)              # (B, T, D)
        c, _ = self.gru(z)               # (B, T, C): c_t sees z_1..z_t
        return cpc(c, z, self.predictors)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, L) -> (B, C): the context averaged over time, for probes (the paper probes c_t)."""
        c, _ = self.gru(self.encoder(x))
        return c.mean(dim=1)


def train_sequence_cpc(model: SequenceCPC, signals: torch.Tensor, epochs: int = 10, batch_size: int = 64,
                       lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train ``model`` on (N, 1, L) ``signals`` with Adam; return the mean loss of each epoch."""
    if not isinstance(batch_size, int) or not 2 <= batch_size <= len(signals):
        raise ValueError(f"batch_size must be an integer between 2 and the number of signals {len(signals)}, "
                         f"got {batch_size!r}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(signals), generator=generator)
        losses = []
        for start in range(0, len(order) - batch_size + 1, batch_size):
            loss = model.loss(signals[order[start:start + batch_size]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
    model.eval()
    return history
