"""A small Vision Transformer, from scratch.

Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, Minderer,
Heigold, Gelly, Uszkoreit, Houlsby. "An Image is Worth 16x16 Words: Transformers for
Image Recognition at Scale." ICLR 2021.

    z_0 = [x_1 E; ...; x_L E] + E_pos        patches x_i (p*p*C), E: a conv with stride p
    z'_l = z_{l-1} + MSA(LN(z_{l-1}))        pre-norm blocks (eq. 2-3)
    z_l = z'_l + MLP(LN(z'_l))
    y = mean_i LN(z_D)_i                     pooled features (N, width)

Two choices follow MAE (He et al. 2022), which trains this network: fixed 2-D sin-cos
positions (``learned_positions=True`` gives the paper's learned ones) and the mean of the
output tokens instead of a [CLS] token (MAE, Sec. A.1: both work as well). The defaults
(32 px images, 4 px patches -> 64 tokens, width 128, depth 4, 4 heads, 0.8 M weights) train
in minutes on a CPU; ViT-B/16 is ``ViT(image_size=224, patch_size=16, width=768, depth=12, heads=12)``.

The blocks are plain token-sequence modules: the text models of ``sslcourse.text`` reuse
them, with causal attention for next-token prediction.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import check_dim, check_tensor


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(P,) positions -> (P, dim): sin and cos at dim/2 frequencies 1 / 10000^(2i/dim) (Vaswani et al. 2017)."""
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim // 2))
    angles = positions.to(torch.float64)[:, None] * frequencies[None]          # (P, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(dim: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """(rows*cols, dim) positions of a row-major grid: half the dimensions encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, r.flatten()), sincos_1d(dim // 2, c.flatten())], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (fused kernels where they exist)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
        n, length, dim = x.shape
        # (N, L, 3 D) -> 3 x (N, heads, L, D / heads)
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + MSA(LN(x)), then + MLP(LN(.)) with a GELU hidden layer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = round(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
        """(N, L, dim) -> (N, L, dim). ``attn_mask`` (True = may attend) and ``is_causal`` go to the attention."""
        x = x + self.attn(self.norm1(x), attn_mask, is_causal)
        return x + self.mlp(self.norm2(x))


def init_transformer(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform linear layers (the patch conv as one too), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ViT(nn.Module):
    """Images (N, C, H, W) -> features (N, width): the mean of the encoded patch tokens.

    MAE and SimMIM use the pieces: ``tokens`` (patch embeddings, no positions),
    ``positions`` and ``encode`` (the blocks and the final LayerNorm on any token sequence).
    With fixed sin-cos positions any image whose sides the patch size divides works;
    learned positions fix the grid to ``image_size``.
    """

    def __init__(self, channels: int = 3, image_size: int = 32, patch_size: int = 4, width: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, learned_positions: bool = False):
        super().__init__()
        self.channels = check_dim(channels, "channels")
        self.image_size, self.patch_size = check_dim(image_size, "image_size"), check_dim(patch_size, "patch_size")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.width, self.depth, self.heads = check_dim(width, "width"), check_dim(depth, "depth"), check_dim(heads, "heads")
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        if not learned_positions and width % 4:
            raise ValueError(f"sin-cos positions need a width divisible by 4, got {width}")
        self.learned_positions = learned_positions
        self.patch_embed = nn.Conv2d(channels, width, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out_dim = width
        init_transformer(self)
        if learned_positions:
            self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2, width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _check_images(self, images: torch.Tensor) -> None:
        check_tensor(images, "images", ndim=4, floating=True)
        if images.shape[1] != self.channels:
            raise ValueError(f"this ViT takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {self.patch_size}")

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, width) patch embeddings in row-major order, without positions."""
        self._check_images(images)
        return self.patch_embed(images).flatten(2).transpose(1, 2)

    def positions(self, height: int, width: int) -> torch.Tensor:
        """(1, L, width) position embeddings for an image of ``height`` x ``width`` pixels."""
        rows, cols = height // self.patch_size, width // self.patch_size
        if self.learned_positions:
            grid = self.image_size // self.patch_size
            if (rows, cols) != (grid, grid):
                raise ValueError(f"learned positions were made for {self.image_size} px images "
                                 f"({grid}x{grid} patches), got {height}x{width}")
            return self.pos_embed
        return sincos_2d(self.width, rows, cols, device=self.patch_embed.weight.device)[None]

    def encode(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None,
               is_causal: bool = False) -> torch.Tensor:
        """(N, L', width) -> (N, L', width): the blocks and the final LayerNorm, on any subset of tokens."""
        for block in self.blocks:
            tokens = block(tokens, attn_mask, is_causal)
        return self.norm(tokens)

    def encode_masked(self, images: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images, (N, L) bool mask (True = masked), (1, 1, width) token -> (N, L, width):
        every patch is encoded, the masked ones replaced by ``mask_token`` before positions are added,
        so a mask token still knows where it stands (SimMIM; MAE's encoder ablation)."""
        tokens = self.tokens(images)                                                 # (N, L, D), no positions yet
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != tokens.shape[:2]:
            got = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a bool tensor of shape {tuple(tokens.shape[:2])} (images, patches), got {got}")
        tokens = torch.where(mask[..., None], mask_token.to(tokens.dtype), tokens)
        return self.encode(tokens + self.positions(*images.shape[-2:]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(images) + self.positions(*images.shape[-2:])
        return self.encode(tokens).mean(dim=1)

    def extra_repr(self) -> str:
        n_weights = sum(p.numel() for p in self.parameters())
        return f"patch_size={self.patch_size}, width={self.width}, depth={self.depth}, heads={self.heads}, " \
               f"learned_positions={self.learned_positions}, {n_weights / 1e6:.2f} M weights"


def vit_grid(backbone: nn.Module, image_size: int, method: str) -> int:
    """Check that ``backbone`` is a ViT whose patches tile ``image_size``; return the patches per side."""
    if not isinstance(backbone, ViT):
        raise ValueError(f"{method} masks patch tokens and needs a ViT backbone (--backbone vit), "
                         f"got a {type(backbone).__name__}")
    check_dim(image_size, "image_size")
    if image_size % backbone.patch_size:
        raise ValueError(f"image_size {image_size} is not divisible by the ViT's patch size {backbone.patch_size}")
    return image_size // backbone.patch_size

