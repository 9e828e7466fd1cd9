"""Cross-modal correspondence: does this sample of one modality belong with that sample of the other?

Arandjelović and Zisserman, "Look, Listen and Learn" (ICCV 2017) for a frame and a sound;
Sayed, Brattoli, Ommer, "Cross and Learn: Cross-Modal Self-Supervision" (GCPR 2018) pair a
frame with optical flow. With a and b the two subnetworks' features and h a classifier on
their concatenation, every anchor a_i makes one positive and one negative pair:

    positive: h([a_i, b_i])          -> class 1 (same clip)
    negative: h([a_i, b_{j(i)}])     -> class 0, j(i) != i another clip of the batch
    loss = mean over the 2N pairs of cross_entropy(h(pair), class)

so the classes are balanced and chance is 1/2, as in the paper's 50/50 sampling. Unlike
``sslcourse.losses.avc.correspondence_loss``, which scores an (N, N) grid of frames against
sounds, the classifier here reads the two features together (a concatenation into an MLP),
so every pair costs a pass of h: one negative per anchor, not N - 1.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import check_tensor


def pair_correspondence_loss(first: torch.Tensor, second: torch.Tensor, partner: torch.Tensor, head: nn.Module,
                        return_accuracy: bool = False):
    """(N, D1) and (N, D2) features of the two modalities (row i of both from clip i), (N,) ``partner``
    indices with partner[i] != i, and ``head`` mapping (M, D1 + D2) pairs to (M, 2) logits -> mean
    cross-entropy over the N positive pairs (i, i) and the N negatives (i, partner[i]); with
    ``return_accuracy``, also the fraction of the 2N pairs classified right (a float)."""
    check_tensor(first, "first", ndim=2, floating=True)
    check_tensor(second, "second", ndim=2, floating=True)
    check_tensor(partner, "partner", ndim=1)
    n = len(first)
    if len(second) != n or n < 2:
        raise ValueError(f"first and second must hold the same N >= 2 clips, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    own = torch.arange(n, device=partner.device)
    if len(partner) != n or partner.is_floating_point() or partner.min() < 0 or partner.max() >= n \
            or (partner == own).any():
        raise ValueError(f"partner must hold, for each of the {n} clips, the index of another clip of the batch "
                         f"(integers in [0, {n}), partner[i] != i), got {partner.dtype} {partner.tolist()[:8]}")
    pairs = torch.cat([torch.cat([first, second], 1), torch.cat([first, second[partner]], 1)])   # (2N, D1 + D2)
    labels = torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)]).to(first.device)
    logits = head(pairs)                                                                         # (2N, 2)
    if logits.shape != (2 * n, 2):
        raise ValueError(f"head must map (M, {pairs.shape[1]}) pairs to (M, 2) logits, got {tuple(logits.shape)}")
    loss = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)   # bf16 -> float32
    if return_accuracy:
        return loss, (logits.argmax(1) == labels).float().mean().item()
    return loss


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) partner indices with partner[i] != i: i plus a shift drawn uniformly from 1 .. n-1, modulo n."""
    if n < 2:
        raise ValueError(f"negatives from other clips need a batch of at least 2, got {n}")
    return (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n
