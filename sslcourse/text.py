"""Masked language modelling and next-token prediction on captions of the world, from scratch.

The corpus: one caption per scene of ``sslcourse.data.world.sample_scenes``, written from
the scene's parameters (no rendering), deterministic for a seed:

    "a small red star at the top left on a striped background . the star is red ."

The second sentence repeats the shape and the colour, so a model that reads the context
recovers them; the other words are the scene's independent attributes or fixed words.
``world_captions(data, split)`` gives the caption of every image of a ``load_world`` data
set, from the free labels it keeps: image-caption pairs for CLIP (``sslcourse.methods.clip``).

Masked language modelling (BERT: Devlin, Chang, Lee, Toutanova. "BERT: Pre-training of
Deep Bidirectional Transformers for Language Understanding." NAACL 2019, Sec. 3.1):
choose 15% of the words; of those, 80% become [MASK], 10% a random word, 10% stay
unchanged; predict the original word at the chosen positions only, with bidirectional
attention. The choice uses ``sslcourse.masking.random_masking``, MAE's per-sample shuffle:
exactly round(0.15 x words) per caption, where BERT draws each word with probability 0.15
(same mean, no variance); [CLS] and [SEP] are never chosen, as in BERT.

Next-token prediction (GPT: Radford, Narasimhan, Salimans, Sutskever. "Improving Language
Understanding by Generative Pre-Training." 2018): predict token t+1 from tokens 1..t,
with causal attention (``scaled_dot_product_attention(is_causal=True)``).

Both use the ViT's transformer ``Block``; the text model adds token and learned position
embeddings and a linear output over the vocabulary.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data.world import CLASSES, WorldConfig, free_labels_of, sample_scenes
from .masking import masked_mean, random_masking
from .models.vit import Block
from .utils import check_dim, check_generator, check_positive, check_tensor

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SIZES = ("small", "medium", "large")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple")      # hue in sixths, red centred on 0
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")
TEXTURES = ("striped", "checked", "cloudy")                           # bg_kind 0, 1, 2
SHAPE_WORDS = tuple(name.lower() for name in CLASSES)                 # "L-shape" -> "l-shape": one word
# Every word a caption can hold (the fixed words of the template, then the attributes).
CAPTION_WORDS = ("a", "at", "the", "on", "background", ".", "is") + SIZES + COLOURS + SHAPE_WORDS + ROWS \
    + COLUMNS + TEXTURES
CAPTION_LENGTH = 20                                                   # 18 words + [CLS] and [SEP], always


def _third(value: np.ndarray, low: float, high: float) -> np.ndarray:
    """0, 1 or 2: below ``low``, between, above ``high``."""
    return (value >= low).astype(int) + (value > high).astype(int)


def captions(scenes) -> list[str]:
    """One caption per scene, from its main object (slot 0) and its background."""
    return _describe(scenes.cls[:, 0], scenes.hue[:, 0], scenes.x[:, 0], scenes.y[:, 0], scenes.scale[:, 0],
                     scenes.bg_kind)


def _describe(cls, hue, x, y, scale, bg_kind) -> list[str]:
    """The captions of main objects given as (N,) arrays of their parameters, and (N,) background kinds."""
    low, high = WorldConfig().scale_range
    size = _third(np.asarray(scale), low + (high - low) / 3, low + 2 * (high - low) / 3)
    colour = np.floor(np.asarray(hue) * 6 + 0.5).astype(int) % 6
    # Centres lie in [radius, 1 - radius]: the middle band is (0.4, 0.6), not a third of the image.
    row, column = _third(np.asarray(y), 0.4, 0.6), _third(np.asarray(x), 0.4, 0.6)
    texts = []
    for i in range(len(cls)):
        shape, hue_word = SHAPE_WORDS[cls[i]], COLOURS[colour[i]]
        texts.append(f"a {SIZES[size[i]]} {hue_word} {shape} at the {ROWS[row[i]]} {COLUMNS[column[i]]} "
                     f"on a {TEXTURES[bg_kind[i]]} background . the {shape} is {hue_word} .")
    return texts


def world_captions(data, split: str = "train") -> list[str]:
    """The caption of every image of a split of a ``load_world`` data set, in order.

    Written from the free labels that ``load_world`` keeps in ``data.extras[split]`` (the
    scenes' own parameters: the same seed gives the same captions), so no scene is drawn again.
    """
    labels = free_labels_of(data, split, ("labels", "hue", "x", "y", "scale", "background"), "captions")
    return _describe(labels["labels"], labels["hue"], labels["x"], labels["y"], labels["scale"],
                     labels["background"])


def caption_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of the world's scenes drawn from ``seed`` (the default world's configuration)."""
    return captions(sample_scenes(n, seed))


class Tokenizer:
    """Word-level: the special tokens first ([PAD] = 0), then the corpus's words in sorted order."""

    def __init__(self, words):
        words = sorted(set(words) - set(SPECIAL_TOKENS))
        self.vocabulary = list(SPECIAL_TOKENS) + words
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(len(SPECIAL_TOKENS))
        self.n_special = len(SPECIAL_TOKENS)

    @classmethod
    def from_corpus(cls, texts) -> "Tokenizer":
        return cls(word for text in texts for word in text.split())

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, texts) -> torch.Tensor:
        """Texts -> (N, T) long ids: [CLS] words [SEP], padded with [PAD] to the longest; unknown words [UNK]."""
        rows = [[self.cls_id] + [self.ids.get(w, self.unk_id) for w in text.split()] + [self.sep_id] for text in texts]
        length = max(map(len, rows))
        return torch.tensor([row + [self.pad_id] * (length - len(row)) for row in rows], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """(N, T) ids -> texts, without [PAD], [CLS] and [SEP] ([MASK] and [UNK] stay visible)."""
        hidden = {self.pad_id, self.cls_id, self.sep_id}
        return [" ".join(self.vocabulary[i] for i in row if i not in hidden) for row in ids.tolist()]


def mask_language(ids: torch.Tensor, tokenizer: Tokenizer, generator: torch.Generator, ratio: float = 0.15,
                  mask_p: float = 0.8, random_p: float = 0.1):
    """BERT's corruption of (N, T) captions [CLS] w_1 .. w_{T-2} [SEP] -> (inputs, chosen).

    ``chosen`` (N, T) bool: round(ratio (T - 2)) words per caption (``random_masking``). Of them,
    a fraction ``mask_p`` becomes [MASK], ``random_p`` a random word (any word of the vocabulary,
    possibly the same), the rest stays. Unchosen tokens are never changed. The targets are ``ids``.
    """
    check_tensor(ids, "ids", ndim=2)
    if ids.dtype != torch.long:
        raise TypeError(f"ids must be int64 token ids, got dtype {ids.dtype}")
    if (ids == tokenizer.pad_id).any():
        raise ValueError("mask_language takes captions of one length (no [PAD]); the world's captions all are")
    for p, name in ((mask_p, "mask_p"), (random_p, "random_p")):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    if mask_p + random_p > 1:
        raise ValueError(f"mask_p + random_p must be at most 1, got {mask_p} + {random_p}")
    check_generator(generator)
    n, length = ids.shape
    _, chosen_words, _ = random_masking(n, length - 2, ratio, generator)            # (N, T - 2)
    chosen = F.pad(chosen_words, (1, 1), value=False)                                # never [CLS], [SEP]
    draw = torch.rand(n, length, generator=generator)
    random_words = torch.randint(tokenizer.n_special, len(tokenizer), (n, length), generator=generator)
    inputs = ids.cpu().clone()
    inputs = torch.where(chosen & (draw < mask_p), tokenizer.mask_id, inputs)
    inputs = torch.where(chosen & (draw >= mask_p) & (draw < mask_p + random_p), random_words, inputs)
    return inputs.to(ids.device), chosen.to(ids.device)


class TextTransformer(nn.Module):
    """Token ids (N, T) -> logits (N, T, vocabulary): embeddings, the ViT's blocks, LayerNorm, linear.

    ``causal=True`` lets position t attend to positions <= t only (next-token prediction);
    otherwise attention is bidirectional and skips [PAD] keys (token id ``pad_id``).
    """

    def __init__(self, vocab_size: int, max_length: int, width: int = 64, depth: int = 2, heads: int = 4,
                 causal: bool = False, pad_id: int = 0):
        super().__init__()
        self.vocab_size, self.max_length = check_dim(vocab_size, "vocab_size"), check_dim(max_length, "max_length")
        self.causal, self.pad_id = bool(causal), pad_id
        self.token_embed = nn.Embedding(vocab_size, check_dim(width, "width"))
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, width))
        self.blocks = nn.ModuleList(Block(width, check_dim(heads, "heads")) for _ in range(check_dim(depth, "depth")))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.token_embed.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(ids))

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, T) -> features (N, T, width): everything but the output layer."""
        check_tensor(ids, "ids", ndim=2)
        if ids.shape[1] > self.max_length:
            raise ValueError(f"sequences of {ids.shape[1]} tokens exceed max_length {self.max_length}")
        x = self.token_embed(ids) + self.pos_embed[:, :ids.shape[1]]                  # (N, T, width)
        # SDPA takes a mask or is_causal, not both; a causal model needs no padding mask
        # because [PAD] only follows the tokens whose predictions count.
        keys = None if self.causal else (ids != self.pad_id)[:, None, None, :]          # (N, 1, 1, T)
        for block in self.blocks:
            x = block(x, attn_mask=keys, is_causal=self.causal)
        return self.norm(x)


def mlm_loss(logits: torch.Tensor, ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, T, V) logits against the original ``ids``, averaged over ``chosen`` positions only."""
    per_token = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none").view(ids.shape)
    return masked_mean(per_token, chosen)


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Cross-entropy of the prediction at t against token t + 1, averaged over the non-[PAD] targets."""
    targets = ids[:, 1:]
    per_token = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
    return masked_mean(per_token.view(targets.shape), targets != pad_id)


def language_model_loss(model: TextTransformer, ids: torch.Tensor, tokenizer: Tokenizer,
                        generator: torch.Generator) -> torch.Tensor:
    """The model's own objective on a batch: next-token prediction if it is causal, else masked LM."""
    if model.causal:
        return next_token_loss(model(ids), ids, tokenizer.pad_id)
    inputs, chosen = mask_language(ids, tokenizer, generator)
    return mlm_loss(model(inputs), ids, chosen)


def train_language_model(model: TextTransformer, ids: torch.Tensor, tokenizer: Tokenizer, steps: int = 300,
                         batch_size: int = 64, lr: float = 3e-3, seed: int = 0, progress: bool = False) -> list[float]:
    """AdamW on random batches of ``ids`` (N, T) for ``steps`` steps, cosine-decayed lr; returns the losses."""
    check_dim(steps, "steps")
    check_dim(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=check_positive(lr, "lr"), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="text model" + (" (causal)" if model.causal else ""), disable=not progress):
        batch = ids[torch.randint(len(ids), (batch_size,), generator=generator)]
        loss = language_model_loss(model, batch, tokenizer, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Entropy (nats) of the empirical distribution of ``tokens``: the loss of the best context-free guess."""
    counts = torch.bincount(tokens.flatten()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def positional_entropy(ids: torch.Tensor, positions: torch.Tensor | None = None) -> float:
    """Mean over ``positions`` (default: all) of the entropy of each column of ``ids``: the loss of the
    best guess that knows the position but not the other words."""
    columns = range(ids.shape[1]) if positions is None else positions.tolist()
    return float(np.mean([unigram_entropy(ids[:, t]) for t in columns]))
