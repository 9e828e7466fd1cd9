"""k-means in torch, on the features' device, and the statistics that judge a clustering.

Lloyd's algorithm (Lloyd 1982) alternates two steps on points x_1..x_N and centroids c_1..c_k:

    a_i = argmin_j |x_i - c_j|^2                 assign each point to its nearest centroid
    c_j = mean of the x_i with a_i = j            move each centroid to the mean of its points
    inertia = sum_i |x_i - c_{a_i}|^2             decreases at every step (or stays)

Initialisation is k-means++ (Arthur and Vassilvitskii 2007: each new centroid is a point
drawn with probability proportional to its squared distance to the nearest centroid so
far) or k random points, the default of the faiss library DeepCluster used.

Empty clusters. A centroid that wins no point would keep its place (or become 0/0) and
its cluster stay empty for good. DeepCluster (Caron et al. 2018, Sec. 3.3) re-seeds it:
"we randomly select a non-empty cluster and use its centroid with a small random
perturbation as the new centroid for the empty cluster. We then reassign the points
belonging to the non-empty cluster to the two resulting clusters." As in faiss, the
cluster to split is drawn with probability proportional to its size minus one (a single
point cannot be split). The two centroids are the donor's mean moved by +-eps along a
random direction d, so each of its points goes to the nearer one: the hyperplane through
the mean, normal to d, splits the donor's points, whatever eps.

Distances are computed a chunk of points at a time (|x|^2 - 2 x.c + |c|^2), so that
50,000 x 128 features with k = 10,000 centroids never hold the full (N, k) matrix.
"""
import math
from typing import NamedTuple

import torch

from .utils import check_dim, check_generator, check_tensor

CHUNK_ELEMENTS = 2 ** 22   # entries of the (chunk, k) distance block: 16 MB in float32


class KMeansResult(NamedTuple):
    centroids: torch.Tensor        # (k, D)
    assignments: torch.Tensor      # (N,) int64, each point's cluster
    inertia: float                 # sum of squared distances of the points to their centroids
    inertia_history: list          # the inertia after each assignment step, the initial centroids' first
    empty_splits: int              # how many times an empty cluster was re-seeded by a split


def _check_points(x, k) -> torch.Tensor:
    check_tensor(x, "x", ndim=2, floating=True)
    if len(x) == 0 or x.shape[1] == 0:
        raise ValueError(f"x must hold at least one point of at least one dimension, got shape {tuple(x.shape)}")
    check_dim(k, "k")
    if k > len(x):
        raise ValueError(f"k = {k} clusters need at least k points, got {len(x)}")
    if not torch.isfinite(x).all():
        raise ValueError("x holds NaN or infinite values")
    return x


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N, D), (k, D) -> (N, k) squared Euclidean distances |x|^2 - 2 x.c + |c|^2, clamped at 0."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)
    return d.clamp_min(0)   # rounding can make |x - c|^2 slightly negative when x = c


def nearest_centroids(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's nearest centroid and its squared distance: (N,) int64, (N,), a chunk at a time."""
    rows = max(1, CHUNK_ELEMENTS // len(centroids))
    assignments, distances = [], []
    for start in range(0, len(x), rows):
        d, a = squared_distances(x[start:start + rows], centroids).min(dim=1)
        assignments.append(a)
        distances.append(d)
    return torch.cat(assignments), torch.cat(distances)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k points of x (k, D) by k-means++ seeding (Arthur and Vassilvitskii 2007).

    The first uniformly, each next one with probability D(x)^2 / sum D^2, D(x) the distance
    to the nearest centroid chosen so far. A uniform number from ``generator`` is looked up
    in the cumulative sum of D^2 on x's device, so a GPU run needs no transfer per centroid.
    """
    _check_points(x, k)
    check_generator(generator)
    first = torch.randint(len(x), (1,), generator=generator).to(x.device)
    centroids = [x[first]]                                           # (1, D) each
    closest = squared_distances(x, centroids[0]).squeeze(1)          # (N,) D(x)^2
    for _ in range(k - 1):
        cumulative = closest.double().cumsum(0)
        u = torch.rand((1,), generator=generator, dtype=torch.float64).to(x.device) * cumulative[-1]
        index = torch.searchsorted(cumulative, u, right=True).clamp(max=len(x) - 1)
        centroids.append(x[index])
        closest = torch.minimum(closest, squared_distances(x, centroids[-1]).squeeze(1))
    return torch.cat(centroids)


def split_empty_clusters(x: torch.Tensor, assignments: torch.Tensor, k: int,
                         generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """Give every empty cluster a share of a non-empty one's points (DeepCluster's fix; see the module docstring).

    Returns the new assignments (N,) and the number of splits. The donor is drawn with
    probability proportional to (size - 1); its points are split by the hyperplane through
    their mean normal to a random direction. A donor whose points all coincide cannot be
    split by a hyperplane: then its cluster gives one point to the empty one.
    """
    counts = torch.bincount(assignments, minlength=k).cpu()
    empty = (counts == 0).nonzero().flatten().tolist()
    if not empty:
        return assignments, 0
    assignments = assignments.clone()
    for cluster in empty:
        donor = int(torch.multinomial((counts - 1).clamp_min(0).double(), 1, generator=generator))
        members = (assignments == donor).nonzero().flatten()                        # (n_donor,)
        direction = torch.randn(x.shape[1], generator=generator, dtype=torch.float64).to(x)
        side = (x[members] - x[members].mean(0)) @ direction > 0                    # (n_donor,) bool
        if not side.any() or side.all():
            side = torch.arange(len(members), device=x.device) == 0
        assignments[members[side]] = cluster
        moved = int(side.sum())
        counts[cluster], counts[donor] = moved, counts[donor] - moved
    return assignments, len(empty)


def cluster_means(x: torch.Tensor, assignments: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """(k, D) the mean of each cluster's points; a cluster without points keeps its ``previous`` centroid."""
    k = len(previous)
    sums = torch.zeros_like(previous).index_add_(0, assignments, x)
    counts = torch.bincount(assignments, minlength=k).to(x.dtype).unsqueeze(1)   # (k, 1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), previous)


def kmeans(x: torch.Tensor, k: int, iterations: int, generator: torch.Generator, init=None,
           reseed_empty: bool = True) -> KMeansResult:
    """Lloyd's k-means of the points x (N, D) into k clusters, on x's device and in x's dtype.

    ``iterations``: at most this many centroid updates, each followed by an assignment step
    (0 only assigns the points to the initial centroids); the loop stops early once the
    assignments no longer change. ``init``: None or "k-means++", "random" (k distinct points,
    as faiss), or a (k, D) tensor of starting centroids.
    ``reseed_empty``: split a non-empty cluster for each empty one after every assignment
    step; False leaves an empty cluster's centroid where it was (the failure DeepCluster fixes).

    As scikit-learn's ``KMeans(algorithm="lloyd")``, the returned assignments are each point's
    nearest returned centroid, and the inertia is theirs; except when the last assignment step
    had to split an empty cluster: the returned centroids are then the means of the returned
    assignments. Every random draw comes from ``generator`` (a CPU generator).
    """
    _check_points(x, k)
    check_generator(generator)
    if not isinstance(reseed_empty, bool):
        raise TypeError(f"reseed_empty must be True or False, got {reseed_empty!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    if init is None or (isinstance(init, str) and init == "k-means++"):
        centroids = kmeans_plus_plus(x, k, generator)
    elif isinstance(init, str) and init == "random":
        centroids = x[torch.randperm(len(x), generator=generator)[:k].to(x.device)]
    elif isinstance(init, torch.Tensor):
        check_tensor(init, "init", ndim=2, floating=True)
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"init must hold k = {k} centroids of dimension {x.shape[1]}, "
                             f"got shape {tuple(init.shape)}")
        centroids = init.to(device=x.device, dtype=x.dtype)
    else:
        raise ValueError(f"init must be None, 'k-means++', 'random' or a (k, D) tensor, got {init!r}")

    history, splits, previous = [], 0, None
    for step in range(iterations + 1):
        assignments, distances = nearest_centroids(x, centroids)
        history.append(distances.sum(dtype=torch.float64).item())
        if reseed_empty:
            assignments, n = split_empty_clusters(x, assignments, k, generator)
            splits += n
        else:
            n = 0
        converged = previous is not None and torch.equal(assignments, previous)
        if step == iterations or converged:
            if n:   # a split in the last step: the two halves get their means
                centroids = cluster_means(x, assignments, centroids)
            break
        centroids = cluster_means(x, assignments, centroids)
        previous = assignments
    inertia = ((x - centroids[assignments]) ** 2).sum(dtype=torch.float64).item()
    return KMeansResult(centroids, assignments, inertia, history, splits)


def pca_whiten(features: torch.Tensor, dim: int, eps: float = 1e-5) -> torch.Tensor:
    """(N, D) -> (N, min(dim, D)): projections on the top principal components, each scaled to unit variance.

    DeepCluster reduces its 4096-d features to 256 dimensions this way before k-means. The
    covariance is D x D and its eigendecomposition runs in float64 on the features' device:
    cheap for D in the hundreds. ``eps`` is added to the eigenvalues, so that directions
    without variance are not blown up.
    """
    check_tensor(features, "features", ndim=2, floating=True)
    check_dim(dim, "dim")
    if len(features) < 2:
        raise ValueError(f"PCA needs at least 2 points, got {len(features)}")
    centred = features - features.mean(0)
    covariance = (centred.T @ centred).double() / (len(features) - 1)      # (D, D)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)             # ascending
    top = eigenvalues.flip(0)[:dim].clamp_min(0), eigenvectors.flip(1)[:, :dim]
    whitening = (top[1] / (top[0] + eps).sqrt()).to(features.dtype)       # (D, dim)
    return centred @ whitening


def contingency(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """(N,), (N,) integer labels -> (max a + 1, max b + 1) counts of each pair (a_i, b_i), with at least
    ``shape`` rows and columns (a confusion matrix keeps a row and a column for every class)."""
    for v, name in ((a, "a"), (b, "b")):
        check_tensor(v, name, ndim=1)
        if v.is_floating_point() or v.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer labels, got dtype {v.dtype}")
        if len(v) and v.min() < 0:
            raise ValueError(f"{name} must hold labels >= 0, got {int(v.min())}")
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"a and b must label the same non-empty set of points, got {len(a)} and {len(b)} labels")
    rows, cols = max(int(a.max()) + 1, shape[0]), max(int(b.max()) + 1, shape[1])
    return torch.bincount(a.long() * cols + b.long(), minlength=rows * cols).reshape(rows, cols)


def normalized_mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """NMI(A; B) = I(A; B) / sqrt(H(A) H(B)), DeepCluster's measure of agreement between two clusterings.

    1 when they are the same partition (whatever the cluster numbers), 0 when independent.
    Two partitions of one cluster each are the same: 1. scikit-learn's
    ``normalized_mutual_info_score(a, b, average_method="geometric")`` is the same number.
    """
    joint = contingency(a, b).double()
    joint = joint / joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    entropy = lambda p: -(p[p > 0] * p[p > 0].log()).sum()
    h_a, h_b = entropy(pa), entropy(pb)
    if h_a == 0 and h_b == 0:
        return 1.0
    outer = pa[:, None] * pb[None, :]
    nonzero = joint > 0
    mutual = (joint[nonzero] * (joint[nonzero] / outer[nonzero]).log()).sum()
    if mutual <= 0:
        return 0.0
    return float(mutual / math.sqrt(h_a * h_b))


def cluster_purity(assignments: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of points whose cluster's most frequent true label is their own label."""
    counts = contingency(assignments, labels)
    return float(counts.max(dim=1).values.sum() / len(assignments))
