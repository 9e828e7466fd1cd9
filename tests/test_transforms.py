"""Batched augmentations: determinism, identities, agreement with torchvision, probabilities."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms.v2.functional as TF  # noqa: E402

from sslcourse import transforms as T  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=16, c=3, size=32, seed=0):
    """Random uint8 images: colourful noise, so every op visibly changes them."""
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=gen(seed))


def floats(n=16, c=3, size=32, seed=0):
    return images(n, c, size, seed).float() / 255


def changed(out, x):
    """(N,) bool: which images an op altered."""
    return (out - x).abs().amax(dim=(1, 2, 3)) > 1e-6


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("name,size", [("simclr", 32), ("byol", 64), ("moco_v1", 32)])
def test_same_seed_same_views_different_seed_different(name, size):
    x = images(8, size=size)
    for view in T.recipe(name, size):
        a, b, c = view(x, gen(1)), view(x, gen(1)), view(x, gen(2))
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_each_image_gets_its_own_parameters():
    x = images(1).expand(8, -1, -1, -1)  # one image, eight times
    t, _ = T.recipe("simclr", 32)
    out = t(x, gen()).flatten(1)
    assert torch.cdist(out, out)[~torch.eye(8, dtype=torch.bool)].min() > 1e-3


def test_global_rng_untouched_and_input_unchanged():
    x = images(8)
    before, copy = torch.get_rng_state(), x.clone()
    for view in T.recipe("byol", 64, blur=True):
        view(x, gen())
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(x, copy)


# ---------------------------------------------------------------- geometry

def test_full_crop_without_flip_is_identity():
    x = floats()
    out = T.random_resized_crop(x, gen(), 32, scale=(1, 1), ratio=(1, 1), flip_p=0.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_flip_mirrors_and_twice_is_identity():
    x = floats()
    once = T.random_resized_crop(x, gen(), 32, scale=(1, 1), ratio=(1, 1), flip_p=1.0)
    torch.testing.assert_close(once, x.flip(-1), atol=1e-5, rtol=0)
    twice = T.random_resized_crop(once, gen(), 32, scale=(1, 1), ratio=(1, 1), flip_p=1.0)
    torch.testing.assert_close(twice, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(T.random_hflip(T.random_hflip(x, gen(), 1.0), gen(), 1.0), x)


def test_crop_box_has_the_sampled_area():
    # A horizontal ramp: a box of width w resized to `size` steps by w / size pixels a column.
    ramp = torch.arange(32.0).div(31).expand(4, 3, 32, 32).contiguous()
    out = T.random_resized_crop(ramp, gen(), 32, scale=(0.25, 0.25), ratio=(1, 1), flip_p=0.0)
    step = out.diff(dim=-1)[..., 1:-1] * 31  # in input pixels, away from the clamped borders
    torch.testing.assert_close(step, torch.full_like(step, 0.5), atol=1e-4, rtol=0)
    flipped = T.random_resized_crop(ramp, gen(), 32, scale=(0.25, 0.25), ratio=(1, 1), flip_p=1.0)
    assert (flipped.diff(dim=-1) < 0).all()


def test_crop_resizes_to_size():
    out = T.random_resized_crop(floats(4, size=40), gen(), 24)
    assert out.shape == (4, 3, 24, 24)


# ---------------------------------------------------------------- colour

@pytest.mark.parametrize("factor", [0.0, 0.4, 1.0, 1.8])
@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation"])
def test_colour_adjustments_match_torchvision(op, factor):
    x = floats()
    ours = getattr(T, f"adjust_{op}")(x, factor)
    torch.testing.assert_close(ours, getattr(TF, f"adjust_{op}")(x, factor), atol=1e-5, rtol=0)
    if factor == 1.0:
        torch.testing.assert_close(ours, x, atol=0, rtol=0)


@pytest.mark.parametrize("shift", [-0.5, -0.2, 0.0, 0.1, 0.45])
def test_hue_matches_torchvision(shift):
    x = floats()
    x[0] = 0.5  # gray pixels have no hue and must survive unchanged
    torch.testing.assert_close(T.adjust_hue(x, shift), TF.adjust_hue(x, shift), atol=1e-5, rtol=0)
    if shift == 0.0:
        torch.testing.assert_close(T.adjust_hue(x, 0.0), x, atol=1e-5, rtol=0)


def test_zero_strength_jitter_is_identity():
    x = floats()
    torch.testing.assert_close(T.color_jitter(x, gen(), 0, 0, 0, 0, p=1.0), x, atol=0, rtol=0)


def test_jitter_factors_stay_in_range():
    x = torch.full((200, 3, 4, 4), 0.5)
    out = T.color_jitter(x, gen(), brightness=0.4, p=1.0)
    factor = out[:, 0, 0, 0] / 0.5  # brightness only: each image is 0.5 * its factor
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6
    assert factor.std() > 0.15  # spread over U(0.6, 1.4), std 0.23


def test_one_channel_jitter_uses_brightness_and_contrast_only():
    x = floats(c=1)
    full = T.color_jitter(x, gen(), 0.4, 0.4, 0.4, 0.1, p=1.0)
    light = T.color_jitter(x, gen(), 0.4, 0.4, 0.0, 0.0, p=1.0)
    torch.testing.assert_close(full, light)
    assert changed(full, x).all()
    torch.testing.assert_close(T.random_grayscale(x, gen(), 1.0), x)


def test_grayscale_has_equal_channels_and_matches_torchvision():
    x = floats()
    out = T.random_grayscale(x, gen(), 1.0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    torch.testing.assert_close(out, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6, rtol=0)


def test_solarize_inverts_at_and_above_threshold():
    x = torch.tensor([0.2, 0.39, 0.4, 0.9]).view(1, 1, 1, 4)
    out = T.solarize(x, gen(), 1.0, threshold=0.4)
    torch.testing.assert_close(out, torch.tensor([0.2, 0.39, 0.6, 0.1]).view(1, 1, 1, 4))
    y = floats()
    torch.testing.assert_close(T.solarize(y, gen(), 1.0), TF.solarize(y, 0.5))


def test_blur_keeps_constants_and_the_mean_and_matches_torchvision():
    const = torch.full((4, 3, 32, 32), 0.3)
    torch.testing.assert_close(T.gaussian_blur(const, gen(), 1.0), const)
    x = floats()
    out = T.gaussian_blur(x, gen(), 1.0, sigma=(1.5, 1.5), kernel_size=5)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=5e-3, rtol=0)
    torch.testing.assert_close(out, TF.gaussian_blur(x, [5, 5], [1.5, 1.5]), atol=1e-5, rtol=0)
    assert out.std() < x.std() * 0.6  # noise is smoothed


# ---------------------------------------------------------------- probabilities

OPS = {
    "flip": lambda x, g, p: T.random_hflip(x, g, p),
    "crop_flip": lambda x, g, p: T.random_resized_crop(x, g, 8, (1, 1), (1, 1), flip_p=p),
    "jitter": lambda x, g, p: T.color_jitter(x, g, 0.4, 0.4, 0.4, 0.1, p=p),
    "grayscale": lambda x, g, p: T.random_grayscale(x, g, p),
    "blur": lambda x, g, p: T.gaussian_blur(x, g, p, sigma=(0.5, 2.0), kernel_size=3),
    "solarize": lambda x, g, p: T.solarize(x, g, p),
}


@pytest.mark.parametrize("op", OPS)
def test_probability_of_applying(op):
    x = floats(n=1000, size=8)
    assert not changed(OPS[op](x, gen(), 0.0), x).any()
    assert changed(OPS[op](x, gen(), 1.0), x).all()
    assert abs(changed(OPS[op](x, gen(), 0.5), x).float().mean() - 0.5) < 0.06


# ---------------------------------------------------------------- pipeline, dtype, device

def test_augment_output_and_uint8_float_agree():
    t, _ = T.recipe("simclr", 24)
    x = images(8)
    out = t(x, gen())
    assert out.dtype == torch.float32 and out.device == x.device and out.shape == (8, 3, 24, 24)
    torch.testing.assert_close(t(x.float() / 255, gen()), out)


def test_eval_recipe_is_to_float():
    x = images(8)
    (t,) = T.recipe("eval", 32, mean=(0.4, 0.5, 0.6), std=0.25)
    torch.testing.assert_close(t(x, gen()), T.to_float(x, (0.4, 0.5, 0.6), 0.25))
    torch.testing.assert_close(T.to_float(x), x.float() / 127.5 - 1, atol=1e-6, rtol=0)


def test_from_float_undoes_to_float_and_clamps_what_leaves_the_image_range():
    x = images(8)
    for mean, std in ((0.5, 0.5), ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))):
        torch.testing.assert_close(T.from_float(T.to_float(x, mean, std), mean, std), x.float() / 255,
                                   atol=1e-6, rtol=0)
    beyond = torch.tensor([-3.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5)     # normalised: -1 is black, 1 white
    assert T.from_float(beyond).flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(TypeError, match="normalised float"):
        T.from_float(x)
    with pytest.raises(ValueError, match="one per channel"):
        T.from_float(T.to_float(x), mean=(0.5, 0.5))


def test_recipes_shapes_and_views():
    x, gray = images(4, size=64), images(4, c=1, size=64)
    for name in T.RECIPES:
        views = T.recipe(name, 32)
        assert isinstance(views, tuple) and len(views) == (1 if name in ("mae", "eval") else 2)
        for view in views:
            assert view(x, gen()).shape == (4, 3, 32, 32)
            assert view(gray, gen()).shape == (4, 1, 32, 32)
    small, big = T.recipe("byol", 32), T.recipe("byol", 96)
    assert small[0].blur_p == 0 and (big[0].blur_p, big[1].blur_p) == (1.0, 0.1)
    assert (big[0].solarize_p, big[1].solarize_p) == (0.0, 0.2)
    assert T.recipe("simclr", 32, blur=True)[0].blur_p == 0.5
    assert T.recipe("simclr", 224)[0].blur_kernel == 23  # SimCLR: 10% of 224, odd


def test_repr_is_readable():
    text = repr(T.recipe("simclr", 32)[0])
    for part in ("size=32", "scale=(0.08, 1)", "flip_p=0.5", "brightness=0.8", "hue=0.2",
                 "p=0.8", "grayscale(p=0.2)", "normalize(mean=0.5, std=0.5)"):
        assert part in text
    assert "blur" not in text


def test_show_views_draws_rows_of_views():
    fig = T.show_views(images(3), T.recipe("byol", 32), gen(), n_views=3)
    assert sum(ax.has_data() for ax in fig.axes) == 3 * 4
    plt.close(fig)


@CUDA
def test_same_seed_same_views_on_cpu_and_gpu():
    x = images(16, size=64)
    for view in T.recipe("byol", 64):
        cpu, gpu = view(x, gen(3)), view(x.cuda(), gen(3))
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call,error,message", [
    (lambda: T.to_float(torch.zeros(3, 32, 32, dtype=torch.uint8)), ValueError, "4 dimensions"),
    (lambda: T.to_float(torch.zeros(2, 2, 8, 8)), ValueError, "1 or 3 channels"),
    (lambda: T.to_float(torch.zeros(2, 3, 8, 8, dtype=torch.int64)), TypeError, "uint8"),
    (lambda: T.solarize(torch.zeros(2, 3, 8, 8), gen(), 1.5), ValueError, "probability in [0, 1], got 1.5"),
    (lambda: T.random_resized_crop(torch.zeros(2, 3, 8, 8), gen(), 8, scale=(0.5, 0.1)), ValueError,
     "min <= max"),
    (lambda: T.Augment(32, scale=(0.5, 0.1)), ValueError, "scale"),
    (lambda: T.Augment(32, gray_p=-0.1), ValueError, "gray_p"),
    (lambda: T.Augment(0), ValueError, "size must be a positive int"),
    (lambda: T.color_jitter(torch.zeros(2, 3, 8, 8), gen(), hue=0.7), ValueError, "hue"),
    (lambda: T.gaussian_blur(torch.zeros(2, 3, 8, 8), gen(), 1.0, kernel_size=4), ValueError, "odd"),
    (lambda: T.recipe("simclr", 32)[0](images(2), None), TypeError, "torch.Generator"),
    (lambda: T.recipe("simclr", 32, mean=(0.5, 0.5, 0.5))[0](images(2, c=1), gen()), ValueError,
     "1 channel"),
    (lambda: T.recipe("swav", 32), ValueError, "simclr, moco_v1, moco_v2, byol, mae, eval"),
])
def test_bad_input_raises_clearly(call, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        call()


def test_recipe_overrides_change_every_view_and_keep_symmetric_views_one_object():
    recipe = T.recipe
    plain = recipe("simclr", 32)
    first, second = recipe("simclr", 32, gray_p=0.5, scale=(0.2, 1.0))
    assert first is second and first.gray_p == 0.5 and first.scale == (0.2, 1.0)
    assert plain[0].gray_p == 0.2 and plain[0].jitter == first.jitter   # the rest is the paper's
    byol = recipe("byol", 32, gray_p=0.0)
    assert byol[0] is not byol[1] and byol[0].gray_p == byol[1].gray_p == 0.0
    assert (byol[0].solarize_p, byol[1].solarize_p) == (0.0, 0.2)
    with pytest.raises(ValueError, match=r"unknown augmentation settings \['grey_p'\]"):
        recipe("simclr", 32, grey_p=0.5)
