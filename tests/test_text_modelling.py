"""Captions of the world, the tokenizer, BERT's masking, causal attention, and that both models learn."""
import pytest
import torch
import torch.nn.functional as F

from sslcourse.data.world import CLASSES, sample_scenes
from sslcourse.text import (COLOURS, SIZES, TEXTURES, TextTransformer, Tokenizer, caption_corpus, captions,
                            language_model_loss, mask_language, mlm_loss, next_token_loss, positional_entropy,
                            train_language_model, unigram_entropy)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def corpus():
    texts = caption_corpus(2000, seed=0)
    tokenizer = Tokenizer.from_corpus(texts)
    return tokenizer, tokenizer.encode(texts), tokenizer.encode(caption_corpus(500, seed=1)), texts


# ---------------------------------------------------------------- the corpus and the tokenizer

def test_captions_describe_each_scene_and_are_deterministic():
    scenes = sample_scenes(50, seed=3)
    texts = captions(scenes)
    assert texts == caption_corpus(50, seed=3) and texts != caption_corpus(50, seed=4)
    for i, text in enumerate(texts):
        words = text.split()
        assert len(words) == 18
        assert words[3] == words[14] == CLASSES[scenes.cls[i, 0]].lower()
        assert words[2] == words[16] == COLOURS[round(scenes.hue[i, 0] * 6) % 6]
        assert words[10] == TEXTURES[scenes.bg_kind[i]]
        scale = scenes.scale[i, 0]
        assert words[1] == (SIZES[0] if scale < 0.55 else SIZES[2] if scale > 0.65 else SIZES[1])
        x, y = scenes.x[i, 0], scenes.y[i, 0]
        assert words[7] == ("left" if x < 0.4 else "right" if x > 0.6 else "centre")
        assert words[6] == ("top" if y < 0.4 else "bottom" if y > 0.6 else "middle")
    assert texts[0].startswith("a ") and texts[0].endswith(" .")


def test_tokenizer_round_trips_and_has_the_special_tokens(corpus):
    tokenizer, ids, _, texts = corpus
    assert tokenizer.vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (0, 2, 3, 4)
    assert ids.shape == (2000, 20) and ids.dtype == torch.long
    assert (ids[:, 0] == tokenizer.cls_id).all() and (ids[:, -1] == tokenizer.sep_id).all()
    assert tokenizer.decode(ids[:10]) == texts[:10]
    short = tokenizer.encode(["a red star", "a zebra"])
    assert short.tolist()[1][-1] == tokenizer.pad_id and tokenizer.decode(short) == ["a red star", "a [UNK]"]


# ---------------------------------------------------------------- BERT's masking

def test_mask_language_chooses_exactly_15_percent_of_the_words_and_leaves_the_rest(corpus):
    tokenizer, ids, *_ = corpus
    inputs, chosen = mask_language(ids, tokenizer, generator())
    assert (chosen.sum(dim=1) == round(0.15 * 18)).all()
    assert not chosen[:, 0].any() and not chosen[:, -1].any()                   # never [CLS] or [SEP]
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert len({tuple(row.tolist()) for row in chosen}) > 500                  # per caption, not one pattern
    again, chosen_again = mask_language(ids, tokenizer, generator())
    assert torch.equal(again, inputs) and torch.equal(chosen_again, chosen)
    assert not torch.equal(mask_language(ids, tokenizer, generator(1))[1], chosen)


def test_mask_language_splits_the_chosen_words_80_10_10(corpus):
    tokenizer, ids, *_ = corpus
    big = ids.repeat(20, 1)                                                    # 40,000 captions, 120,000 chosen
    inputs, chosen = mask_language(big, tokenizer, generator())
    original, corrupted = big[chosen], inputs[chosen]
    masked = (corrupted == tokenizer.mask_id).float().mean()
    kept = (corrupted == original).float().mean()
    replaced = ((corrupted != original) & (corrupted != tokenizer.mask_id)).float().mean()
    n_words = len(tokenizer) - tokenizer.n_special
    # A random word is the original word 1 time in n_words: that share of the 10% counts as kept.
    assert abs(masked - 0.8) < 0.01
    assert abs(replaced - 0.1 * (1 - 1 / n_words)) < 0.01
    assert abs(kept - (0.1 + 0.1 / n_words)) < 0.01
    assert (corrupted[corrupted != tokenizer.mask_id] >= tokenizer.n_special).all()   # random words are words


@pytest.mark.parametrize("kwargs,error,message", [
    ({"ratio": 1.0}, ValueError, "mask_ratio must be a number in \\[0, 1\\)"),
    ({"ratio": -0.1}, ValueError, "got -0.1"),
    ({"mask_p": 1.2}, ValueError, "mask_p must be a probability in \\[0, 1\\], got 1.2"),
    ({"mask_p": 0.8, "random_p": 0.3}, ValueError, "mask_p \\+ random_p must be at most 1"),
])
def test_mask_language_bad_arguments(corpus, kwargs, error, message):
    tokenizer, ids, *_ = corpus
    with pytest.raises(error, match=message):
        mask_language(ids[:4], tokenizer, generator(), **kwargs)


def test_mask_language_bad_inputs(corpus):
    tokenizer, ids, *_ = corpus
    with pytest.raises(ValueError, match="no \\[PAD\\]"):
        mask_language(tokenizer.encode(["a red star", "a star"]), tokenizer, generator())
    with pytest.raises(TypeError, match="ids must be int64 token ids, got dtype torch.float32"):
        mask_language(ids.float(), tokenizer, generator())
    with pytest.raises(ValueError, match="ids must have 2 dimensions"):
        mask_language(ids[0], tokenizer, generator())


# ---------------------------------------------------------------- losses

def test_mlm_loss_is_cross_entropy_on_the_chosen_positions_only(corpus):
    tokenizer, ids, *_ = corpus
    ids = ids[:6]
    _, chosen = mask_language(ids, tokenizer, generator())
    logits = torch.randn(6, 20, len(tokenizer), dtype=torch.float64, generator=generator(), requires_grad=True)
    loss = mlm_loss(logits, ids, chosen)
    terms = [-F.log_softmax(logits[i, t], dim=0)[ids[i, t]] for i in range(6) for t in range(20) if chosen[i, t]]
    torch.testing.assert_close(loss, sum(terms) / len(terms))
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[~chosen] == 0).all() and (grad[chosen] != 0).any()
    changed = logits.detach().clone()
    changed[~chosen] = torch.randn_like(changed[~chosen]) * 10
    torch.testing.assert_close(mlm_loss(changed, ids, chosen), loss)


def test_next_token_loss_predicts_the_next_token_and_skips_padding():
    ids = torch.tensor([[2, 7, 8, 3, 0], [2, 9, 9, 8, 3]])
    logits = torch.randn(2, 5, 10, dtype=torch.float64, generator=generator(), requires_grad=True)
    loss = next_token_loss(logits, ids, pad_id=0)
    pairs = [(i, t) for i in range(2) for t in range(4) if ids[i, t + 1] != 0]
    expected = sum(-F.log_softmax(logits[i, t], dim=0)[ids[i, t + 1]] for i, t in pairs) / len(pairs)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[:, -1] == 0).all() and (grad[0, 3] == 0).all()                 # no target after the end, or [PAD]


# ---------------------------------------------------------------- attention

def test_causal_prediction_at_t_does_not_depend_on_later_tokens(corpus):
    tokenizer, ids, *_ = corpus
    torch.manual_seed(0)
    causal = TextTransformer(len(tokenizer), 20, causal=True).eval()
    bidirectional = TextTransformer(len(tokenizer), 20, causal=False).eval()
    bidirectional.load_state_dict(causal.state_dict())
    batch = ids[:8]
    for t in (0, 5, 12, 18):
        perturbed = batch.clone()
        perturbed[:, t + 1:] = torch.randint(tokenizer.n_special, len(tokenizer), perturbed[:, t + 1:].shape,
                                             generator=generator(t))
        with torch.no_grad():
            before, after = causal(batch), causal(perturbed)
            torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1])
            assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])
            # The same weights without the causal mask see the future: the control.
            assert not torch.allclose(bidirectional(perturbed)[:, :t + 1], bidirectional(batch)[:, :t + 1])


def test_bidirectional_model_ignores_padding(corpus):
    tokenizer, ids, *_ = corpus
    torch.manual_seed(0)
    model = TextTransformer(len(tokenizer), 24).eval()
    padded = torch.cat([ids[:4], torch.full((4, 4), tokenizer.pad_id)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[:, :20], model(ids[:4]))
    with pytest.raises(ValueError, match="sequences of 25 tokens exceed max_length 24"):
        model(torch.zeros(1, 25, dtype=torch.long))


# ---------------------------------------------------------------- learning (slow)
#
# The best context-free predictions: the unigram entropy of the words (about 3.2 nats),
# and, knowing the position, the entropy of each position's words (about 0.69 nats for the
# words that masked LM chooses, 0.65 for next-token targets). The second sentence repeats the
# shape and the colour, so a model that reads the context goes below the positional entropy.

@pytest.mark.slow
@pytest.mark.parametrize("causal", [False, True], ids=["masked_lm", "next_token"])
def test_language_models_learn_the_captions(corpus, causal):
    tokenizer, ids, test, _ = corpus
    torch.manual_seed(0)
    model = TextTransformer(len(tokenizer), ids.shape[1], causal=causal)
    losses = train_language_model(model, ids, tokenizer, steps=150)
    with torch.no_grad():
        test_loss = language_model_loss(model, test, tokenizer, generator(7)).item()
    targets = ids[:, 1:] if causal else ids[:, 1:-1]
    unigram, positional = unigram_entropy(targets), positional_entropy(targets)
    assert test_loss < 0.3 * unigram, f"test loss {test_loss:.3f}, unigram entropy {unigram:.3f}"
    assert test_loss < positional - 0.1, f"test loss {test_loss:.3f}, positional entropy {positional:.3f}"
    assert losses[-1] < losses[0]
