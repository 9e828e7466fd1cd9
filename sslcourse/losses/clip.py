"""CLIP's objective: in a batch of N (image, text) pairs, each image picks its own text and each text its image.

Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger,
Sutskever. "Learning Transferable Visual Models From Natural Language Supervision."
ICML 2021, Sec. 2.3 and Fig. 3 (its numpy-like pseudo code):

    I_e = l2_normalize(I_f W_i),  T_e = l2_normalize(T_f W_t)     (N, d) joint embeddings
    logits = I_e T_e^T * exp(t)                                   (N, N): image i vs text j
    loss_i = cross_entropy(logits, labels=arange(N), axis=0)
    loss_t = cross_entropy(logits, labels=arange(N), axis=1)
    loss = (loss_i + loss_t) / 2

The temperature is learned: exp(t) is the logit scale, initialised to 1/0.07 and "clipped
to prevent scaling the logits by more than 100 to prevent training instability". The
N^2 - N mismatched pairs of the batch are the negatives (the paper: N = 32,768).
"""
import torch
import torch.nn.functional as F

from .similarity import check_pair

INITIAL_LOGIT_SCALE = 1 / 0.07
MAX_LOGIT_SCALE = 100.0


def clip_logits(image: torch.Tensor, text: torch.Tensor, logit_scale) -> torch.Tensor:
    """(N, D) image and text embeddings (row i of both from pair i) -> (N, N) scaled cosine similarities.

    ``logit_scale`` (exp(t) = 1 / temperature; a float or a scalar tensor, learnable) must be > 0;
    above ``MAX_LOGIT_SCALE`` = 100 it is clamped there, as in the paper.
    """
    check_pair(image, text, min_batch=2)
    scale = torch.as_tensor(logit_scale, dtype=image.dtype, device=image.device)
    if scale.numel() != 1 or not torch.isfinite(scale).all() or not (scale > 0).all():
        raise ValueError(f"logit_scale (1 / temperature) must be one finite number > 0, "
                         f"got {logit_scale!r}")
    scale = scale.reshape(()).clamp(max=MAX_LOGIT_SCALE)
    return F.normalize(image, dim=1) @ F.normalize(text, dim=1).T * scale       # (N, N)


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale=INITIAL_LOGIT_SCALE) -> torch.Tensor:
    """The symmetric cross-entropy: (image -> its text + text -> its image) / 2, each a mean over N >= 2 pairs."""
    logits = clip_logits(image, text, logit_scale)                               # (N, N)
    pair = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, pair) + F.cross_entropy(logits.T, pair)) / 2
