"""CMC on Lab: the sRGB <-> Lab conversion, the cross-view loss, the L/ab encoder pair and the method."""
import math

import pytest
import torch

from sslcourse.data.world import load_world
from sslcourse.evaluation import extract_features
from sslcourse.losses import cmc
from sslcourse.methods import METHODS
from sslcourse.methods.cmc import CMC, LabSplitEncoder
from sslcourse.models import ConvNet, ResNet18, build_backbone
from sslcourse.transforms import lab_to_rgb, rgb_to_lab, to_float

# sRGB (D65) -> CIE Lab, as published by Lindbloom's and other CIE calculators (4 decimals).
KNOWN_COLOURS = [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((1.0, 1.0, 0.0), (97.1393, -21.5537, 94.4780)),
    ((0.0, 1.0, 1.0), (91.1132, -48.0875, -14.1312)),
    ((1.0, 0.0, 1.0), (60.3242, 98.2343, -60.8249)),
    ((0.5, 0.5, 0.5), (53.3889, 0.0, 0.0)),
]


def lab_reference(r, g, b):
    """One colour through the CIE formulas in plain Python: sRGB gamma, the sRGB -> XYZ matrix, D65 white."""
    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    def f(t):
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    r, g, b = linear(r), linear(g), linear(b)
    x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b
    fx, fy, fz = f(x / 0.9504700), f(y / 1.0000001), f(z / 1.0888300)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def as_image(colours, dtype=torch.float64):
    """A list of (r, g, b) -> a (1, 3, 1, len) image."""
    return torch.tensor(colours, dtype=dtype).T.reshape(1, 3, 1, len(colours))


def test_lab_of_known_colours():
    lab = rgb_to_lab(as_image([rgb for rgb, _ in KNOWN_COLOURS]))[0, :, 0].T
    for got, (_, expected) in zip(lab, KNOWN_COLOURS):
        assert got.tolist() == pytest.approx(expected, abs=2e-3)


def test_lab_matches_the_formulas_on_random_colours_including_the_dark_linear_segment():
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(200, 3, generator=g, dtype=torch.float64)
    colours[:50] *= 0.05                                     # below the sRGB and Lab knees
    lab = rgb_to_lab(as_image(colours.tolist()))[0, :, 0].T
    for got, rgb in zip(lab, colours.tolist()):
        assert got.tolist() == pytest.approx(lab_reference(*rgb), abs=1e-6)


def test_lab_round_trips_and_keeps_shapes():
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(4, 3, 5, 6, generator=g, dtype=torch.float64)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    torch.testing.assert_close(lab_to_rgb(lab), rgb, atol=1e-10, rtol=0)
    torch.testing.assert_close(rgb_to_lab(lab_to_rgb(lab)), lab, atol=1e-8, rtol=0)
    single = rgb[0].float()                                  # (3, H, W) works as well, in float32
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(single)), single, atol=1e-5, rtol=0)
    # Gray has no colour: a = b = 0 at every lightness.
    gray = torch.linspace(0, 1, 11, dtype=torch.float64).view(1, 1, 1, 11).expand(1, 3, 1, 11)
    assert rgb_to_lab(gray)[:, 1:].abs().max().item() < 1e-10


def test_lab_to_rgb_clamps_colours_outside_the_gamut_unless_told_not_to():
    lab = torch.tensor([50.0, 120.0, -120.0], dtype=torch.float64).view(1, 3, 1, 1)   # no sRGB colour
    raw = lab_to_rgb(lab, clamp=False)
    assert raw.min() < 0 or raw.max() > 1
    clamped = lab_to_rgb(lab)
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_lab_gradients_are_finite_at_black_and_white():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.01, 0.5, 0.99]], dtype=torch.float64)
    rgb = rgb.T.reshape(1, 3, 1, 3).requires_grad_(True)
    (grad,) = torch.autograd.grad(rgb_to_lab(rgb).sum(), rgb)
    assert torch.isfinite(grad).all()
    lab = rgb_to_lab(rgb.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(lab_to_rgb(lab, clamp=False).sum(), lab)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("call,message", [
    (lambda: rgb_to_lab(torch.rand(2, 4, 4, 4)), "3 channels"),
    (lambda: rgb_to_lab(torch.rand(4, 4)), "3 channels"),
    (lambda: rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)), "floating"),
    (lambda: lab_to_rgb(torch.rand(1, 2, 4, 4)), "lab must have 3 channels"),
])
def test_lab_bad_input_says_what_was_expected(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def cmc_reference(z1, z2, tau):
    """Tian et al. 2020: L^{V1,V2} + L^{V2,V1}, each anchor against the other view of every image."""
    def cos(a, b):
        return torch.dot(a, b) / (a.norm() * b.norm())

    def one_way(anchors, candidates):
        total = 0
        for i, anchor in enumerate(anchors):
            scores = [torch.exp(cos(anchor, c) / tau) for c in candidates]
            total = total - torch.log(scores[i] / sum(scores))
        return total / len(anchors)

    return one_way(z1, z2) + one_way(z2, z1)


@pytest.mark.parametrize("n,d,tau", [(2, 3, 0.07), (5, 4, 0.5), (8, 16, 1.0)])
def test_cmc_matches_loop_reference_values_and_gradients(n, d, tau):
    g = torch.Generator().manual_seed(n * d)
    z1 = torch.randn(n, d, generator=g, dtype=torch.double, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, dtype=torch.double, requires_grad=True)
    loss, expected = cmc(z1, z2, tau), cmc_reference(z1, z2, tau)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    for got, want in zip(torch.autograd.grad(loss, [z1, z2]), torch.autograd.grad(expected, [z1, z2])):
        torch.testing.assert_close(got, want)


def test_cmc_is_symmetric_scale_invariant_and_bounded():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert cmc(z1, z2).item() == pytest.approx(cmc(z2, z1).item(), rel=1e-6)
    assert cmc(4 * z1, 0.1 * z2).item() == pytest.approx(cmc(z1, z2).item(), rel=1e-5)
    assert cmc(10 * torch.eye(4), 10 * torch.eye(4), 0.05).item() < 1e-6
    assert cmc(torch.ones(5, 3), torch.ones(5, 3), 1.0).item() == pytest.approx(2 * math.log(5))
    with pytest.raises(ValueError, match="at least 2"):
        cmc(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="temperature"):
        cmc(torch.randn(3, 4), torch.randn(3, 4), temperature=0.0)


@pytest.mark.parametrize("name,cls,dim", [("convnet", ConvNet, 128), ("resnet18", ResNet18, 512)])
def test_build_backbone_takes_the_two_ab_channels(name, cls, dim):
    net = build_backbone(name, channels=2)
    assert isinstance(net, cls) and net(torch.randn(2, 2, 32, 32)).shape == (2, dim)
    with pytest.raises(ValueError, match="channels must be 1, 2 or 3"):
        build_backbone(name, channels=4)


def test_lab_split_encoder_reads_normalised_rgb(small_world):
    torch.manual_seed(0)
    encoder = LabSplitEncoder(build_backbone("convnet", 1), build_backbone("convnet", 2))
    images = small_world.test_images[:4]
    light, ab = encoder.split(to_float(images))
    lab = rgb_to_lab(images.double() / 255)
    torch.testing.assert_close(light.double(), lab[:, :1] / 50 - 1, atol=1e-3, rtol=0)
    torch.testing.assert_close(ab.double(), lab[:, 1:] / 110, atol=1e-3, rtol=0)
    assert light.min() >= -1 and light.max() <= 1 and ab.abs().max() <= 1
    features = extract_features(encoder, images)
    assert features.shape == (4, 256) and encoder.out_dim == 256
    # A gray image has no colour: its ab view is zero.
    gray = images.float().mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).round().to(torch.uint8)
    torch.testing.assert_close(encoder.split(to_float(gray))[1], torch.zeros_like(ab), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"RGB batches \(N, 3, H, W\)"):
        encoder(torch.randn(2, 1, 32, 32))


def test_cmc_replaces_the_backbone_by_an_encoder_pair_of_the_same_type(small_world):
    assert METHODS["cmc"] is CMC
    torch.manual_seed(0)
    method = CMC.for_data(build_backbone("convnet"), small_world)
    assert isinstance(method.backbone, LabSplitEncoder)
    assert isinstance(method.backbone.l_encoder, ConvNet) and isinstance(method.backbone.ab_encoder, ConvNet)
    loss = method.training_step(small_world.train_images[:8], torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in method.parameters())
    assert CMC(build_backbone("convnet"), **method.hparams()).hparams() == method.hparams()
    assert isinstance(CMC(build_backbone("resnet18")).backbone.ab_encoder, ResNet18)
    with pytest.raises(ValueError, match="must have 3"):
        CMC(build_backbone("convnet", channels=1))
    with pytest.raises(ValueError, match="one of convnet, resnet18"):
        CMC(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


@pytest.mark.slow
def test_cmc_beats_random_init_on_the_world(tmp_path, knn_before_after):
    data = load_world(n_train=1000, n_test=500, seed=0, root=tmp_path)
    torch.manual_seed(0)
    _, before, after = knn_before_after(CMC.for_data(build_backbone("convnet"), data), data, epochs=8)
    assert after > before + 0.06, f"kNN accuracy {before:.3f} at random init, {after:.3f} after CMC"
