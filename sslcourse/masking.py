"""Patches and random masking: what MAE, SimMIM and masked language modelling share.

An image becomes a sequence of patches, a sentence is a sequence of words; masked
modelling hides part of the sequence and predicts it from the rest.

    patchify:        (N, C, H, W) -> (N, L, p*p*C), L = (H/p)(W/p) patches in row-major order,
                     each patch's pixels in (row, column, channel) order, as MAE's code
    unpatchify:      its exact inverse
    random_masking:  MAE's per-sample shuffle (He et al. 2022, Sec. 3): draw noise (N, L),
                     argsort it; the first K = round(L (1 - ratio)) positions of the shuffle
                     stay visible, the rest are masked; argsort of the shuffle restores the order
    take_tokens:     the tokens at given positions, per sample (to keep the visible ones,
                     and to put the decoder's sequence back in order)
    masked_mean:     the mean of a per-token error over the masked tokens only
    visible_mean_prediction: the baseline, each masked patch as the mean of the visible ones
"""
import torch

from .utils import check_dim, check_generator, check_tensor


def _check_patch(images: torch.Tensor, patch: int) -> int:
    check_dim(patch, "patch")
    height, width = images.shape[-2:]
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not divisible by the patch size {patch}; "
                         f"use a patch size that divides both sides")
    return patch


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, patch*patch*C) with L = (H/patch)(W/patch), row-major."""
    check_tensor(images, "images", ndim=4)
    _check_patch(images, patch)
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    # (N, C, rows, p, cols, p) -> (N, rows, cols, p, p, C): each patch's pixels, channels last.
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, image_size) -> torch.Tensor:
    """(N, L, patch*patch*C) -> (N, C, H, W): the inverse of ``patchify``.

    ``image_size`` is H (square images) or (H, W); C follows from the patch length.
    """
    check_tensor(patches, "patches", ndim=3)
    check_dim(patch, "patch")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    rows, cols = h // patch, w // patch
    n, length, dim = patches.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
    if length != rows * cols or dim % (patch * patch):
        raise ValueError(f"patches of shape {tuple(patches.shape)} do not tile a {h}x{w} image with "
                         f"{patch}x{patch} patches: expected (N, {rows * cols}, {patch}*{patch}*C)")
    c = dim // (patch * patch)
    x = patches.reshape(n, rows, cols, patch, patch, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)


def kept_count(length: int, mask_ratio: float) -> int:
    """How many of ``length`` tokens stay visible at ``mask_ratio``: round(length (1 - ratio)), at least 1."""
    check_dim(length, "length")
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be a number in [0, 1), got {mask_ratio!r}")
    keep = round(length * (1 - mask_ratio))
    if keep < 1:
        raise ValueError(f"mask_ratio {mask_ratio} would mask all {length} tokens; at least one must stay visible")
    return keep


def random_masking(batch_size: int, length: int, mask_ratio: float, generator: torch.Generator, device=None):
    """Mask ``round(length * mask_ratio)`` tokens of each of ``batch_size`` sequences, each its own.

    Returns ``(keep, mask, restore)`` on ``device``:
      keep     (N, K) long   positions of the visible tokens, in shuffled order
      mask     (N, L) bool   True where the token is masked
      restore  (N, L) long   argsort of the shuffle: ``take_tokens(shuffled, restore)`` undoes it
    The noise is drawn on the CPU from ``generator``, so one seed gives the same masks on any device.
    """
    check_dim(batch_size, "batch_size")
    keep_n = kept_count(length, mask_ratio)
    check_generator(generator)
    noise = torch.rand(batch_size, length, generator=generator)           # (N, L)
    shuffle = noise.argsort(dim=1)                                        # ascending: small noise is kept
    restore = shuffle.argsort(dim=1)
    mask = restore >= keep_n                                              # rank in the shuffle >= K: masked
    return shuffle[:, :keep_n].to(device), mask.to(device), restore.to(device)


def take_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, L, D) tokens, (N, K) positions -> (N, K, D): sample n's tokens at index[n]."""
    check_tensor(tokens, "tokens", ndim=3)
    check_tensor(index, "index", ndim=2)
    if index.shape[0] != tokens.shape[0]:
        raise ValueError(f"index has {index.shape[0]} rows but tokens have {tokens.shape[0]} samples")
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def check_predictions(predictions: torch.Tensor, patches: torch.Tensor) -> None:
    """Predicted and target patches must have one shape: broadcasting would silently pair wrong pixels."""
    if predictions.shape != patches.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and patches {tuple(patches.shape)} must match")


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of an (N, L) per-token error over the tokens where ``mask`` (N, L) is True (0 if none is)."""
    if per_token.shape != mask.shape:
        raise ValueError(f"per-token error of shape {tuple(per_token.shape)} and mask of shape "
                         f"{tuple(mask.shape)} must match")
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def visible_mean_prediction(targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The baseline a masked model must beat: every patch predicted as the mean of its image's visible patches.

    (N, L, D) target patches, (N, L) bool mask (True = masked) -> (N, L, D).
    """
    check_predictions(targets, targets)
    if mask.shape != targets.shape[:2]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match patches of shape {tuple(targets.shape)}")
    visible = (~mask).to(targets.dtype)[..., None]                          # (N, L, 1)
    return ((targets * visible).sum(dim=1, keepdim=True) / visible.sum(dim=1, keepdim=True)).expand_as(targets)
