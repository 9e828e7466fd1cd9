"""Rotation prediction (RotNet): which of four rotations was applied to the image?

Gidaris, Singh, Komodakis. "Unsupervised Representation Learning by Predicting Image
Rotations." ICLR 2018.

    g(X, y) = X rotated by y * 90 degrees,            y in {0, 1, 2, 3}
    loss = -1/(4N) sum_i sum_y log F^y(g(X_i, y))     (eq. 1-3: cross-entropy over the 4 rotations)

The network sees all four rotations of each image in the same batch (the paper found this
better than one random rotation per image). To tell which way is up, it has to find the
objects and know how they usually stand: the paper's argument that the task needs semantics.
Rotations by multiples of 90 degrees move pixels onto pixels, so unlike arbitrary angles they
leave no interpolation artefacts that would give the answer away.

Only where images have an "up": on the course's world every object is drawn at a uniformly
random angle, so a rotated world image is exactly as likely as an unrotated one and the task
cannot be solved above chance there; upright shapes (angle 0: ``load_world(max_angle=0)``, or
``--dataset world-upright``) make it meaningful. Measured with
1000 images at 16 px, 4 epochs: on the world the loss fell only to 1.28 (chance: log 4 = 1.39) and
kNN accuracy went from 0.130 to 0.114; on 1000 scenes drawn upright it went from 0.122 to
0.208 (linear probe 0.232 to 0.356).

``attention_map`` draws what the paper's Figure 3 shows: the activation-based attention of
Zagoruyko and Komodakis ("Paying More Attention to Attention", ICLR 2017),
sum over channels of |A_c|^p of one block's output.
"""
import torch
import torch.nn.functional as F

from ..models import MLPHead
from ..transforms import check_generator, check_images, to_float
from ..utils import check_dim, check_positive, eval_mode
from .pretext import PretextTask

N_ROTATIONS = 4


def rotate_batch(images: torch.Tensor, generator: torch.Generator, all_rotations: bool = True):
    """(N, C, H, W) square images -> (inputs, labels): label y means rotated by y * 90 degrees
    counter-clockwise (``torch.rot90`` with k = y).

    ``all_rotations=True`` (the paper): the four rotations of every image, (4N, C, H, W) with
    image i's rotation y at row 4 i + y, and labels (4N,) = 0, 1, 2, 3, 0, 1, ... ;
    the generator is not used. ``all_rotations=False``: one rotation per image drawn from
    ``generator``, (N, C, H, W) and (N,). Any dtype; outputs on the images' device.
    """
    check_images(images)
    check_generator(generator)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotations by 90 degrees need square images, got shape {tuple(images.shape)}")
    n = images.shape[0]
    if all_rotations:
        rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(N_ROTATIONS)], dim=1)
        labels = torch.arange(N_ROTATIONS, device=images.device).repeat(n)
        return rotated.flatten(0, 1), labels                            # (4N, C, H, W), (4N,)
    labels = torch.randint(N_ROTATIONS, (n,), generator=generator)
    rotated = torch.empty_like(images)
    for k in range(N_ROTATIONS):
        picked = (labels == k).nonzero().flatten().to(images.device)
        rotated[picked] = torch.rot90(images[picked], k, dims=(-2, -1))
    return rotated, labels.to(images.device)


@torch.no_grad()
def attention_map(backbone, images: torch.Tensor, block_index: int, p: float = 2.0) -> torch.Tensor:
    """Activation-based attention of block ``block_index``'s output: (N, H, W) maps in [0, 1].

    A = blocks[block_index](... blocks[0](x)), (N, C, h, w); the map is sum_c |A_c|^p, upsampled
    to the image size and scaled to [0, 1] per image (its minimum to 0, its maximum to 1).
    A larger p weighs the most active locations more. ``images``: uint8 (normalised here as for
    evaluation) or float already normalised. Runs in eval mode (batch norm's running statistics)
    and restores the backbone's mode.
    """
    check_images(images)
    blocks = getattr(backbone, "blocks", None)
    if blocks is None:
        raise TypeError(f"backbone must expose .blocks (its stages in order), got {type(backbone).__name__}")
    if isinstance(block_index, bool) or not isinstance(block_index, int) or not 0 <= block_index < len(blocks):
        raise ValueError(f"block_index must be an int in [0, {len(blocks) - 1}], got {block_index!r}")
    p = check_positive(p, "p")
    x = to_float(images) if images.dtype == torch.uint8 else images
    with eval_mode(backbone):
        for block in blocks[:block_index + 1]:
            x = block(x)
    attention = x.float().abs().pow(p).sum(dim=1, keepdim=True)                    # (N, 1, h, w)
    attention = F.interpolate(attention, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = attention.amin(dim=(1, 2), keepdim=True)
    high = attention.amax(dim=(1, 2), keepdim=True)
    return (attention - low) / (high - low).clamp_min(1e-12)


class Rotation(PretextTask):
    name = "rotation"
    paper = ("Gidaris, Singh, Komodakis. Unsupervised Representation Learning by Predicting Image "
             "Rotations. ICLR 2018.")
    summary = "predict which of 4 rotations (0, 90, 180, 270 degrees) was applied; all four per batch"
    # The paper: SGD, lr 0.1, batch 128 (x 4 rotations), 100 epochs on CIFAR-10. A batch of 64 images
    # is 256 inputs here: AdamW, as for the other short CPU runs.
    defaults = {**PretextTask.defaults, "lr": 3e-3, "batch_size": 64}

    def __init__(self, backbone, image_size: int = 32, head_hidden_dim: int = 256, head_layers: int = 2,
                 all_rotations: bool = True):
        """A head of ``head_layers`` linear layers (1: linear; the paper's CIFAR head is a few conv
        blocks, here a small MLP on the pooled features). ``all_rotations``: see :func:`rotate_batch`.
        """
        super().__init__(backbone)
        if not isinstance(all_rotations, bool):
            raise TypeError(f"all_rotations must be True or False, got {all_rotations!r}")
        self.image_size = image_size
        self.head_hidden_dim = check_dim(head_hidden_dim, "head_hidden_dim")
        self.head_layers = check_dim(head_layers, "head_layers")
        self.all_rotations = all_rotations
        self.head = MLPHead(backbone.out_dim, head_hidden_dim, N_ROTATIONS, num_layers=head_layers)

    def make_pseudo_labels(self, images, generator):
        return rotate_batch(to_float(images), generator, self.all_rotations)

    def hparams(self):
        return {"image_size": self.image_size, "head_hidden_dim": self.head_hidden_dim,
                "head_layers": self.head_layers, "all_rotations": self.all_rotations}
