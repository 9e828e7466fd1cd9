"""SimMIM: replace masked patches by a learned token inside the encoder, predict their raw pixels.

Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu. "SimMIM: A Simple Framework for Masked Image
Modeling." CVPR 2022.

    mask (N, L): random blocks of patches, ratio 0.6
    z = encoder(where(mask, m, patch embedding) + positions)     all L tokens, m learned  (N, L, D)
    y = W z                                                       a linear head        (N, L, p*p*C)
    loss = mean over the masked pixels of |y - x|                 raw (normalised) pixels, l1  (Sec. 3)

Unlike MAE, every token goes through the encoder (the cost of a full pass) and the
head is a single linear layer: the encoder does the whole reconstruction. Because no
token is dropped, the same recipe works for hierarchical backbones such as Swin.

Masking granularity. The paper masks random 32x32 px blocks while the ViT's patches are
16x16 px (each block is 2x2 patches; its ablation of masking strategies finds such
moderately large blocks better than patch-sized ones). Here the blocks are ``mask_patch_size`` = 8 px and the patches 4 px:
2x2 patches per block again, a 4x4 grid of blocks on 32 px images, of which
round(16 x 0.4) = 6 stay visible (62.5% masked for a ratio of 0.6).
Augmentation as in the paper: random resized crop of scale (0.67, 1) and a flip.

Frozen features lag; the paper's measure is fine-tuning. On the world SimMIM's reconstruction
beats the visible-mean baseline (tests, lecture 08), but its features do not beat random init.
Measured by ``benchmarks/masked_probe_ablation.py`` (16 px, 2,000 images, 1,250 steps, 9 min on
one thread), neither a frozen probe nor fine-tuning rises above random init: kNN 0.106 against
0.104, linear probe 0.173 against 0.201, fine-tuned 0.223 against 0.219 (mean of 3 fine-tuning
seeds). MAE in the same run: 0.175, 0.229, 0.246. One reason, measured:
MAE with SimMIM's mask tokens moved into its encoder (``MAE(encoder_mask_tokens=True)``, MAE's
Table 1c) keeps its fine-tuning (0.245) but loses most of its frozen gain (kNN 0.135, linear
0.186). The encoder is trained on inputs that are half mask tokens at 16 px and probed on none.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..masking import check_predictions, kept_count, masked_mean, patchify, random_masking, visible_mean_prediction
from ..models.vit import init_transformer, vit_grid
from ..transforms import recipe, to_float
from ..utils import check_dim, eval_mode
from .base import Method
from .mae import MAE


def block_masking(batch_size: int, grid: int, block: int, mask_ratio: float, generator: torch.Generator,
                  device=None) -> torch.Tensor:
    """(N, grid*grid) bool patch mask, True = masked: ``random_masking`` of a grid of ``block`` x ``block``
    patch blocks, each block's decision copied to its patches."""
    check_dim(block, "block")
    if grid % block:
        raise ValueError(f"a grid of {grid}x{grid} patches does not split into blocks of {block}x{block} patches")
    blocks = grid // block
    _, mask, _ = random_masking(batch_size, blocks * blocks, mask_ratio, generator, device)   # (N, blocks^2)
    mask = mask.view(batch_size, blocks, 1, blocks, 1).expand(-1, -1, block, -1, block)     # each block's patches
    return mask.reshape(batch_size, grid * grid)


def simmim_loss(predictions: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """l1 error averaged over the pixels of the masked patches only.

    predictions, patches: (N, L, p*p*C); mask: (N, L) bool, True = masked.
    """
    check_predictions(predictions, patches)
    return masked_mean(F.l1_loss(predictions, patches, reduction="none").mean(dim=-1), mask)


class SimMIM(Method):
    name = "simmim"
    paper = ("Xie, Zhang, Cao, Lin, Bao, Yao, Dai, Hu. SimMIM: A Simple Framework for Masked Image Modeling. "
             "CVPR 2022.")
    summary = "mask tokens enter the encoder, a linear head predicts raw pixels, l1 on masked patches"
    # The paper: AdamW with weight decay 0.05 at batch 2048, for hundreds of ImageNet epochs; here MAE's
    # CPU settings, which the two methods share (see sslcourse/methods/mae.py).
    defaults = MAE.defaults

    def __init__(self, backbone, image_size: int = 32, mask_ratio: float = 0.6, mask_patch_size: int | None = None):
        """``backbone`` must be a :class:`sslcourse.models.ViT`; ``mask_patch_size`` (pixels) a multiple
        of its patch size that divides ``image_size``: by default blocks of 2x2 patches (8 px for 4 px
        patches), or single patches where 2x2 blocks do not tile the image (28 px MNIST)."""
        super().__init__(backbone)
        self.grid = vit_grid(backbone, image_size, self.name)
        self.image_size, self.patch_size = image_size, backbone.patch_size
        if mask_patch_size is None:
            mask_patch_size = 2 * self.patch_size if self.grid % 2 == 0 else self.patch_size
        check_dim(mask_patch_size, "mask_patch_size")
        if mask_patch_size % self.patch_size or image_size % mask_patch_size:
            raise ValueError(f"mask_patch_size must be a multiple of the patch size {self.patch_size} that divides "
                             f"image_size {image_size}, got {mask_patch_size}")
        self.mask_block = mask_patch_size // self.patch_size                 # patches per block side
        kept_count((self.grid // self.mask_block) ** 2, mask_ratio)          # validates the ratio early
        self.mask_ratio, self.mask_patch_size = mask_ratio, mask_patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, backbone.width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(backbone.width, self.patch_size ** 2 * backbone.channels)
        init_transformer(self.head)
        self.augment = recipe("mae", image_size, scale=(0.67, 1.0))[0]

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images, (N, L) mask -> (N, L, p*p*C) pixel predictions for every patch."""
        return self.head(self.backbone.encode_masked(x, mask, self.mask_token))     # all L tokens, mask tokens too

    def training_step(self, images, generator, **extras):
        x = self.augment(images, generator)                                          # (N, C, H, W)
        mask = block_masking(len(x), self.grid, self.mask_block, self.mask_ratio, generator, x.device)
        return simmim_loss(self.predict(x, mask), patchify(x, self.patch_size), mask)

    @torch.no_grad()
    def reconstruction_error(self, images: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
        """(masked-patch l1 loss, the same loss of ``visible_mean_prediction``) on un-augmented uint8 images."""
        x = to_float(images)
        mask = block_masking(len(x), self.grid, self.mask_block, self.mask_ratio, generator, x.device)
        with eval_mode(self):
            predictions = self.predict(x, mask)
        patches = patchify(x, self.patch_size)
        return tuple(simmim_loss(p, patches, mask).item() for p in (predictions, visible_mean_prediction(patches, mask)))

    def hparams(self):
        return {"image_size": self.image_size, "mask_ratio": self.mask_ratio, "mask_patch_size": self.mask_patch_size}
