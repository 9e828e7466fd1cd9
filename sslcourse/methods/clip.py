"""CLIP on the world: images learn from their captions; class names become classifiers.

Radford et al. "Learning Transferable Visual Models From Natural Language Supervision."
ICML 2021 (Sec. 2.3-2.5, Fig. 3):

    I_f = f(x)                  image encoder: the course backbone, (N, D_img)
    T_f = g(caption)            text encoder: a transformer, its [CLS] feature, (N, width)
    I_e = I_f W_i,  T_e = T_f W_t        linear projections into one (N, embed_dim) space
    loss = clip_loss(I_e, T_e, exp(t))   symmetric cross-entropy over the (N, N) cosine similarities

Zero-shot classification (Sec. 3.1.4): embed a prompt per class ("a {} .", "the {} is", ...),
l2-normalise, average over the templates and normalise again (the paper's prompt
ensembling); an image's class is the prompt it is most similar to.

The captions are the world's (``sslcourse.text.world_captions``: "a small red star at the
top left on a striped background . the star is red ."). The trainer passes each batch's
positions in the training set (``batch_extras = ("index",)``), and the method looks up the
captions' token ids, which it keeps in a buffer (so a checkpoint holds them).

Where this differs from the paper, for 16-32 px images and CPU runs of seconds:
- the text transformer is small (width 64, 2 blocks, 4 heads; the paper: 512 wide, 12 blocks)
  and bidirectional, pooled at [CLS] as in BERT; the paper's is causal, pooled at [EOS];
- no crop, the paper's only augmentation: it would move the object away from the position
  its caption names. Instead half the images go grey (``gray_p``), as in the course's
  SimCLR: colour is the world's easiest cue and tells most of a batch's captions apart,
  and the shape, the class that zero-shot classification asks for, is learned slowly (8
  epochs at batch 128 in colour: prompts "a {colour} ." find the colour of 0.83 of the
  test images, a linear probe finds the shape of 0.27). On 2,000 images at 16 px (8 epochs,
  seed 0), zero-shot accuracy is 0.33 with ``gray_p=0.5``, 0.24 with 0, 0.22 with 1 (the
  test images are in colour);
- embed_dim 64 (the paper: 512 to 1,024), batch 64 (32,768), AdamW at lr 2e-3 (5e-4), and
  weight decay on every parameter, the logit scale too (the paper exempts gains, biases and t).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import extract_features
from ..losses.clip import INITIAL_LOGIT_SCALE, MAX_LOGIT_SCALE, clip_loss
from ..text import CAPTION_LENGTH, CAPTION_WORDS, TextTransformer, Tokenizer, world_captions
from ..transforms import Augment
from ..utils import check_dim, eval_mode
from .base import Method, check_index

# Zero-shot prompts in the captions' own words: "{}" is the class name.
TEMPLATES = ("a {} .", "the {} .", "the {} is", "a {} at the", "a {} on a background .")


class CLIP(Method):
    name = "clip"
    paper = ("Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger, Sutskever. "
             "Learning Transferable Visual Models From Natural Language Supervision. ICML 2021.")
    summary = "each image picks its caption in the batch and each caption its image; zero-shot classes from prompts"
    batch_extras = ("index",)
    defaults = {**Method.defaults, "lr": 2e-3, "batch_size": 64, "epochs": 20}

    def __init__(self, backbone, n_train: int, image_size: int = 32, embed_dim: int = 64, text_width: int = 64,
                 text_depth: int = 2, text_heads: int = 4, gray_p: float = 0.5,
                 train_captions: list[str] | None = None):
        """``n_train``: the number of training images; ``train_captions``: their captions, in order
        (``for_data`` passes both; without captions the buffer stays empty until a checkpoint fills it)."""
        super().__init__(backbone)
        self.n_train, self.image_size = check_dim(n_train, "n_train"), image_size
        self.embed_dim = check_dim(embed_dim, "embed_dim")
        self.tokenizer = Tokenizer(CAPTION_WORDS)
        self.text = TextTransformer(len(self.tokenizer), CAPTION_LENGTH, text_width, text_depth, text_heads)
        self.text.head = nn.Identity()           # CLIP reads the text features, not word predictions
        self.image_projection = nn.Linear(backbone.out_dim, embed_dim, bias=False)    # W_i
        self.text_projection = nn.Linear(text_width, embed_dim, bias=False)           # W_t
        self.log_scale = nn.Parameter(torch.tensor(math.log(INITIAL_LOGIT_SCALE)))    # t; exp(t) = 1 / temperature
        self.register_buffer("captions", torch.full((n_train, CAPTION_LENGTH), self.tokenizer.pad_id))
        if train_captions is not None:
            self.set_captions(train_captions)
        self.augment = Augment(image_size, gray_p=gray_p)      # resize (if needed), grey with gray_p, normalise

    @classmethod
    def for_data(cls, backbone, data, **hparams):
        """CLIP for a ``load_world`` data set: its size and its training images' captions."""
        return cls(backbone, **{"n_train": len(data.train_images), "image_size": data.image_size,
                                "train_captions": world_captions(data, "train"), **hparams})

    def set_captions(self, texts: list[str]) -> None:
        """Store the token ids of the ``n_train`` training captions, in the training set's order."""
        if isinstance(texts, str) or len(texts) != self.n_train:
            raise ValueError(f"train_captions must be a list of {self.n_train} captions, one per training image, "
                             f"got {type(texts).__name__} of length {len(texts)}")
        self.captions.copy_(self.tokenize(texts, length=CAPTION_LENGTH))

    def tokenize(self, texts, length: int | None = None) -> torch.Tensor:
        """Texts in the captions' words -> (N, T) ids; an unknown word is an error, not a silent [UNK]."""
        unknown = sorted({word for text in texts for word in text.split()} - set(self.tokenizer.ids))
        if unknown:
            raise ValueError(f"words {unknown} are not in the captions' vocabulary: {', '.join(CAPTION_WORDS)}")
        ids = self.tokenizer.encode(texts)
        if length is not None and ids.shape[1] != length:
            raise ValueError(f"captions must have {length - 2} words like the world's, got {ids.shape[1] - 2}")
        return ids

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, embed_dim) I_e, before normalisation."""
        return self.image_projection(self.backbone(x))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, T) token ids -> (N, embed_dim) T_e, before normalisation: the [CLS] feature, projected."""
        return self.text_projection(self.text.encode(ids)[:, 0])

    embed = encode_image

    def training_step(self, images, generator, index):
        ids = self.captions[check_index(index, len(images), self.n_train)]                                                 # (N, CAPTION_LENGTH)
        if (ids[:, 0] != self.tokenizer.cls_id).any():
            raise RuntimeError("CLIP has no captions for these images: build it with CLIP.for_data(backbone, data) "
                               "or call set_captions(texts)")
        image = self.encode_image(self.augment(images, generator))                # (N, embed_dim)
        text = self.encode_text(ids)                                               # (N, embed_dim)
        return clip_loss(image, text, self.log_scale.exp())

    @torch.no_grad()
    def on_step_end(self, progress):
        self.log_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))    # the paper clips exp(t) at 100

    def hparams(self):
        return {"n_train": self.n_train, "image_size": self.image_size, "embed_dim": self.embed_dim,
                "text_width": self.text.token_embed.embedding_dim, "text_depth": len(self.text.blocks),
                "text_heads": self.text.blocks[0].attn.heads, "gray_p": self.augment.gray_p}


def _check_templates(templates) -> tuple[str, ...]:
    if isinstance(templates, str) or not templates or not all(
            isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with one '{{}}' for the class name, "
                         f"got {templates!r}")
    return tuple(templates)


@torch.no_grad()
def zero_shot_classifier(method: CLIP, class_names, templates=TEMPLATES) -> torch.Tensor:
    """(C, embed_dim) unit vectors, one per class: the mean over templates of the normalised
    text embeddings of "template with the class name", normalised again (prompt ensembling)."""
    templates = _check_templates(templates)
    with eval_mode(method):
        weights = []
        for name in class_names:
            ids = method.tokenize([t.format(name) for t in templates]).to(method.log_scale.device)
            text = F.normalize(method.encode_text(ids).float(), dim=1)                  # (templates, embed_dim)
            weights.append(F.normalize(text.mean(dim=0), dim=0))
    return torch.stack(weights).cpu()                                                   # (C, embed_dim)


def _split(data, split: str):
    """Images and labels of a split, checked."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    labels = getattr(data, f"{split}_labels")
    if labels is None:
        raise ValueError(f"data set {data.name!r} has no {split} labels to score zero-shot predictions")
    return getattr(data, f"{split}_images"), labels


def _accuracy(method, image_features, labels, class_names, templates) -> float:
    weights = zero_shot_classifier(method, class_names, templates)                     # (C, D)
    predictions = (F.normalize(image_features, dim=1) @ weights.T).argmax(dim=1)       # (N,)
    return (predictions == labels).float().mean().item()


def zero_shot_accuracy(method: CLIP, data, templates=TEMPLATES, split: str = "test", device="cpu") -> float:
    """Accuracy on a split's images of the classifier built from ``templates`` and the data set's class
    names (lower case, as in the captions): labels only score the predictions."""
    images, labels = _split(data, split)
    features = extract_features(method, images, device, forward=method.encode_image)  # (N, embed_dim)
    return _accuracy(method, features, labels, [c.lower() for c in data.classes], templates)


def prompt_study(method: CLIP, data, templates=TEMPLATES, split: str = "test", device="cpu") -> dict:
    """Zero-shot accuracy of each template alone, then of their ensemble: {template: accuracy, ..., "ensemble": ...}."""
    templates = _check_templates(templates)
    images, labels = _split(data, split)
    features = extract_features(method, images, device, forward=method.encode_image)  # (N, embed_dim)
    names = [c.lower() for c in data.classes]
    scores = {t: _accuracy(method, features, labels, names, (t,)) for t in templates}
    scores["ensemble"] = _accuracy(method, features, labels, names, templates)
    return scores
