"""Audio-visual correspondence: does this sound go with this frame? A binary classification.

Arandjelovic, Zisserman. "Look, Listen and Learn." ICCV 2017, Sec. 2: a frame and a 1 s
audio clip are a positive pair when they come from the same video and time, a negative
pair when the audio comes from another video; the network outputs P(correspond) and is
trained with the logistic (cross-entropy) loss, positives and negatives in equal numbers.

Here the N frames and N sounds of a batch give an (N, N) grid of scores s_ij (frame i,
sound j, as logits); the diagonal holds the N positives and every other entry is a negative
from another scene of the batch. Positives and negatives weigh half each, as in the paper's
50/50 sampling:

    loss = 1/2 mean_i softplus(-s_ii) + 1/2 mean_{i != j} softplus(s_ij)

(softplus(-s) = -log sigmoid(s), softplus(s) = -log(1 - sigmoid(s))). The paper samples one
negative per positive; scoring all N - 1 is free once the grid is computed.
"""
import torch
import torch.nn.functional as F

from ..utils import check_tensor


def correspondence_loss(scores: torch.Tensor) -> torch.Tensor:
    """(N, N) logits, row i = frame i, column j = sound j, positives on the diagonal -> scalar."""
    check_tensor(scores, "scores", ndim=2, floating=True)
    n = scores.shape[0]
    if scores.shape[1] != n or n < 2:
        raise ValueError(f"scores must be a square (N, N) grid of frames against sounds with N >= 2, "
                         f"got shape {tuple(scores.shape)}")
    positive = torch.eye(n, dtype=torch.bool, device=scores.device)
    return (F.softplus(-scores[positive]).mean() + F.softplus(scores[~positive]).mean()) / 2
