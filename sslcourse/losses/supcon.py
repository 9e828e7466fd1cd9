"""Supervised contrastive loss: every image of the anchor's class is a positive.

Khosla, Teterwak, Sarna, Wang, Isola, Maschinot, Liu, Krishnan. "Supervised Contrastive
Learning." NeurIPS 2020, eq. (2), L^sup_out:

    L = sum_i  -1/|P(i)|  sum_{p in P(i)}  log  exp(z_i . z_p / tau) / sum_{a in A(i)} exp(z_i . z_a / tau)

over all views i of a batch of N images with V views each; A(i) is every view but i itself
and P(i) the views in A(i) with the anchor's label (including i's other views). Here the
loss is the mean over anchors. With distinct labels and V = 2, P(i) is the other view
alone and the loss is NT-Xent. The paper's temperature is 0.1.

An anchor with no positive (V = 1 and a label seen once in the batch) has nothing to pull:
it is left out of the mean. If no anchor has a positive the loss is undefined: an error.
"""
import torch
import torch.nn.functional as F

from ..utils import check_positive, check_tensor


def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Mean L^sup_out over the anchors that have a positive.

    z: (N, V, D) embeddings, V views of each of N images (normalised here); labels: (N,) integers.
    """
    check_tensor(z, "z", ndim=3, floating=True)
    check_tensor(labels, "labels", ndim=1)
    n, views, dim = z.shape
    if labels.shape[0] != n:
        raise ValueError(f"labels must be (N,) with N={n} images like z (N, V, D), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if n * views < 2:
        raise ValueError(f"need at least 2 embeddings in all, got N={n} images with V={views} views")
    tau = check_positive(temperature, "temperature")
    anchors = F.normalize(z, dim=2).transpose(0, 1).reshape(views * n, dim)  # (VN, D): view 0 of all, then view 1...
    anchor_labels = labels.repeat(views)                                      # (VN,)
    self_mask = torch.eye(views * n, dtype=torch.bool, device=z.device)
    logits = (anchors @ anchors.T / tau).masked_fill(self_mask, float("-inf"))  # A(i) = all but i
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)                 # (VN, VN)
    positive = (anchor_labels[:, None] == anchor_labels[None, :]) & ~self_mask   # P(i)
    n_positive = positive.sum(dim=1)                                          # |P(i)|, (VN,)
    has_positive = n_positive > 0
    if not has_positive.any():
        raise ValueError("no anchor has a positive: every label appears once and there is one view; "
                         "use V >= 2 views or a batch with repeated labels")
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(dim=1)              # -sum_p log p, (VN,)
    return (per_anchor[has_positive] / n_positive[has_positive]).mean()
