"""The ViT, patches and masking, MAE and SimMIM: exact mechanics, references, errors, and that they learn."""
import json
import math
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sslcourse.cli import main
from sslcourse.data.world import load_world
from sslcourse.evaluation import evaluate, extract_features, fine_tune
from sslcourse.experiments import initial_backbone, pretrain, probe
from sslcourse.masking import kept_count, masked_mean, patchify, random_masking, take_tokens, unpatchify, visible_mean_prediction
from sslcourse.methods import METHODS, build_method
from sslcourse.methods.mae import MAE, mae_loss, normalise_patches
from sslcourse.methods.simmim import SimMIM, block_masking, simmim_loss
from sslcourse.models import BACKBONES, ViT, build_backbone
from sslcourse.models.vit import sincos_2d
from sslcourse.trainer import train
from sslcourse.transforms import to_float


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def uint8_images(n=8, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator(seed))


def build(name, size=32, **hparams):
    torch.manual_seed(0)
    return build_method(name, ViT(image_size=size), image_size=size, **hparams)


# ---------------------------------------------------------------- patches

def patchify_loop(images, p):
    """Patch k = row r, column c of the grid; inside it, pixel (y, x) then channel."""
    n, channels, h, w = images.shape
    out = torch.empty(n, (h // p) * (w // p), p * p * channels, dtype=images.dtype)
    for i in range(n):
        for r in range(h // p):
            for c in range(w // p):
                values = [images[i, ch, r * p + y, c * p + x] for y in range(p) for x in range(p)
                          for ch in range(channels)]
                out[i, r * (w // p) + c] = torch.stack(values)
    return out


@pytest.mark.parametrize("channels,height,width,p", [(3, 8, 12, 4), (1, 6, 6, 2), (3, 32, 32, 4), (2, 4, 4, 4)])
def test_patchify_matches_a_loop_and_unpatchify_inverts_it(channels, height, width, p):
    images = torch.randn(2, channels, height, width, generator=generator())
    patches = patchify(images, p)
    assert patches.shape == (2, (height // p) * (width // p), p * p * channels)
    torch.testing.assert_close(patches, patchify_loop(images, p), rtol=0, atol=0)
    assert torch.equal(unpatchify(patches, p, (height, width)), images)


def test_patchify_takes_channels_last_and_uint8_images():
    images = uint8_images(2)
    assert torch.equal(patchify(images.contiguous(memory_format=torch.channels_last), 4), patchify(images, 4))
    assert patchify(images, 4).dtype == torch.uint8


@pytest.mark.parametrize("call,error,message", [
    (lambda: patchify(torch.zeros(1, 3, 30, 32), 4), ValueError, "image size 30x32 is not divisible by the patch size 4"),
    (lambda: patchify(torch.zeros(3, 32, 32), 4), ValueError, "images must have 4 dimensions"),
    (lambda: patchify(torch.zeros(1, 3, 32, 32), 0), ValueError, "patch must be a positive int"),
    (lambda: unpatchify(torch.zeros(1, 10, 48), 4, 16), ValueError, r"do not tile a 16x16 image .* expected \(N, 16,"),
    (lambda: unpatchify(torch.zeros(1, 16, 47), 4, 16), ValueError, "do not tile"),
    (lambda: unpatchify(torch.zeros(1, 16, 48), 4, 18), ValueError, "not divisible by the patch size 4"),
])
def test_patch_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------- random masking

@pytest.mark.parametrize("length,ratio", [(64, 0.75), (16, 0.6), (18, 0.15), (10, 0.0), (49, 0.9)])
def test_masking_keeps_the_exact_count_and_restore_inverts_the_shuffle(length, ratio):
    keep, mask, restore = random_masking(32, length, ratio, generator())
    k = round(length * (1 - ratio))
    assert keep.shape == (32, k) and mask.shape == restore.shape == (32, length)
    assert mask.dtype == torch.bool and keep.dtype == restore.dtype == torch.long
    assert (mask.sum(dim=1) == length - k).all()
    assert not mask.gather(1, keep).any()                     # the kept positions are the unmasked ones
    shuffle = restore.argsort(dim=1)
    assert torch.equal(shuffle[:, :k], keep)
    tokens = torch.randn(32, length, 5, generator=generator(1))
    assert torch.equal(take_tokens(take_tokens(tokens, shuffle), restore), tokens)   # restore undoes the shuffle
    assert torch.equal(take_tokens(tokens, keep), take_tokens(take_tokens(tokens, shuffle), keep.new_tensor(
        range(k)).expand(32, -1)))


def test_each_sample_gets_its_own_mask_and_a_seed_gives_the_same_masks():
    _, mask, _ = random_masking(64, 64, 0.75, generator(0))
    assert len({tuple(row.tolist()) for row in mask}) == 64
    assert torch.equal(random_masking(64, 64, 0.75, generator(0))[1], mask)
    assert not torch.equal(random_masking(64, 64, 0.75, generator(1))[1], mask)
    # Every position is masked about equally often: no position is favoured.
    frequency = random_masking(4000, 16, 0.75, generator(2))[1].float().mean(dim=0)
    assert (frequency - 0.75).abs().max() < 0.04


@pytest.mark.parametrize("ratio,message", [(-0.1, "mask_ratio must be a number in \\[0, 1\\), got -0.1"),
                                           (1.0, "in \\[0, 1\\), got 1.0"), (1.5, "got 1.5"), (True, "got True"),
                                           ("0.5", "got '0.5'"), (0.96, "would mask all 10 tokens")])
def test_bad_mask_ratios(ratio, message):
    with pytest.raises(ValueError, match=message):
        random_masking(4, 10, ratio, generator())


def test_masking_validates_sizes_and_generator():
    with pytest.raises(ValueError, match="length must be a positive int"):
        random_masking(4, 0, 0.5, generator())
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        random_masking(0, 4, 0.5, generator())
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        random_masking(4, 4, 0.5, 0)
    with pytest.raises(ValueError, match="index has 3 rows but tokens have 2 samples"):
        take_tokens(torch.zeros(2, 4, 1), torch.zeros(3, 2, dtype=torch.long))
    assert kept_count(64, 0.75) == 16 and kept_count(16, 0.6) == 6


# ---------------------------------------------------------------- the ViT

@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (3, 16), (2, 48)])
def test_vit_maps_images_to_out_dim_features(channels, size):
    net = build_backbone("vit", channels=channels)
    assert "vit" in BACKBONES and net.out_dim == 128 and len(net.blocks) == 4
    assert net(torch.randn(2, channels, size, size)).shape == (2, 128)


def test_vit_errors():
    with pytest.raises(ValueError, match="image_size 30 is not divisible by patch_size 4"):
        ViT(image_size=30)
    with pytest.raises(ValueError, match="width 100 must be divisible by heads 3"):
        ViT(width=100, heads=3)
    net = ViT()
    with pytest.raises(ValueError, match="image size 30x30 is not divisible by the patch size 4"):
        net(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match="this ViT takes 3-channel images, got shape \\(1, 1, 32, 32\\)"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        net(uint8_images(1))
    with pytest.raises(ValueError, match="learned positions were made for 32 px images"):
        ViT(learned_positions=True)(torch.randn(1, 3, 16, 16))


def test_sincos_positions_code_row_and_column_apart():
    pos = sincos_2d(16, 4, 5).view(4, 5, 16)
    assert len({tuple(v.tolist()) for v in pos.flatten(0, 1)}) == 20              # every patch its own code
    assert torch.equal(pos[:, 0, :8], pos[:, 3, :8])                              # first half: the row only
    assert torch.equal(pos[0, :, 8:], pos[2, :, 8:])                              # second half: the column only
    assert pos.abs().max() <= 1
    learned = ViT(learned_positions=True)
    assert learned.pos_embed.requires_grad and learned.positions(32, 32).shape == (1, 64, 128)


def test_vit_backbone_works_with_the_evaluation_code(tmp_path):
    data = load_world(n_train=256, n_test=128, seed=0, root=tmp_path, image_size=16)
    torch.manual_seed(0)
    net = build_backbone("vit")
    scores = evaluate(net, data)
    assert set(scores) == {"knn", "linear_1pct", "linear_10pct", "linear_100pct"}
    assert all(0 <= v <= 1 for v in scores.values())
    features = extract_features(net, data.test_images)
    assert features.shape == (128, 128) and torch.isfinite(features).all()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    accuracy = fine_tune(net, data, fraction=0.5, epochs=1, batch_size=64, progress=False)
    assert 0 <= accuracy <= 1
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------- losses against references

def mae_loss_loop(predictions, patches, mask, norm_pix_loss):
    """The paper's loss, one masked patch at a time: mean_j (y_j - t_j)^2, averaged over masked patches."""
    total, count = 0.0, 0
    for i in range(patches.shape[0]):
        for k in range(patches.shape[1]):
            if not mask[i, k]:
                continue
            target = patches[i, k]
            if norm_pix_loss:
                d = target.numel()
                mean = sum(target) / d
                var = sum((v - mean) ** 2 for v in target) / (d - 1)          # unbiased, as MAE's code
                target = (target - mean) / torch.sqrt(var + 1e-6)
            total = total + sum((predictions[i, k] - target) ** 2) / target.numel()
            count += 1
    return total / count


def simmim_loss_loop(predictions, patches, mask):
    """The mean of |y - x| over every pixel of every masked patch."""
    errors = [abs(predictions[i, k, j] - patches[i, k, j]) for i in range(patches.shape[0])
              for k in range(patches.shape[1]) if mask[i, k] for j in range(patches.shape[2])]
    return sum(errors) / len(errors)


def loss_case(seed=0, n=2, length=9, dim=12):
    g = generator(seed)
    predictions = torch.randn(n, length, dim, generator=g, dtype=torch.float64, requires_grad=True)
    patches = torch.randn(n, length, dim, generator=g, dtype=torch.float64) * 3 + 1
    _, mask, _ = random_masking(n, length, 0.6, g)
    return predictions, patches, mask


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_mae_loss_matches_the_loop_reference_in_value_and_gradient(norm_pix_loss):
    predictions, patches, mask = loss_case()
    loss = mae_loss(predictions, patches, mask, norm_pix_loss)
    (grad,) = torch.autograd.grad(loss, predictions)
    reference = mae_loss_loop(predictions, patches, mask, norm_pix_loss)
    (grad_reference,) = torch.autograd.grad(reference, predictions)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(grad, grad_reference)


def test_simmim_loss_matches_the_loop_reference_in_value_and_gradient():
    predictions, patches, mask = loss_case(1)
    loss = simmim_loss(predictions, patches, mask)
    reference = simmim_loss_loop(predictions, patches, mask)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(torch.autograd.grad(loss, predictions)[0],
                               torch.autograd.grad(reference, predictions)[0])


def test_norm_pix_targets_have_zero_mean_and_unit_variance_per_patch():
    patches = torch.randn(3, 5, 48, dtype=torch.float64, generator=generator()) * 4 + 2
    target = normalise_patches(patches)
    for i in range(3):
        for k in range(5):
            p = patches[i, k]
            expected = (p - p.mean()) / torch.sqrt(((p - p.mean()) ** 2).sum() / 47 + 1e-6)
            torch.testing.assert_close(target[i, k], expected)
    flat = torch.full((1, 1, 48), 0.3, dtype=torch.float64)
    assert torch.equal(normalise_patches(flat), torch.zeros_like(flat))          # eps: no division by zero


@pytest.mark.parametrize("loss_fn", [lambda y, t, m: mae_loss(y, t, m, True), lambda y, t, m: mae_loss(y, t, m, False),
                                     simmim_loss], ids=["mae_norm_pix", "mae_raw", "simmim"])
def test_the_loss_ignores_visible_patches(loss_fn):
    predictions, patches, mask = loss_case(2)
    loss = loss_fn(predictions, patches, mask)
    (grad,) = torch.autograd.grad(loss, predictions)
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()
    changed = predictions.detach().clone()
    changed[~mask] += 100.0                                                      # only visible patches move
    torch.testing.assert_close(loss_fn(changed, patches, mask), loss)
    changed[mask] += 1.0
    assert not torch.isclose(loss_fn(changed, patches, mask), loss)


def test_masked_mean_of_nothing_masked_is_zero_and_shapes_must_match():
    assert masked_mean(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)).item() == 0
    with pytest.raises(ValueError, match="must match"):
        masked_mean(torch.ones(2, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="predictions \\(2, 3, 4\\) and patches \\(2, 3, 5\\) must match"):
        mae_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.bool))


# ---------------------------------------------------------------- MAE and SimMIM mechanics

def perturb_patches(x, mask, patch, amount=1.0):
    """x with the pixels of the patches where mask is True moved by ``amount``."""
    patches = patchify(x, patch).clone()
    patches[mask] += amount
    return unpatchify(patches, patch, x.shape[-2:])


def test_mae_encoder_sees_only_the_visible_patches():
    method = build("mae").eval()
    x = to_float(uint8_images(4))
    keep, mask, restore = random_masking(4, 64, 0.75, generator())
    with torch.no_grad():
        latent = method.encode_visible(x, keep)
        assert latent.shape == (4, 16, 128)
        torch.testing.assert_close(method.encode_visible(perturb_patches(x, mask, 4), keep), latent)
        assert not torch.allclose(method.encode_visible(perturb_patches(x, ~mask, 4), keep), latent)
        assert method.decode(latent, restore).shape == (4, 64, 4 * 4 * 3)


def test_simmim_replaces_masked_patches_by_the_mask_token_inside_the_encoder():
    method = build("simmim").eval()
    x = to_float(uint8_images(4))
    mask = block_masking(4, 8, 2, 0.6, generator())
    with torch.no_grad():
        predictions = method.predict(x, mask)
        assert predictions.shape == (4, 64, 48)
        torch.testing.assert_close(method.predict(perturb_patches(x, mask, 4), mask), predictions)
        assert not torch.allclose(method.predict(perturb_patches(x, ~mask, 4), mask), predictions)
        # The mask token itself does reach the encoder: changing it changes every prediction.
        method.mask_token.add_(1.0)
        assert not torch.allclose(method.predict(x, mask), predictions)


def test_vit_encode_masked_is_the_plain_encoder_where_nothing_is_masked_and_checks_the_mask():
    vit = ViT().eval()
    x, token = to_float(uint8_images(2)), torch.randn(1, 1, 128, generator=generator())
    with torch.no_grad():
        plain = vit.encode(vit.tokens(x) + vit.positions(32, 32))
        torch.testing.assert_close(vit.encode_masked(x, torch.zeros(2, 64, dtype=torch.bool), token), plain,
                                   rtol=0, atol=0)
        assert not torch.allclose(vit.encode_masked(x, torch.ones(2, 64, dtype=torch.bool), token), plain)
    for bad, got in [(torch.zeros(2, 64), "torch.float32 of shape \\(2, 64\\)"),
                     (torch.zeros(2, 16, dtype=torch.bool), "torch.bool of shape \\(2, 16\\)"), ([0] * 64, "list")]:
        with pytest.raises(ValueError, match=f"mask must be a bool tensor of shape \\(2, 64\\) \\(images, patches\\), got {got}"):
            vit.encode_masked(x, bad, token)


def test_mae_with_encoder_mask_tokens_encodes_mask_tokens_and_is_off_by_default():
    """MAE's ablation (Table 1c): the masked patches enter the encoder as its own learned token."""
    x = to_float(uint8_images(4))
    default, ablation = build("mae"), build("mae", encoder_mask_tokens=True)
    assert not hasattr(default, "encoder_mask_token") and default.hparams()["encoder_mask_tokens"] is False
    assert ablation.hparams()["encoder_mask_tokens"] is True
    # Off by default, and the option draws nothing then: the default run is unchanged.
    torch.testing.assert_close(build("mae", encoder_mask_tokens=False).state_dict(), default.state_dict())
    ablation.eval()
    with torch.no_grad():
        predictions, mask = ablation.forward_masked(x, generator(3))
        assert predictions.shape == (4, 64, 48) and mask.sum(dim=1).eq(48).all()
        # The masked pixels never reach the model; the encoder's mask token does, the decoder's is unused.
        torch.testing.assert_close(ablation.forward_masked(perturb_patches(x, mask, 4), generator(3))[0], predictions)
        ablation.mask_token.add_(1.0)
        torch.testing.assert_close(ablation.forward_masked(x, generator(3))[0], predictions)
        ablation.encoder_mask_token.add_(1.0)
        assert not torch.allclose(ablation.forward_masked(x, generator(3))[0], predictions)
    ablation.train()
    ablation.training_step(uint8_images(), generator()).backward()
    assert ablation.encoder_mask_token.grad.abs().sum() > 0


def test_simmim_block_masks_cover_whole_blocks_at_the_exact_ratio():
    mask = block_masking(16, 8, 2, 0.6, generator()).view(16, 8, 8)
    blocks = mask.view(16, 4, 2, 4, 2)
    assert (blocks.all(dim=(2, 4)) | ~blocks.any(dim=(2, 4))).all()              # a block is all in or all out
    assert (blocks[:, :, 0, :, 0].sum(dim=(1, 2)) == 16 - round(16 * 0.4)).all()
    with pytest.raises(ValueError, match="does not split into blocks of 3x3"):
        block_masking(2, 8, 3, 0.6, generator())


def test_mae_and_simmim_steps_have_the_papers_defaults_and_give_finite_gradients():
    mae, simmim = build("mae"), build("simmim")
    assert (mae.mask_ratio, mae.norm_pix_loss, simmim.mask_ratio, simmim.mask_patch_size) == (0.75, True, 0.6, 8)
    assert METHODS["mae"] is MAE and METHODS["simmim"] is SimMIM
    for method in (mae, simmim):
        loss = method.training_step(uint8_images(), generator())
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert method.backbone.patch_embed.weight.grad.abs().sum() > 0
    assert mae.mask_token.grad.abs().sum() > 0 and simmim.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["mae", "simmim"])
def test_same_seed_same_loss_other_seed_other_loss(name):
    x = uint8_images()
    losses = [build(name).training_step(x, generator(seed)).item() for seed in (1, 1, 2)]
    assert losses[0] == losses[1] and losses[0] != losses[2]


@pytest.mark.parametrize("name,hparams", [
    ("mae", {"image_size": 16, "mask_ratio": 0.6, "decoder_width": 32, "decoder_depth": 1, "decoder_heads": 2,
             "norm_pix_loss": False, "encoder_mask_tokens": True}),
    ("simmim", {"image_size": 16, "mask_ratio": 0.5, "mask_patch_size": 4}),
])
def test_hparams_rebuild_the_same_method(name, hparams):
    method = build_method(name, ViT(image_size=16), **hparams)
    assert method.hparams() == hparams
    twin = build_method(name, ViT(image_size=16), **method.hparams())
    twin.load_state_dict(method.state_dict())


@pytest.mark.parametrize("call,message", [
    (lambda: MAE(build_backbone("convnet")), "mae masks patch tokens and needs a ViT backbone \\(--backbone vit\\)"),
    (lambda: SimMIM(build_backbone("resnet18")), "needs a ViT backbone \\(--backbone vit\\), got a ResNet18"),
    (lambda: MAE(ViT(), image_size=30), "image_size 30 is not divisible by the ViT's patch size 4"),
    (lambda: MAE(ViT(), mask_ratio=1.0), "mask_ratio must be a number in \\[0, 1\\)"),
    (lambda: MAE(ViT(), mask_ratio=-0.5), "got -0.5"),
    (lambda: MAE(ViT(), decoder_width=30, decoder_heads=4), "width 30 must be divisible by the number of heads 4"),
    (lambda: SimMIM(ViT(), mask_ratio=0.97), "would mask all 16 tokens"),
    (lambda: SimMIM(ViT(), mask_patch_size=6), "mask_patch_size must be a multiple of the patch size 4"),
    (lambda: SimMIM(ViT(), mask_patch_size=12), "that divides image_size 32, got 12"),
    (lambda: SimMIM(ViT(), mask_patch_size=0), "mask_patch_size must be a positive int"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_simmim_masks_single_patches_where_2x2_blocks_do_not_tile_the_image():
    assert SimMIM(ViT(channels=1, image_size=28), image_size=28).hparams()["mask_patch_size"] == 4
    assert SimMIM(ViT(image_size=16), image_size=16).hparams()["mask_patch_size"] == 8


def test_reconstruct_gives_masked_reconstruction_and_original_pictures():
    method = build("mae")
    images = uint8_images(3)
    masked, pasted, original = method.reconstruct(images, generator(5))
    assert method.training                                                       # mode restored
    _, mask, _ = random_masking(3, 64, 0.75, generator(5))                      # the mask reconstruct drew
    visible = ~mask[..., None]
    torch.testing.assert_close(original, images.float() / 255)
    for picture in (masked, pasted):
        assert picture.shape == (3, 3, 32, 32) and 0 <= picture.min() and picture.max() <= 1
    assert torch.equal(patchify(pasted, 4)[visible.expand(-1, -1, 48)], patchify(original, 4)[visible.expand(-1, -1, 48)])
    assert (patchify(masked, 4)[mask] == 0.5).all()                              # grey where masked
    assert not torch.allclose(patchify(pasted, 4)[mask], patchify(original, 4)[mask])
    with pytest.raises(ValueError, match="built for 32 px images"):
        method.reconstruct(uint8_images(1, size=16), generator())


# ---------------------------------------------------------------- cost: the encoder on 25% of the tokens

def test_mae_encoder_costs_about_a_quarter_on_the_visible_quarter():
    """FLOPs exactly (the patch embedding runs on all patches), time roughly: a check, not a benchmark."""
    method = build("mae").eval()
    x = torch.randn(16, 3, 32, 32, generator=generator())
    keep, _, _ = random_masking(16, 64, 0.75, generator())
    every = torch.arange(64).expand(16, -1)

    def flops(positions):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            method.encode_visible(x, positions)
        return counter.get_total_flops()

    assert 0.22 < flops(keep) / flops(every) < 0.28

    def seconds(positions, repeats=3):
        best = math.inf
        with torch.no_grad():
            for _ in range(repeats):
                tic = time.perf_counter()
                method.encode_visible(x, positions)
                best = min(best, time.perf_counter() - tic)
        return best

    seconds(keep), seconds(every)                                                 # warm up
    assert seconds(keep) < 0.6 * seconds(every)


# ---------------------------------------------------------------- the command line

def test_cli_pretrains_mae_on_a_vit(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "sslcourse", "pretrain", "--method", "mae", "--backbone", "vit", "--epochs", "1",
         "--batch-size", "32", "--n-train", "64", "--n-test", "64", "--device", "cpu", "--out", str(out),
         "--no-progress", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert (results["method"], results["backbone"], results["epochs"]) == ("mae", "vit", 1)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    rebuilt = build_method("mae", ViT(), **checkpoint["hparams"])
    rebuilt.load_state_dict(checkpoint["model"])


def test_cli_says_that_masked_modelling_needs_a_vit(tmp_path, capsys):
    code = main(["pretrain", "--method", "simmim", "--epochs", "1", "--n-train", "64", "--n-test", "32",
                 "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress", "--data-dir", str(tmp_path)])
    assert code == 1
    assert "needs a ViT backbone (--backbone vit), got a ConvNet" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mae_and_simmim_run_on_the_gpu_with_the_cpu_masks():
    for name in ("mae", "simmim"):
        method = build(name).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = method.training_step(uint8_images().cuda(), generator())
        assert loss.device.type == "cuda" and torch.isfinite(loss)
    keep, mask, restore = random_masking(4, 64, 0.75, generator(), device="cuda")
    assert torch.equal(mask.cpu(), random_masking(4, 64, 0.75, generator())[1])


# ---------------------------------------------------------------- learning on the world (slow)
#
# The reconstruction baseline: each masked patch predicted as the mean of its own image's visible
# patches, in the loss's target space (normalised patches for MAE's norm_pix_loss, raw pixels for
# SimMIM), scored on the same masks of the test images with the method's own loss.


def masked_reconstruction(method, images, seed=123):
    """(loss of the method, loss of the visible-mean baseline) on masked patches of un-augmented images."""
    return method.reconstruction_error(images, generator(seed))


def test_the_baseline_predicts_the_mean_of_the_visible_patches():
    targets = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[True, False, True, False]])
    expected = (targets[0, 1] + targets[0, 3]) / 2
    assert torch.equal(visible_mean_prediction(targets, mask), expected.expand(1, 4, 3))


# Batch 32 on 1,000 images of 16 px (16 tokens): short runs gain more from more steps than from
# larger batches (at batch 128 and 10 epochs, SimMIM only reached 0.96 of the baseline).
# Measured: MAE 8 epochs, masked-patch loss 0.74 against the baseline's 0.90 (12 s on a quiet
# 2-core machine); SimMIM 6 epochs, 0.208 against 0.243 (10 s). Within such budgets neither
# beats random init in a linear probe or kNN (MAE: 0.174 -> 0.152 in a linear probe; it takes
# about ten times the steps, see the MAE docstring), so no probe is asserted here. MAE's probe is
# asserted below, after longer training; SimMIM's is not, because at 1,250 steps it still matches
# random init in kNN, linear probe and fine-tuning. One measured reason: mask tokens inside the
# encoder, which cost MAE most of its gain when moved there (the SimMIM docstring,
# benchmarks/masked_probe_ablation.py).


@pytest.mark.slow
@pytest.mark.parametrize("name,epochs", [("mae", 8), ("simmim", 6)])
def test_masked_modelling_reconstructs_masked_patches_better_than_the_visible_mean(name, epochs, tmp_path):
    data = load_world(n_train=1000, n_test=500, seed=0, root=tmp_path, image_size=16)
    method = build(name, size=16)
    before = masked_reconstruction(method, data.test_images)
    history = train(method, data, epochs=epochs, batch_size=32, seed=0, knn_every=0, progress=False)
    after, baseline = masked_reconstruction(method, data.test_images)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert before[0] > baseline                                # at random init the baseline wins
    assert after < 0.9 * baseline, f"{name}: masked-patch loss {after:.3f}, visible-mean baseline {baseline:.3f}"


# The probe needs more steps than the reconstruction: MAE's features first lose what the random
# network's had (250 steps: linear probe 0.174 -> 0.152), then gain. Lecture 08 measured, on the
# same data, 1,250 steps at batch 32: kNN 0.104 -> 0.176 at 55% masked (0.133 at 75%; 0.135 at 55%
# with the mask tokens in the encoder), and 2,500 steps at 75%: kNN 0.165, linear probe 0.201 -> 0.248.
# This test is the 55% run, about a minute.

@pytest.mark.slow
def test_mae_features_beat_random_init_in_knn(tmp_path):
    data = load_world(n_train=2000, n_test=1000, seed=0, root=tmp_path, image_size=16)
    before = probe(initial_backbone(data, 0, "vit"), data)["knn"]
    method, _ = pretrain("mae", data, epochs=20, batch_size=32, seed=0, backbone="vit", mask_ratio=0.55)
    after = probe(method.backbone, data)["knn"]
    assert after > before + 0.03, f"kNN accuracy {before:.3f} at random init, {after:.3f} after MAE"
