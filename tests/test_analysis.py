"""The geometry measures against loops over the papers' definitions, plus invariances,
known spectra, bad input and the figures."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sslcourse.analysis import (alignment, collapse_report, effective_rank, intra_inter_distances,  # noqa: E402
                                max_min_distance_ratio, nearest_neighbours, normalized_std, singular_values,
                                uniformity)
from sslcourse.plots import (pairwise_cosine_distances, plot_distance_distributions, plot_max_min_ratio,  # noqa: E402
                             plot_retrieval, plot_spectrum)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def unit(row):
    """A row of a tensor as a list of floats with unit Euclidean norm."""
    values = [float(v) for v in row]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def distance(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def random_rotation(d, seed=0):
    q, _ = torch.linalg.qr(randn(d, d, seed=seed, dtype=torch.float64))
    return q


# --- alignment and uniformity ---------------------------------------------------------

def alignment_reference(z1, z2, alpha):
    """Wang and Isola eq. (2): mean over positive pairs of |f(x) - f(y)|^alpha."""
    return sum(distance(unit(a), unit(b)) ** alpha for a, b in zip(z1, z2)) / len(z1)


def uniformity_reference(z, t):
    """Wang and Isola eq. (3): log of the mean over distinct pairs of exp(-t |f(x) - f(y)|^2)."""
    f = [unit(row) for row in z]
    terms = [math.exp(-t * distance(f[i], f[j]) ** 2) for i in range(len(f)) for j in range(i + 1, len(f))]
    return math.log(sum(terms) / len(terms))


@pytest.mark.parametrize("n,d,alpha", [(1, 3, 2), (5, 4, 1), (9, 16, 2), (6, 8, 3.5)])
def test_alignment_matches_loop_reference(n, d, alpha):
    z1, z2 = randn(n, d, seed=n), randn(n, d, seed=n + 100)
    assert alignment(z1, z2, alpha).item() == pytest.approx(alignment_reference(z1, z2, alpha), rel=1e-5)


@pytest.mark.parametrize("n,d,t", [(2, 3, 2), (7, 5, 1), (20, 16, 2), (12, 64, 5)])
def test_uniformity_matches_loop_reference(n, d, t):
    z = randn(n, d, seed=d)
    assert uniformity(z, t).item() == pytest.approx(uniformity_reference(z, t), rel=1e-5, abs=1e-6)


def test_alignment_and_uniformity_extremes():
    z = randn(10, 6)
    assert alignment(z, 3 * z).item() == pytest.approx(0, abs=1e-6)       # same direction: aligned
    assert alignment(z, -z, alpha=2).item() == pytest.approx(4, rel=1e-6)  # antipodal: |u - v| = 2
    assert uniformity(z[:1].repeat(8, 1)).item() == pytest.approx(0, abs=1e-6)  # one point: no spread
    n, t = 300, 2
    spread = uniformity(randn(n, 256, seed=1), t).item()
    assert -2 * t * n / (n - 1) - 1e-6 <= spread < -3.5   # Jensen's bound, and near -2t for a wide cloud
    clustered = uniformity(randn(n, 256, seed=1) * 0.05 + 1, t).item()
    assert clustered > spread + 3


def test_uniformity_and_alignment_are_rotation_and_scale_invariant():
    z1, z2 = randn(30, 12, seed=2, dtype=torch.float64), randn(30, 12, seed=3, dtype=torch.float64)
    q = random_rotation(12, seed=4)
    scale = randn(30, 1, seed=5, dtype=torch.float64).abs() + 0.1    # l2 normalisation removes row norms
    assert uniformity(z1 @ q * scale).item() == pytest.approx(uniformity(z1).item(), rel=1e-10)
    assert alignment(z1 @ q, z2 @ q * scale).item() == pytest.approx(alignment(z1, z2).item(), rel=1e-10)


def test_alignment_and_uniformity_gradients_are_finite_and_correct():
    z1 = randn(4, 3, seed=6, dtype=torch.float64).requires_grad_()
    z2 = randn(4, 3, seed=7, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: alignment(a, b, 2), (z1, z2))
    assert torch.autograd.gradcheck(lambda a: uniformity(a, 2), (z1,))
    # Identical views or points: distances of 0 must not give NaN gradients.
    same = z1.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(alignment(same, same.detach()) + uniformity(torch.cat([same, same])), same)
    assert torch.isfinite(grad).all()


# --- intra- and inter-class distances -------------------------------------------------

def test_intra_inter_split_matches_loop_and_counts():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 2, 3])       # class sizes 3, 2, 4, 1
    features = randn(len(labels), 7, seed=8)
    intra, inter = intra_inter_distances(features, labels)
    n_same = sum(c * (c - 1) // 2 for c in (3, 2, 4, 1))
    assert len(intra) == n_same == 10
    assert len(inter) == 45 - n_same
    f = [unit(row) for row in features]
    expected_intra, expected_inter = [], []
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            d = 1 - sum(a * b for a, b in zip(f[i], f[j]))
            (expected_intra if labels[i] == labels[j] else expected_inter).append(d)
    assert sorted(intra.tolist()) == pytest.approx(sorted(expected_intra), abs=1e-6)
    assert sorted(inter.tolist()) == pytest.approx(sorted(expected_inter), abs=1e-6)


def test_intra_inter_subsamples_above_max_points():
    labels = torch.arange(50) % 5
    intra, inter = intra_inter_distances(randn(50, 4), labels, max_points=20, seed=1)
    assert len(intra) + len(inter) == 20 * 19 // 2
    again = intra_inter_distances(randn(50, 4), labels, max_points=20, seed=1)
    assert torch.equal(intra, again[0]) and torch.equal(inter, again[1])  # the seed fixes the subset


def test_plots_pairwise_cosine_distances_keeps_its_behaviour():
    """The old public helper now delegates; its numpy output equals the former code's."""
    features, labels = randn(40, 5, seed=9), torch.arange(40) % 3
    intra, inter = pairwise_cosine_distances(features.numpy(), labels.numpy(), max_points=30, seed=2)
    keep = torch.randperm(40, generator=torch.Generator().manual_seed(2))[:30]   # the former implementation
    f = torch.nn.functional.normalize(features[keep], dim=1)
    d = 1 - f @ f.T
    upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)
    same = labels[keep][:, None] == labels[keep][None, :]
    assert isinstance(intra, np.ndarray) and isinstance(inter, np.ndarray)
    np.testing.assert_allclose(intra, d[upper & same].numpy(), atol=1e-6)
    np.testing.assert_allclose(inter, d[upper & ~same].numpy(), atol=1e-6)


# --- max-min distance ratio -----------------------------------------------------------

def test_max_min_ratio_matches_loop_reference():
    x = randn(12, 5, seed=10, dtype=torch.float64)
    rows = [[float(v) for v in row] for row in x]
    per_query = []
    for i, q in enumerate(rows):
        ds = [distance(q, p) for j, p in enumerate(rows) if j != i]
        per_query.append((max(ds) - min(ds)) / min(ds))
    pairs = [distance(rows[i], rows[j]) for i in range(12) for j in range(i + 1, 12)]
    assert max_min_distance_ratio(x) == pytest.approx(sum(per_query) / 12, rel=1e-9)
    assert max_min_distance_ratio(x, per_query=False) == pytest.approx((max(pairs) - min(pairs)) / min(pairs),
                                                                       rel=1e-9)


def test_max_min_ratio_falls_with_dimension():
    """Beyer et al. 1999: for i.i.d. coordinates, nearest and farthest points become equidistant."""
    dims = [2, 8, 32, 128, 512]
    for per_query in (True, False):
        ratios = [max_min_distance_ratio(randn(100, d, seed=d), per_query=per_query) for d in dims]
        assert all(a > b for a, b in zip(ratios, ratios[1:])), ratios
    assert max_min_distance_ratio(randn(100, 512, seed=11)) < 0.5 < 2 < max_min_distance_ratio(randn(100, 2))


def test_max_min_ratio_is_invariant_to_rotation_and_scale_and_infinite_on_duplicates():
    x = randn(20, 6, seed=12, dtype=torch.float64)
    rotated = 3 * x @ random_rotation(6, seed=13) + 1
    assert max_min_distance_ratio(rotated) == pytest.approx(max_min_distance_ratio(x), rel=1e-9)
    assert max_min_distance_ratio(torch.cat([x, x[:1]]), per_query=False) == math.inf


# --- spectrum, effective rank and normalised std --------------------------------------

def mirrored(scales):
    """Rows +-a_k e_k: zero mean and covariance diag(a^2) / D, a known spectrum."""
    z = torch.diag(torch.as_tensor(scales, dtype=torch.float64))
    return torch.cat([z, -z])


def test_singular_values_match_numpy_covariance_eigenvalues_and_ignore_rotation():
    z = randn(50, 8, seed=14, dtype=torch.float64) * torch.linspace(0.1, 3, 8, dtype=torch.float64)
    expected = np.sort(np.linalg.eigvalsh(np.cov(z.numpy(), rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(singular_values(z).numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(singular_values(z @ random_rotation(8, seed=15) + 5).numpy(), expected,
                               rtol=1e-9, atol=1e-12)
    assert singular_values(mirrored([1.0, 2.0, 0.0])).tolist() == pytest.approx([4 / 3, 1 / 3, 0], abs=1e-12)


@pytest.mark.parametrize("scales", [[1, 1, 1, 1], [3, 1, 0.5, 0.1, 0, 0], [2, 1]])
def test_effective_rank_matches_roy_vetterli_on_known_spectra(scales):
    spectrum = [a * a for a in scales if a > 0]
    p = [s / sum(spectrum) for s in spectrum]
    assert effective_rank(mirrored(scales)) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)), rel=1e-9)


def test_effective_rank_of_isotropic_line_and_point_clouds():
    d = 16
    assert effective_rank(mirrored([1.0] * d)) == pytest.approx(d, rel=1e-9)           # identity covariance
    assert effective_rank(mirrored([1.0] * d).float() @ random_rotation(d).float()) == pytest.approx(d, rel=1e-4)
    line = randn(100, 1, seed=16) * randn(1, d, seed=17)                               # rank 1
    assert effective_rank(line) == pytest.approx(1, abs=1e-4)
    assert effective_rank(torch.full((64, d), 0.1)) == 0.0     # identical points: no variance, not rounding noise
    assert 0.9 * d < effective_rank(randn(5000, d, seed=18)) <= d


def test_normalized_std_matches_loop_and_simsiam_reference_values():
    z = randn(9, 4, seed=19)
    f = [unit(row) for row in z]
    stds = []
    for k in range(4):
        column = [row[k] for row in f]
        mean = sum(column) / len(column)
        stds.append(math.sqrt(sum((v - mean) ** 2 for v in column) / (len(column) - 1)))
    assert normalized_std(z) == pytest.approx(sum(stds) / 4, rel=1e-6)
    d = 64
    assert normalized_std(randn(4000, d, seed=20)) == pytest.approx(1 / math.sqrt(d), rel=0.03)
    assert normalized_std(torch.full((32, d), 0.7)) == pytest.approx(0, abs=1e-7)


def test_collapse_report_flags_complete_and_one_dimensional_collapse_only():
    d = 32
    healthy = collapse_report(randn(500, d, seed=21))
    assert set(healthy) == {"std", "std_isotropic", "std_ratio", "effective_rank", "dim", "uniformity", "collapsed"}
    assert healthy["dim"] == d and healthy["std_isotropic"] == pytest.approx(1 / math.sqrt(d))
    assert healthy["std_ratio"] == pytest.approx(1, abs=0.05) and not healthy["collapsed"]
    assert healthy["uniformity"] == pytest.approx(uniformity(randn(500, d, seed=21)).item(), rel=1e-5)

    constant = collapse_report(torch.ones(100, d) + 1e-5 * randn(100, d, seed=22))
    assert constant["collapsed"] and constant["std"] < 1e-4 and constant["uniformity"] > -1e-6
    assert collapse_report(torch.ones(100, d))["collapsed"]
    # Rank 1 with random signs: two antipodal points, a large std, caught by the effective rank.
    line = randn(100, 1, seed=23) * randn(1, d, seed=24)
    report = collapse_report(line)
    assert report["std_ratio"] > 0.5 and report["effective_rank"] < 1.01 and report["collapsed"]
    # Dimensional collapse to 4 of 32 dimensions is reported by the rank, not as complete collapse.
    low_rank = collapse_report(randn(500, 4, seed=25) @ randn(4, d, seed=26))
    assert not low_rank["collapsed"] and low_rank["effective_rank"] < 4


# --- nearest neighbours ---------------------------------------------------------------

def test_nearest_neighbours_match_brute_force_sort():
    queries, gallery = randn(7, 5, seed=27), randn(40, 5, seed=28)
    result = nearest_neighbours(queries, gallery, k=4, chunk=3)    # several chunks
    for i, q in enumerate(queries):
        cos = [sum(a * b for a, b in zip(unit(q), unit(g))) for g in gallery]
        order = sorted(range(len(gallery)), key=lambda j: -cos[j])[:4]
        assert result.indices[i].tolist() == order
        assert result.values[i].tolist() == pytest.approx([cos[j] for j in order], abs=1e-6)


def test_nearest_neighbours_can_exclude_each_query_itself():
    z = randn(25, 6, seed=29)
    assert nearest_neighbours(z, z, k=1).indices.squeeze(1).tolist() == list(range(25))
    index = nearest_neighbours(z, z, k=3, exclude_self=True, chunk=10).indices
    assert not (index == torch.arange(25)[:, None]).any()
    assert nearest_neighbours(z, z, k=24, exclude_self=True).indices.shape == (25, 24)


# --- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("call,error,match", [
    (lambda: alignment(randn(4, 3), randn(5, 3)), ValueError, "same shape"),
    (lambda: alignment(randn(4, 3), randn(4, 3), alpha=0), ValueError, "alpha must be"),
    (lambda: uniformity(randn(1, 3)), ValueError, "at least 2"),
    (lambda: uniformity(randn(4, 3, 2)), ValueError, "2 dimensions"),
    (lambda: uniformity(randn(4, 3), t=-1), ValueError, "t must be"),
    (lambda: uniformity(torch.ones(4, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: uniformity(np.ones((4, 3))), TypeError, "torch.Tensor"),
    (lambda: intra_inter_distances(randn(5, 3), torch.zeros(4)), ValueError, "5 embeddings but 4 labels"),
    (lambda: intra_inter_distances(randn(5, 3), torch.zeros(5, 1)), ValueError, "labels must have 1"),
    (lambda: intra_inter_distances(randn(1, 3), torch.zeros(1)), ValueError, "at least 2"),
    (lambda: max_min_distance_ratio(randn(2, 3)), ValueError, "at least 3"),
    (lambda: max_min_distance_ratio(randn(6)), ValueError, "2 dimensions"),
    (lambda: singular_values(randn(1, 4)), ValueError, "at least 2"),
    (lambda: effective_rank(randn(3, 0)), ValueError, "at least one feature"),
    (lambda: normalized_std(randn(8)), ValueError, "2 dimensions"),
    (lambda: collapse_report(randn(1, 8)), ValueError, "at least 2"),
    (lambda: nearest_neighbours(randn(3, 4), randn(5, 3), 2), ValueError, "share the feature dimension"),
    (lambda: nearest_neighbours(randn(3, 4), randn(5, 4), 6), ValueError, "between 1 and 5"),
    (lambda: nearest_neighbours(randn(3, 4), randn(5, 4), 0), ValueError, "between 1 and 5"),
    (lambda: nearest_neighbours(randn(5, 4), randn(5, 4), 5, exclude_self=True), ValueError, "between 1 and 4"),
    (lambda: nearest_neighbours(randn(3, 4), randn(5, 4), 2, exclude_self=True), ValueError, "queries to be"),
])
def test_bad_input_gives_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- figures --------------------------------------------------------------------------

def test_plot_retrieval_draws_one_row_per_query_with_coloured_frames():
    gallery_images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    gallery_labels = torch.arange(12) % 3
    index = torch.tensor([[0, 3, 1], [5, 8, 4]])
    query_labels = torch.tensor([0, 1])
    figure = plot_retrieval(gallery_images[:2], gallery_images, index, query_labels, gallery_labels)
    axes = figure.axes
    assert len(axes) == 2 * 4
    green, red = matplotlib.colors.to_rgba("tab:green"), matplotlib.colors.to_rgba("tab:red")
    frames = [ax.spines["top"].get_edgecolor() for ax in axes]
    assert frames[1:4] == [green, green, red] and frames[5:8] == [red, red, green]
    assert axes[0].get_ylabel() == "2/3 same class"
    plt.close(figure)
    figure = plot_retrieval(torch.rand(1, 1, 8, 8), torch.rand(5, 1, 8, 8), [[4, 2]])   # grey, no labels
    assert len(figure.axes) == 3
    plt.close(figure)
    with pytest.raises(ValueError, match="gallery's rows"):
        plot_retrieval(gallery_images[:1], gallery_images, [[12]])
    with pytest.raises(ValueError, match=r"\(M, k\) with M=2"):
        plot_retrieval(gallery_images[:2], gallery_images, [[1, 2]])


def test_spectrum_ratio_and_distance_figures():
    spectra = {"isotropic": singular_values(randn(200, 16)), "low rank": singular_values(mirrored([1, 1, 0, 0]))}
    figure = plot_spectrum(spectra)
    assert len(figure.axes) == 1 and len(figure.axes[0].lines) == 2
    plt.close(figure)
    figure = plot_max_min_ratio([2, 16, 128], {"gaussian": [5.0, 1.0, 0.3], "sphere": [4.0, 0.8, 0.2]})
    assert len(figure.axes) == 1 and len(figure.axes[0].lines) == 2
    plt.close(figure)
    with pytest.raises(ValueError, match="3 dimensions"):
        plot_max_min_ratio([2, 16, 128], {"short": [1.0, 2.0]})
    labels = torch.arange(60) % 4
    figure = plot_distance_distributions({"a": randn(60, 8), "b": randn(60, 8, seed=1)}, labels)
    assert len(figure.axes) == 2
    plt.close(figure)
