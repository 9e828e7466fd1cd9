"""Audio-visual correspondence on the world: does this sound go with this frame? And where does it sound?

Arandjelovic, Zisserman. "Look, Listen and Learn." ICCV 2017 (L3-Net, Fig. 2):

    v = f(frame)                 vision subnetwork: the course backbone, pooled, (N, D)
    a = g(log spectrogram)       audio subnetwork: a small conv net, pooled, (N, D)
    s = fc2(relu(fc1([v, a])))   fusion: two fully connected layers on the concatenation
    loss = correspondence_loss   logistic loss, positives = same scene, negatives = other scenes

Arandjelovic, Zisserman. "Objects that Sound." ECCV 2018 (AVOL-Net, Sec. 4): the image keeps
its grid; each position of the last feature map is embedded (a 1x1 conv) in the audio's
space, and the scalar product of the l2-normalised audio embedding with every position is a
*localisation map*; its maximum, calibrated (s = w max + b), is the correspondence score.
``fusion="similarity"`` trains that way, ``fusion="concat"`` (default) as L3;
``localisation_map`` draws the map for either (it is what ``similarity`` is trained on).

The sounds are the world's (``sslcourse.data.sound``: pitch from the class, timbre and
loudness from the size). The method keeps each training scene's sound sources in a buffer
and synthesises its batch's clips at every step, with fresh phases and distractor noise
from the training generator (an augmentation); the trainer passes each batch's positions
in the training set (``batch_extras = ("index",)``), as for CLIP.

Where this differs from the papers, for 16-64 px images and CPU runs of seconds:
- 0.25 s clips at 8 kHz and a 40-band log-mel spectrogram (L3: 1 s at 48 kHz, a 257 x 199
  log spectrogram); the audio subnetwork has 3 conv blocks (L3: 4 blocks of 2 convs, 512 wide);
- embeddings of 128 (L3: 512 before fusion, fc1 of 128); every other scene of the batch is a
  negative, weighed to half the loss (L3: one sampled negative per positive);
- images are only flipped: a crop would change the visible size the loudness tells;
- the localisation map has the resolution of the backbone's last map: 4 x 4 for the convnet at
  64 px (``load_world(image_size=64)``), where AVOL-style training puts its peak on the object
  (tests/test_avc.py); at 32 px the map is 2 x 2, every cell sees the whole image, and the peak
  falls on the object no more often than a random cell (measured: 0.14 of the peak cell is object,
  0.14 of a random cell, after 10 epochs on 1,500 scenes);
- the calibration starts at s = 10 max - 1: at initialisation the maximal similarities lie near
  0.1 and barely differ between pairs, and with s = max (w = 1, b = 0) the logits cannot leave
  [-1, 1] in a short run (Adam moves w by about lr per step).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sound import _check_amplitude, log_mel_spectrogram, synthesize, world_sources
from ..losses.avc import correspondence_loss
from ..models.backbones import conv_block
from ..transforms import Augment, to_float
from ..utils import check_dim, check_tensor, eval_mode
from .base import Method, check_index

FUSIONS = ("concat", "similarity")


class AudioNet(nn.Module):
    """(N, 1, n_mels, frames) log-mel -> (N, out_dim): batch norm of the input, conv blocks, mean pooling."""

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)     # log power has no natural scale: standardise it
        self.blocks = nn.Sequential(*(conv_block(i, o) for i, o in zip((1, *widths[:-1]), widths)))
        self.out_dim = widths[-1]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.input_norm(spec)).mean(dim=(2, 3))


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) normalised images -> (N, out_dim, h, w): the backbone's last map, before pooling."""
    expected = ("a localisation map needs a convolutional backbone whose blocks end in an (N, out_dim, h, w) "
                f"map (convnet, resnet18), got {type(backbone).__name__}")
    try:
        for block in backbone.blocks:
            x = block(x)
    except (AttributeError, RuntimeError) as err:       # no blocks, or blocks of tokens (the ViT)
        raise ValueError(expected) from err
    if x.ndim != 4 or x.shape[1] != getattr(backbone, "out_dim", None):
        raise ValueError(f"{expected}, whose blocks give {tuple(x.shape)}")
    return x


class AVC(Method):
    name = "avc"
    paper = "Arandjelovic, Zisserman. Look, Listen and Learn. ICCV 2017."
    summary = "does this sound go with this frame: a binary classifier on image and audio subnetworks"
    batch_extras = ("index",)
    defaults = {**Method.defaults, "lr": 2e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, n_train: int, max_objects: int = 1, image_size: int = 32, embed_dim: int = 128,
                 fusion: str = "concat", noise: float = 0.05, distractor: float = 0.1, flip_p: float = 0.5,
                 train_sources: torch.Tensor | None = None):
        """``train_sources``: the (n_train, max_objects, 3) sound sources of the training scenes
        (``for_data`` passes them; without, the buffer stays empty until a checkpoint fills it)."""
        super().__init__(backbone)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        self.n_train, self.max_objects = check_dim(n_train, "n_train"), check_dim(max_objects, "max_objects")
        self.image_size, self.embed_dim, self.fusion = image_size, check_dim(embed_dim, "embed_dim"), fusion
        _check_amplitude(noise, "noise"), _check_amplitude(distractor, "distractor")
        self.noise, self.distractor = noise, distractor
        self.audio = AudioNet()
        self.image_projection = nn.Linear(backbone.out_dim, embed_dim)           # a 1x1 conv on the map
        self.audio_projection = nn.Linear(self.audio.out_dim, embed_dim)
        if fusion == "concat":       # fc1 on [v, a] is W_v v + W_a a: the two projections; fc2 to one logit
            self.classifier = nn.Sequential(nn.ReLU(), nn.Linear(embed_dim, 1))    # (L3: two softmax units)
        else:                        # AVOL's calibration of the maximal similarity: s = w max + b
            self.calibration = nn.Parameter(torch.tensor([10.0, -1.0]))          # (w, b), see the docstring
        self.register_buffer("sources", torch.zeros(n_train, max_objects, 3))
        if train_sources is not None:
            self.set_sources(train_sources)
        self.augment = Augment(image_size, flip_p=flip_p)

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        """AVC for a ``load_world`` data set: its size and its training scenes' sound sources."""
        sources = world_sources(data, "train")
        return cls(backbone, **{"n_train": len(sources), "max_objects": sources.shape[1],
                                "image_size": data.image_size, "train_sources": sources, **hparams})

    def set_sources(self, sources: torch.Tensor) -> None:
        if not isinstance(sources, torch.Tensor) or tuple(sources.shape) != tuple(self.sources.shape):
            got = tuple(sources.shape) if isinstance(sources, torch.Tensor) else type(sources).__name__
            raise ValueError(f"train_sources must be a tensor of shape {tuple(self.sources.shape)} "
                             f"(sslcourse.data.sound.world_sources), got {got}")
        self.sources.copy_(sources)

    def encode_audio(self, waves: torch.Tensor) -> torch.Tensor:
        """(N, SAMPLES) waveforms -> (N, embed_dim)."""
        with torch.autocast(waves.device.type, enabled=False):      # the filterbank product in float32
            spec = log_mel_spectrogram(waves.float())[:, None]      # (N, 1, n_mels, frames)
        return self.audio_projection(self.audio(spec))

    def image_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, h, w, embed_dim): every position embedded."""
        return self.image_projection(feature_map(self.backbone, x).permute(0, 2, 3, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_projection(self.backbone(x))

    def scores(self, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """N normalised images and M waveforms -> (N, M) correspondence logits, image i against sound j."""
        audio = self.encode_audio(waves)                                                 # (M, D)
        if self.fusion == "concat":
            hidden = self.embed(x)[:, None, :] + audio[None, :, :]                      # (N, M, D): fc1
            return self.classifier(hidden).squeeze(-1)
        similarity = torch.einsum("nhwd,md->nmhw", F.normalize(self.image_grid(x), dim=-1),
                                  F.normalize(audio, dim=-1))                            # (N, M, h, w)
        weight, bias = self.calibration
        return weight * similarity.flatten(2).amax(dim=2) + bias

    def training_step(self, images, generator, index):
        params = self.sources[check_index(index, len(images), self.n_train)]                                                     # (N, K, 3)
        if (params[:, :, 1] <= 0).all(dim=1).any():
            raise RuntimeError("AVC has no sounds for these scenes: build it with AVC.for_data(backbone, data) "
                               "or call set_sources(world_sources(data))")
        with torch.autocast(images.device.type, enabled=False):   # sums of sines in float32, also under bf16
            waves = synthesize(params, generator, self.noise, self.distractor)          # (N, SAMPLES)
        return correspondence_loss(self.scores(self.augment(images, generator), waves))

    def hparams(self):
        return {"n_train": self.n_train, "max_objects": self.max_objects, "image_size": self.image_size,
                "embed_dim": self.embed_dim, "fusion": self.fusion, "noise": self.noise,
                "distractor": self.distractor, "flip_p": self.augment.flip_p}


def _check_pairs(images, waves):
    check_tensor(images, "images", ndim=4)
    check_tensor(waves, "waves", ndim=2, floating=True)
    if len(images) != len(waves):
        raise ValueError(f"images and waves must pair up one to one, got {len(images)} images and {len(waves)} sounds")


@torch.no_grad()
def correspondence_accuracy(method: AVC, images: torch.Tensor, waves: torch.Tensor, batch_size: int = 256) -> float:
    """Balanced accuracy of "does this sound go with this frame" on N >= 2 (uint8 image, sound) pairs:
    each image against its own sound (positive) and against the sound of image i + N // 2 (negative,
    another scene). Chance is 0.5."""
    _check_pairs(images, waves)
    if len(images) < 2:
        raise ValueError("correspondence accuracy needs at least 2 pairs (a negative is another pair's sound)")
    device = method.sources.device
    other = torch.roll(torch.arange(len(images)), -(len(images) // 2))
    correct = []
    with eval_mode(method):
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            x = to_float(images[part].to(device))
            own = torch.diagonal(method.scores(x, waves[part].to(device)))
            foreign = torch.diagonal(method.scores(x, waves[other[part]].to(device)))
            correct += [(own > 0).float().cpu(), (foreign <= 0).float().cpu()]
    return torch.cat(correct).mean().item()


@torch.no_grad()
def localisation_map(method: AVC, images: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 images, (N, SAMPLES) sounds -> (N, h, w) cosine similarity between each sound's
    embedding and the embedding of every position of its image's last feature map (AVOL-Net)."""
    _check_pairs(images, waves)
    device = method.sources.device
    with eval_mode(method):
        grid = F.normalize(method.image_grid(to_float(images.to(device))), dim=-1)     # (N, h, w, D)
        audio = F.normalize(method.encode_audio(waves.to(device)), dim=-1)            # (N, D)
    return torch.einsum("nhwd,nd->nhw", grid, audio).cpu()


def peak_on_object(maps: torch.Tensor, object_masks) -> tuple[float, float]:
    """(N, h, w) localisation maps, (N, H, W) bool object masks -> (the fraction of maps whose peak cell is
    at least half object, the same fraction for a random cell: the chance level).

    A map's cell covers an (H/h) x (W/w) block of pixels.
    """
    check_tensor(maps, "maps", ndim=3)
    object_masks = torch.as_tensor(object_masks)
    check_tensor(object_masks, "object_masks", ndim=3)
    (n, h, w), (height, width) = maps.shape, object_masks.shape[-2:]
    if object_masks.dtype != torch.bool or len(object_masks) != n or height % h or width % w:
        raise ValueError(f"object_masks must be bool (N, H, W) masks, one per map, with H and W multiples of the "
                         f"map's {h} x {w}; got {object_masks.dtype} {tuple(object_masks.shape)} for maps "
                         f"{tuple(maps.shape)}")
    covered = F.avg_pool2d(object_masks.float()[:, None], (height // h, width // w))[:, 0].flatten(1) >= 0.5   # (N, h*w)
    peak = covered[torch.arange(n), maps.flatten(1).argmax(dim=1)]
    return peak.float().mean().item(), covered.float().mean().item()
