"""RGB and optical-flow correspondence: does this flow field belong to this frame?

Sayed, Brattoli, Ommer. "Cross and Learn: Cross-Modal Self-Supervision." GCPR 2018; the
correspondence classifier of Arandjelović and Zisserman, "Look, Listen and Learn," ICCV 2017.

    a_i = f(x_t)           RGB subnetwork: the course backbone on frame t of clip i, (N, D)
    b_i = g(flow_t)        flow subnetwork: a ConvNet on the (2, H, W) flow of the same frame, (N, D')
    loss = pair_correspondence_loss(a, b, partner, h)  h: an MLP on [a, b] -> same clip or not
                                                    (sslcourse.losses.pair_correspondence)

A frame and its flow share what moves: the flow is zero on the still background and covers
the object exactly where the frame shows it, with the object's shape. To tell its own flow
from another clip's, the RGB network must find the object in a still frame. What the flow
adds beyond the mask (direction, speed, spin) cannot be read from one frame; so what the
RGB features learn is where the object is and its outline, not its motion.

Where this differs from the paper, for the world's videos and CPU runs:
- Sayed et al. train two CaffeNets with a cross-modal loss (the two features of a pair pulled
  together) and a diversity loss (features of different pairs pushed apart within each
  modality); here the two features are classified as a pair or not, the "does this belong to
  this" form of Look, Listen and Learn, with one negative per frame from another clip of the
  batch (balanced classes, chance 1/2);
- the flow is the world's exact flow (``load_videos``), not one estimated from the frames;
  the flow network's first batch norm takes care of its scale in pixels;
- no crops or flips: the flow would have to be cropped and flipped (its dx negated) with the frame.
"""
import torch

from ..losses.pair_correspondence import derangement, pair_correspondence_loss
from ..models import MLPHead
from ..models.backbones import ConvNet
from ..transforms import to_float
from ..utils import check_dim, check_generator, check_tensor, eval_mode
from .temporal import VideoPretextTask, check_videos, gather_frames


def check_flows(flows, videos: torch.Tensor | None = None, name: str = "flows") -> torch.Tensor:
    """Raise unless ``flows`` is float (N, T-1, 2, H, W), matching ``videos`` (N, T, C, H, W) when given."""
    flows = torch.as_tensor(flows)
    check_tensor(flows, name, ndim=5, floating=True)
    if flows.shape[2] != 2:
        raise ValueError(f"{name} must be (N, T-1, 2, H, W) forward flows (dx, dy), got shape {tuple(flows.shape)}")
    if videos is not None and (flows.shape[0] != videos.shape[0] or flows.shape[1] != videos.shape[1] - 1
                               or flows.shape[-2:] != videos.shape[-2:]):
        raise ValueError(f"{name} {tuple(flows.shape)} must be (N, T-1, 2, H, W) for videos {tuple(videos.shape)}: "
                         f"one flow field per frame but the last")
    return flows


def frame_flow_pairs(videos: torch.Tensor, flows: torch.Tensor, generator: torch.Generator):
    """(N, T, C, H, W) videos and their (N, T-1, 2, H, W) flows -> (frames (N, C, H, W), flows (N, 2, H, W)):
    per clip a frame t drawn from 0 .. T-2 and the flow from t to t+1."""
    check_videos(videos, 2)
    check_flows(flows, videos)
    t = torch.randint(0, videos.shape[1] - 1, (len(videos),), generator=generator)[:, None]   # (N, 1)
    return gather_frames(videos, t)[:, 0], gather_frames(flows, t)[:, 0]


class RGBFlowCorrespondence(VideoPretextTask):
    name = "rgb_flow"
    paper = "Sayed, Brattoli, Ommer. Cross and Learn: Cross-Modal Self-Supervision. GCPR 2018."
    summary = "a frame and an optical-flow field: from the same clip or another? (RGB and flow subnetworks)"
    min_frames = 2

    def __init__(self, backbone, videos=None, flows=None, hidden_dim: int = 256, flow_widths=(16, 32, 64, 128)):
        """``flows``: (N, T-1, 2, H, W) forward flow of ``videos`` (``for_data`` passes both);
        ``hidden_dim``: width of the pair classifier; ``flow_widths``: the flow ConvNet's channels."""
        super().__init__(backbone, videos)
        self.flows = None if flows is None else check_flows(flows, self.videos)
        self.hidden_dim, self.flow_widths = check_dim(hidden_dim, "hidden_dim"), tuple(flow_widths)
        self.flow_net = ConvNet(channels=2, widths=self.flow_widths)
        self.head = MLPHead(backbone.out_dim + self.flow_net.out_dim, hidden_dim, 2)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        flows = ((getattr(data, "extras", None) or {}).get("train") or {}).get("flow")
        if getattr(data, "train_videos", None) is not None and flows is None:
            raise ValueError(f"{cls.name} needs the videos' optical flow in data.extras['train']['flow'], "
                             f"as load_videos keeps it; {data.name!r} has none")
        return super().for_data(backbone, data, **{"flows": None if flows is None else torch.as_tensor(flows),
                                                   **hparams})

    def pair_loss(self, frames, flows, generator, return_accuracy=False):
        """(N, C, H, W) frames, their (N, 2, H, W) flows -> the correspondence loss, a negative per frame
        drawn from ``generator`` (and the pairs' accuracy with ``return_accuracy``)."""
        partner = derangement(len(frames), generator).to(frames.device)
        return pair_correspondence_loss(self.backbone(to_float(frames)), self.flow_net(flows.float()), partner,
                                   self.head, return_accuracy)

    def training_step(self, images, generator, index=None):
        if self.videos is None or self.flows is None:
            raise RuntimeError(f"{self.name} has no training videos and flows: build it with for_data(backbone, "
                               f"load_videos(...)) or set .videos and .flows")
        if index is None:
            raise ValueError(f"{self.name}.training_step needs index, each image's position in the training set")
        clips = self.videos[index.cpu()].to(images.device, non_blocking=True)       # (N, T, C, H, W)
        flows = self.flows[index.cpu()].to(images.device, non_blocking=True)        # (N, T-1, 2, H, W)
        frames, flow = frame_flow_pairs(clips, flows, generator)
        return self.pair_loss(frames, flow, generator)

    @torch.no_grad()
    def correspondence_accuracy(self, videos, flows, generator: torch.Generator, batch_size: int = 256) -> float:
        """The fraction of (frame, flow) pairs classified right on held-out clips, in eval mode; chance 1/2.
        Per clip a frame, its own flow (a positive) and another clip's of the same batch (a negative)."""
        check_generator(generator)
        flows = check_flows(flows, check_videos(videos, 2))
        device = next(self.parameters()).device
        hits, count = 0.0, 0
        with eval_mode(self):
            for start in range(0, len(videos), batch_size):
                clips, flow = videos[start:start + batch_size], flows[start:start + batch_size]
                if len(clips) < 2:          # a last clip alone has no other clip to be its negative
                    break
                frames, flow = frame_flow_pairs(clips, flow, generator)
                _, accuracy = self.pair_loss(frames.to(device), flow.to(device), generator, return_accuracy=True)
                hits, count = hits + accuracy * len(clips), count + len(clips)
        return hits / count

    def hparams(self):
        return {"hidden_dim": self.hidden_dim, "flow_widths": self.flow_widths}
