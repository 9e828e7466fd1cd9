"""The geometry of embeddings: what a representation looks like, beyond its accuracy.

Every measure takes an (N, D) float tensor of embeddings (one row per image), validates
it, and returns a Python float or a tensor. The references:

- alignment and uniformity: Wang and Isola. "Understanding Contrastive Representation
  Learning through Alignment and Uniformity on the Hypersphere." ICML 2020, eqs. (2)-(3).
- intra- vs inter-class distances: Chen et al. "Large-Margin Contrastive Learning with
  Distance Polarization Regularizer." ICML 2021 (their distance histograms).
- the max-min distance ratio: Beyer, Goldstein, Ramakrishnan, Shaft. "When Is 'Nearest
  Neighbor' Meaningful?" ICDT 1999; used by Chen, Gong, Li, Yang, Niu, Sugiyama.
  "Learning Contrastive Embedding in Low-Dimensional Space." NeurIPS 2022, Sec. 2.1.
- the singular value spectrum: Jing, Vincent, LeCun, Tian. "Understanding Dimensional
  Collapse in Contrastive Self-supervised Learning." ICLR 2022, Sec. 3.
- effective rank: Roy and Vetterli. "The Effective Rank: a Measure of Effective
  Dimensionality." EUSIPCO 2007.
- the std of normalised outputs: Chen and He. "Exploring Simple Siamese Representation
  Learning." CVPR 2021, Sec. 4.1 (Fig. 2, middle).
"""
import math

import torch
import torch.nn.functional as F

from .losses.similarity import check_pair, cosine_similarity_matrix
from .utils import check_positive, check_tensor


def check_embeddings(z, name: str = "z", min_points: int = 2) -> torch.Tensor:
    """An (N, D) float tensor with N >= ``min_points``."""
    check_tensor(z, name, ndim=2, floating=True)
    if z.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} embeddings (rows), got N={z.shape[0]}")
    if z.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature dimension, got shape {tuple(z.shape)}")
    return z


def check_labels(labels, n: int) -> torch.Tensor:
    check_tensor(labels, "labels", ndim=1)
    if len(labels) != n:
        raise ValueError(f"labels must hold one label per embedding: {n} embeddings but {len(labels)} labels")
    return labels


# --- Alignment and uniformity (Wang and Isola 2020) -----------------------------------

def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """L_align = E_{(x, y) positive} || f(x) - f(y) ||_2^alpha   (Wang and Isola, eq. 2).

    z1, z2: (N, D); row i of each embeds the two views of image i. Rows are
    l2-normalised here, so the value lies in [0, 2^alpha]; 0 means perfectly aligned.
    Their default alpha is 2. Differentiable, so it also serves as a loss.
    """
    check_pair(z1, z2)
    alpha = check_positive(alpha, "alpha")
    f1, f2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)     # (N, D) on the unit sphere
    squared = (f1 - f2).pow(2).sum(dim=1)                       # (N,); no sqrt, whose gradient is infinite at 0
    return squared.pow(alpha / 2).mean()


def uniformity(z: torch.Tensor, t: float = 2) -> torch.Tensor:
    """L_uniform = log E_{x, y iid} exp(-t || f(x) - f(y) ||_2^2)   (Wang and Isola, eq. 3).

    z: (N, D), N >= 2, l2-normalised here; the expectation runs over the N(N-1)/2 pairs
    of distinct rows, as in the authors' code. Lower is more uniform: it is 0 when every
    point coincides, and at least -2t N / (N - 1) (Jensen's inequality, since the mean
    squared distance of distinct pairs is at most 2N / (N - 1)); about -4 for many points
    at their default t = 2. Differentiable, so it also serves as a loss.
    """
    check_embeddings(z)
    t = check_positive(t, "t")
    f = F.normalize(z, dim=1)
    n = f.shape[0]
    squared = (2 - 2 * f @ f.T).clamp_min(0)                    # (N, N); |u - v|^2 = 2 - 2 u.v on the sphere
    i, j = torch.triu_indices(n, n, offset=1, device=f.device)
    pairs = squared[i, j]                                       # (N(N-1)/2,)
    return torch.logsumexp(-t * pairs, dim=0) - math.log(pairs.numel())


# --- Distances between points ---------------------------------------------------------

def intra_inter_distances(features: torch.Tensor, labels: torch.Tensor, max_points: int | None = 1000,
                          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distances 1 - cos of all pairs, split by class: (intra-class, inter-class).

    features: (N, D); labels: (N,). Each unordered pair of distinct points is counted
    once, so the two 1-D tensors hold sum_c n_c (n_c - 1) / 2 and the remaining pairs of
    N (N - 1) / 2. Above ``max_points`` points, a random subset drawn with ``seed`` is
    kept (the number of pairs grows as N^2). Their histograms are the pictures of Chen
    et al. (ICML 2021): a good embedding separates the two distributions.
    """
    check_embeddings(features, "features")
    check_labels(labels, len(features))
    if max_points is not None and len(features) > max_points:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_points]
        features, labels = features[keep], labels[keep]
    distance = 1 - cosine_similarity_matrix(features, features)  # (N, N)
    i, j = torch.triu_indices(len(features), len(features), offset=1)
    pair_distance = distance[i, j]                                # (N(N-1)/2,)
    same = labels[i] == labels[j]
    return pair_distance[same], pair_distance[~same]


def max_min_distance_ratio(features: torch.Tensor, per_query: bool = True) -> float:
    """Relative contrast (D_max - D_min) / D_min of Euclidean distances (Beyer et al. 1999).

    features: (N, D), N >= 2 with per_query=False, N >= 3 with per_query=True.

    Beyer et al. define D_max and D_min for one query point: its largest and smallest
    distance to the data set. As the dimension grows (for i.i.d. coordinates, among
    others) the ratio tends to 0: the nearest neighbour is hardly nearer than the
    farthest point. Chen et al. (NeurIPS 2022) cite Beyer et al. for this ratio in Sec.
    2.1, where they argue for low-dimensional contrastive embeddings. With ``per_query=True``
    (the default, Beyer's definition), every row is a query in turn against the other
    N - 1 rows, and the mean of the N ratios is returned. With ``per_query=False``,
    D_max and D_min are the largest and smallest distance over all pairs: one number,
    dominated by the single closest pair.

    Distances are taken on the features as given; pass ``F.normalize(z, dim=1)`` to
    measure on the unit sphere, where contrastive losses place embeddings. Two identical
    rows make D_min = 0 and the ratio infinite.
    """
    check_embeddings(features, "features", min_points=3 if per_query else 2)
    x = features.detach().double()
    distance = torch.cdist(x, x)                                  # (N, N)
    n = len(x)
    if per_query:
        others = ~torch.eye(n, dtype=torch.bool)
        to_others = distance[others].view(n, n - 1)               # (N, N-1): row i without d(i, i)
        d_max, d_min = to_others.max(dim=1).values, to_others.min(dim=1).values
        return ((d_max - d_min) / d_min).mean().item()
    i, j = torch.triu_indices(n, n, offset=1)
    pairs = distance[i, j]
    return ((pairs.max() - pairs.min()) / pairs.min()).item()


def nearest_neighbours(query_features: torch.Tensor, gallery_features: torch.Tensor, k: int,
                       exclude_self: bool = False, chunk: int = 1024):
    """The k gallery rows most cosine-similar to each query row, most similar first.

    query_features: (M, D); gallery_features: (N, D). Returns ``torch.topk``'s named
    tuple: ``.values`` (M, k) cosine similarities and ``.indices`` (M, k) gallery rows.
    With ``exclude_self=True`` the query set is the gallery (M == N) and row i never
    retrieves itself.
    """
    check_embeddings(query_features, "query_features", min_points=1)
    check_embeddings(gallery_features, "gallery_features", min_points=1)
    if query_features.shape[1] != gallery_features.shape[1]:
        raise ValueError(f"query_features and gallery_features must share the feature dimension, got "
                         f"{tuple(query_features.shape)} and {tuple(gallery_features.shape)}")
    if exclude_self and len(query_features) != len(gallery_features):
        raise ValueError(f"exclude_self=True needs the queries to be the gallery, got {len(query_features)} "
                         f"queries and {len(gallery_features)} gallery rows")
    available = len(gallery_features) - int(exclude_self)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k must be an integer between 1 and {available} (the gallery rows available), got {k!r}")
    values, indices = [], []
    for start in range(0, len(query_features), chunk):
        similarity = cosine_similarity_matrix(query_features[start:start + chunk], gallery_features)  # (m, N)
        if exclude_self:
            rows = torch.arange(len(similarity), device=similarity.device)
            similarity[rows, rows + start] = float("-inf")
        top = similarity.topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.return_types.topk((torch.cat(values), torch.cat(indices)))


# --- Collapse: the spectrum, the effective rank and the std of normalised outputs ------

def singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of the embedding covariance, in decreasing order (Jing et al. 2022).

    z: (N, D) -> (D,). C = (1/N) sum_i (z_i - mean)(z_i - mean)^T, and since C is
    symmetric positive semi-definite its singular values are its eigenvalues. Jing et
    al. plot their logarithm against their rank: a spectrum that falls to ~0 before
    index D shows dimensional collapse, the embeddings span a subspace. Computed in
    float64 on the CPU, without gradient.
    """
    check_embeddings(z)
    x = z.detach().cpu().double()
    centred = x - x.mean(dim=0)                                   # (N, D)
    covariance = centred.T @ centred / len(x)                     # (D, D)
    return torch.linalg.svdvals(covariance)


def effective_rank(z: torch.Tensor) -> float:
    """erank = exp(H(p)), p_k = s_k / sum_j s_j, with s the covariance spectrum of z.

    Roy and Vetterli (2007), eq. (3)-(4), applied to ``singular_values(z)``: D for an
    isotropic cloud, 1 when the points lie on a line, between the two otherwise.
    Singular values below the float64 rounding noise of z's scale count as 0 (a cloud
    of identical points has an effective rank of 0, not one of noise). RankMe (Garrido
    et al. ICML 2023) applies the same formula to the singular values of z itself,
    which are the square roots of these (times sqrt(N)) and give a larger rank.
    """
    s = singular_values(z)                                        # (D,)
    scale = z.detach().double().pow(2).sum(dim=1).mean()          # mean |z_i|^2 sets the rounding noise
    s = s[s > max(z.shape) * torch.finfo(torch.float64).eps * scale]
    if s.numel() == 0:
        return 0.0
    p = s / s.sum()
    entropy = -(p * p.log()).sum()
    return entropy.exp().item()


def normalized_std(z: torch.Tensor) -> float:
    """Mean over the D dimensions of the std over N rows of z / |z|_2 (SimSiam, Fig. 2).

    z: (N, D), N >= 2. Chen and He note that for z ~ N(0, I) the value is about
    1 / sqrt(D), and that it drops to 0 when the outputs collapse to a constant.
    """
    check_embeddings(z)
    return F.normalize(z.detach().double(), dim=1).std(dim=0).mean().item()


def collapse_report(z: torch.Tensor, min_std_ratio: float = 0.1, min_effective_rank: float = 1.2) -> dict:
    """The collapse measures of z (N, D) in one dict, with a verdict.

    Keys: ``std`` (``normalized_std``), ``std_isotropic`` (1/sqrt(D), its value for an
    isotropic Gaussian), ``std_ratio`` (their quotient), ``effective_rank``, ``dim`` (D),
    ``uniformity`` (t = 2) and ``collapsed``.

    ``collapsed`` is True when ``std_ratio < min_std_ratio`` (complete collapse: the
    normalised outputs spread less than a tenth of an isotropic cloud's; SimSiam without
    stop-gradient reaches 0, with it the std stays near 1/sqrt(D)) or when
    ``effective_rank < min_effective_rank`` (nearly all the variance lies along one
    line: on the sphere, two antipodal points, which the std alone does not catch).
    Dimensional collapse short of that is a matter of degree: read ``effective_rank``
    against ``dim``. For scale, on 1000 test images of the world, the course's ConvNet
    features (D = 128) had an effective rank of 3.9 to 5.4 and a std ratio of 0.27 at
    random init (pooled ReLU features are non-negative and use few directions), 2.2 and
    0.41 after lecture 00's one-epoch SimCLR run, 11.4 and 0.43 after its 15 epochs.
    """
    check_embeddings(z)
    d = z.shape[1]
    std = normalized_std(z)
    std_isotropic = 1 / math.sqrt(d)
    rank = effective_rank(z)
    with torch.no_grad():
        uniform = uniformity(z.detach().double()).item()
    return {"std": std, "std_isotropic": std_isotropic, "std_ratio": std / std_isotropic,
            "effective_rank": rank, "dim": d, "uniformity": uniform,
            "collapsed": bool(std / std_isotropic < min_std_ratio or rank < min_effective_rank)}
