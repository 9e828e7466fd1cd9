"""MAE: mask most patches, encode only the visible ones, reconstruct the pixels of the rest.

He, Chen, Xie, Li, Dollár, Girshick. "Masked Autoencoders Are Scalable Vision Learners."
CVPR 2022.

    x -> patches (N, L, p*p*C); keep K = L (1 - ratio) per image, at random (ratio 0.75)
    h = encoder(visible patches + their positions)                          (N, K, D)
    y = decoder(h with a shared mask token at every masked position + positions)  (N, L, p*p*C)
    t = patch pixels, each patch normalised by its own mean and std (norm_pix_loss)
    loss = mean over masked patches of mean_j (y_j - t_j)^2                  (Sec. 3)

The encoder never sees a mask token and runs on a quarter of the tokens, so it costs
about a quarter of a full pass; the decoder is small and thrown away after training,
and the probes use the encoder on all patches, unmasked. The only augmentation is a
random resized crop and a flip.

Defaults differ from the paper's where a 32 px world and a CPU ask for it: the decoder
is 64 wide and 2 blocks deep (paper: 512 wide, 8 deep, for ViT-L); AdamW with lr 1.5e-3
at batch 128 for tens of epochs (paper: lr 1.5e-4 x batch / 256, betas (0.9, 0.95), 800 to
1600 epochs); weight decay 0.05 as in the paper.

On the world, the reconstruction is learned long before the features beat random init in
a probe (the paper's "linear probing lags", at its extreme). Measured: on 16 px images,
250 steps at batch 32 bring the masked-patch loss to 0.82 of the visible-mean baseline
while the linear probe drops from 0.174 to 0.152; 2,500 steps (40 epochs of 2,000 images)
reach 0.232 -> 0.252 in a linear probe and 0.126 -> 0.188 in kNN. The command line's
defaults (32 px, 5,000 images, 30 epochs) gave linear probes of 0.192 -> 0.243 (all labels)
and 0.150 -> 0.178 (10%), and kNN 0.129 -> 0.132.
"""
import torch
from torch import nn

from ..masking import (check_predictions, kept_count, masked_mean, patchify, random_masking, take_tokens, unpatchify,
                       visible_mean_prediction)
from ..models.vit import Block, init_transformer, sincos_2d, vit_grid
from ..transforms import recipe, from_float, to_float
from ..utils import check_dim, check_tensor, eval_mode
from .base import Method


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch (last dimension) minus its mean, over sqrt(its unbiased variance + eps), as MAE's code."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def mae_loss(predictions: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor,
             norm_pix_loss: bool = True) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only.

    predictions, patches: (N, L, p*p*C); mask: (N, L) bool, True = masked.
    """
    check_predictions(predictions, patches)
    target = normalise_patches(patches) if norm_pix_loss else patches
    return masked_mean((predictions - target).pow(2).mean(dim=-1), mask)


class MAE(Method):
    name = "mae"
    paper = ("He, Chen, Xie, Li, Dollár, Girshick. Masked Autoencoders Are Scalable Vision Learners. "
             "CVPR 2022.")
    summary = "encode the visible 25% of patches, a small decoder reconstructs the masked pixels"
    defaults = {**Method.defaults, "lr": 1.5e-3, "weight_decay": 0.05, "batch_size": 128, "epochs": 30,
                "warmup_epochs": 3}

    def __init__(self, backbone, image_size: int = 32, mask_ratio: float = 0.75, decoder_width: int = 64,
                 decoder_depth: int = 2, decoder_heads: int = 4, norm_pix_loss: bool = True,
                 encoder_mask_tokens: bool = False):
        """``backbone`` must be a :class:`sslcourse.models.ViT` whose patch size divides ``image_size``.

        ``encoder_mask_tokens=True`` is the paper's ablation (Table 1c) and SimMIM's choice: every
        patch enters the encoder, the masked ones as a learned token, and the decoder reads all L
        encoded tokens. It costs a full pass; fine-tuning is unchanged, but the frozen features lose
        most of what MAE gains over random init (``benchmarks/masked_probe_ablation.py``)."""
        super().__init__(backbone)
        self.grid = vit_grid(backbone, image_size, self.name)
        self.image_size, self.patch_size = image_size, backbone.patch_size
        kept_count(self.grid ** 2, mask_ratio)                               # validates the ratio early
        self.mask_ratio, self.norm_pix_loss = mask_ratio, bool(norm_pix_loss)
        self.encoder_mask_tokens = bool(encoder_mask_tokens)
        self.decoder_width = check_dim(decoder_width, "decoder_width")
        self.decoder_depth = check_dim(decoder_depth, "decoder_depth")
        self.decoder_heads = check_dim(decoder_heads, "decoder_heads")
        self.decoder_embed = nn.Linear(backbone.width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_blocks = nn.ModuleList(Block(decoder_width, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, self.patch_size ** 2 * backbone.channels)
        init_transformer(self.decoder_blocks)
        init_transformer(self.decoder_embed)
        init_transformer(self.decoder_pred)
        nn.init.normal_(self.mask_token, std=0.02)
        if self.encoder_mask_tokens:                                         # only then: the default draws as before
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, backbone.width))
            nn.init.normal_(self.encoder_mask_token, std=0.02)
        self.augment = recipe("mae", image_size)[0]

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images, (N, K) visible positions -> (N, K, D) encoded visible tokens."""
        tokens = self.backbone.tokens(x) + self.backbone.positions(*x.shape[-2:])   # (N, L, D)
        return self.backbone.encode(take_tokens(tokens, keep))

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """(N, K, D) encoded visible tokens, (N, L) restore order -> (N, L, p*p*C) pixel predictions."""
        y = self.decoder_embed(latent)                                              # (N, K, d)
        n, kept, width = y.shape
        length = restore.shape[1]
        y = torch.cat([y, self.mask_token.expand(n, length - kept, width)], dim=1)  # shuffled order
        y = take_tokens(y, restore) + sincos_2d(width, self.grid, self.grid, device=y.device)[None]
        for block in self.decoder_blocks:
            y = block(y)
        return self.decoder_pred(self.decoder_norm(y))

    def forward_masked(self, x: torch.Tensor, generator: torch.Generator):
        """Normalised images -> (predictions (N, L, p*p*C), mask (N, L)) for one random masking."""
        keep, mask, restore = random_masking(len(x), self.grid ** 2, self.mask_ratio, generator, x.device)
        if self.encoder_mask_tokens:
            latent = self.backbone.encode_masked(x, mask, self.encoder_mask_token)      # (N, L, D), image order
            in_order = torch.arange(mask.shape[1], device=x.device).expand_as(mask)      # nothing to restore
            return self.decode(latent, in_order), mask
        return self.decode(self.encode_visible(x, keep), restore), mask

    def training_step(self, images, generator, **extras):
        x = self.augment(images, generator)                                         # (N, C, H, W)
        predictions, mask = self.forward_masked(x, generator)
        return mae_loss(predictions, patchify(x, self.patch_size), mask, self.norm_pix_loss)

    @torch.no_grad()
    def reconstruction_error(self, images: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
        """(masked-patch loss, the same loss of ``visible_mean_prediction``) on un-augmented uint8 images, one masking."""
        x = to_float(images)
        with eval_mode(self):
            predictions, mask = self.forward_masked(x, generator)
        patches = patchify(x, self.patch_size)
        targets = normalise_patches(patches) if self.norm_pix_loss else patches
        return tuple(mae_loss(p, patches, mask, self.norm_pix_loss).item()
                     for p in (predictions, visible_mean_prediction(targets, mask)))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, generator: torch.Generator):
        """uint8 images -> (masked, reconstruction, original) float images in [0, 1], for pictures.

        ``masked`` greys out the masked patches; ``reconstruction`` pastes the predicted patches
        into the visible image. With ``norm_pix_loss`` the model predicts normalised patches, so
        each one is given the true patch's mean and std back, as in MAE's own visualisation.
        """
        check_tensor(images, "images", ndim=4)
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"this MAE was built for {self.image_size} px images, got shape {tuple(images.shape)}")
        x = to_float(images)
        with eval_mode(self):
            predictions, mask = self.forward_masked(x, generator)
        patches = patchify(x, self.patch_size)
        if self.norm_pix_loss:
            mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
            predictions = predictions * (var + 1e-6).sqrt() + mean
        hidden = mask[..., None]                                                     # (N, L, 1)
        masked = torch.where(hidden, torch.zeros_like(patches), patches)            # 0 = grey once mapped to [0, 1]
        pasted = torch.where(hidden, predictions.to(patches.dtype), patches)
        pictures = [unpatchify(p, self.patch_size, x.shape[-2:]) for p in (masked, pasted, patches)]
        return tuple(from_float(p) for p in pictures)

    def hparams(self):
        return {"image_size": self.image_size, "mask_ratio": self.mask_ratio, "decoder_width": self.decoder_width,
                "decoder_depth": self.decoder_depth, "decoder_heads": self.decoder_heads,
                "norm_pix_loss": self.norm_pix_loss, "encoder_mask_tokens": self.encoder_mask_tokens}
