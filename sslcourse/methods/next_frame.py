"""Next-frame prediction: observe k frames of a video, draw the one that follows.

The video member of the generation-based family (pseudo label = the signal itself), as in
Mathieu, Couprie, LeCun, "Deep Multi-Scale Video Prediction Beyond Mean Square Error"
(ICLR 2016), Villegas et al., "Decomposing Motion and Content for Natural Video Sequence
Prediction" (MCnet, ICLR 2017) and Shi et al., "Convolutional LSTM Network" (NeurIPS 2015),
cut down to what a single-frame backbone can learn from:

    f_i = backbone(x_{s+i}),  i = 0 .. k-1            shared weights, one frame at a time
    x_hat = x_{s+k-1} + decoder([f_0, ..., f_{k-1}])   the last frame plus the predicted change
    loss = mean (x_hat - x_{s+k})^2                    MSE on normalised pixels

The decoder sees only the pooled features, so everything the prediction needs, where the
object is, how it moves and what its edges look like, must pass through the backbone.
Predicting the change from the last observed frame (``residual=True``) spares the decoder
redrawing the still background from pooled features, whose error would dominate the loss;
``residual=False`` predicts the frame outright (on 16 px world videos, 5 epochs, a linear probe
of the class then read 0.21 from its features, against 0.32 for the residual model and 0.20 for
the random-init network with the data's batch-norm statistics). The decoder's last layer starts at zero, so the residual model starts from
"nothing moves" (the last frame repeated) and only has the motion left to learn. With a
random last layer it first spends its steps unlearning the noise it adds, and on 2000 world
videos at 16 px it then ended no better than repeating the last frame (measured).

Those papers observe more frames (MCnet: 10) with recurrent or convolutional encoders and
predict several; here k = 3 frames, enough to fix a constant velocity, which is all the
world's motion has.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..models.decoders import ConvDecoder, image_channels
from ..transforms import from_float, to_float, to_unit
from ..utils import check_dim, eval_mode
from .temporal import VideoPretextTask, check_videos, gather_frames


def next_frame_examples(videos: torch.Tensor, generator: torch.Generator, context: int = 3):
    """(N, T, C, H, W) videos -> (observed (N, context, C, H, W), next frame (N, C, H, W)).

    Per video, a window of ``context`` + 1 consecutive frames starting anywhere it fits.
    """
    check_videos(videos, context + 1)
    n, frames = videos.shape[:2]
    start = torch.randint(frames - context, (n,), generator=generator)
    window = gather_frames(videos, start[:, None] + torch.arange(context + 1))      # (N, context + 1, C, H, W)
    return window[:, :context], window[:, context]


class NextFrame(VideoPretextTask):
    name = "next_frame"
    paper = ("Villegas, Yang, Hong, Lin, Lee. Decomposing Motion and Content for Natural Video Sequence "
             "Prediction. ICLR 2017.")
    summary = "observe k frames, predict the next one (MSE) from the backbone's features of each"

    def __init__(self, backbone, image_size: int = 32, videos=None, context: int = 3, decoder_width: int = 64,
                 residual: bool = True):
        """``context``: frames observed (k); ``decoder_width``: channels of the decoder's first map."""
        context = check_dim(context, "context")
        super().__init__(backbone, videos, min_frames=context + 1)
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be True or False, got {residual!r}")
        self.image_size, self.context, self.residual = check_dim(image_size, "image_size"), context, residual
        # The decoder of the generation-based tasks, on the k frames' features side by side.
        self.decoder = ConvDecoder(context * backbone.out_dim, image_channels(backbone), image_size, decoder_width)
        if residual:   # start from "nothing moves", the last frame itself, and learn the change from there
            nn.init.zeros_(self.decoder.body[-1].weight)
            nn.init.zeros_(self.decoder.body[-1].bias)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        return super().for_data(backbone, data, **{"image_size": data.image_size, **hparams})

    def make_pseudo_labels(self, videos, generator):
        if check_videos(videos, self.context + 1).shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.name} was built for {self.image_size} px frames, got {videos.shape[-1]} px "
                             f"(videos of shape {tuple(videos.shape)})")
        observed, target = next_frame_examples(videos, generator, self.context)
        return observed, to_float(target)

    def predict(self, observed):
        change = self.decoder(self.encode_frames(observed).flatten(1))    # (N, C, H, W)
        return to_float(observed[:, -1]) + change if self.residual else change

    def loss(self, predictions, targets):
        return F.mse_loss(predictions.float(), targets)

    @torch.no_grad()
    def reconstruct(self, videos: torch.Tensor, generator: torch.Generator):
        """uint8 (N, T, C, H, W) videos -> (observed (N, k, C, H, W), predicted (N, C, H, W), true next
        frame (N, C, H, W)), float in [0, 1] for pictures; a window per video drawn as in training."""
        with eval_mode(self):
            observed, target = self.make_pseudo_labels(videos, generator)
            predicted = self.predict(observed)
        return to_unit(observed), from_float(predicted), from_float(target)

    def hparams(self):
        return {"image_size": self.image_size, "context": self.context, "decoder_width": self.decoder.width,
                "residual": self.residual}
