"""Classical baselines on raw pixels: what a representation must beat before any learning.

Three linear pipelines, fitted on the training split and scored on the test split:

* ``raw_pixels``: logistic regression on the (standardised) pixels themselves.
* ``pca``: "eigenfaces" (Turk and Pentland, "Eigenfaces for Recognition", J. Cognitive
  Neuroscience 1991): project on the top principal components, then a logistic
  regression. PCA keeps the directions of largest *variance*, whatever
  causes it: on the world that is mostly colour, brightness and texture, not shape.
* ``pca_lda``: "Fisherfaces" (Belhumeur, Hespanha, Kriegman, "Eigenfaces vs.
  Fisherfaces: Recognition Using Class Specific Linear Projection", PAMI 1997): PCA
  first, so that the within-class scatter matrix is invertible, then Fisher's linear
  discriminant analysis, which keeps the (at most C - 1) directions that separate
  the *labelled* classes best; LDA then classifies in that space.

On PCA features the logistic regression is :func:`sslcourse.evaluation.linear_probe`,
the probe the course puts on network features, so the numbers compare with the main
job's ``linear_100pct`` column. On raw pixels it needs a much stronger L2 penalty
(``RAW_PIXELS_C``): 3,072 weights per class from a few thousand images overfit, and
the weakly penalised fit takes minutes to converge, for a worse test accuracy.
"""
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .evaluation import linear_probe

RAW_PIXELS_C = 1e-4   # inverse L2 strength for raw pixels (linear_probe uses C = 1 on compact features)


def pixels(images) -> np.ndarray:
    """(N, C, H, W) uint8 images -> (N, C*H*W) float32 in [0, 1]: one row per image."""
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.flatten(1).numpy()


def _labelled_splits(data):
    """Train and test pixels and labels of an ImageDataset; a clear error when labels are missing."""
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"data set {data.name!r} has no labels: the pixel baselines are supervised "
                         "(PCA is not, but the classifier on top is)")
    return (pixels(data.train_images), data.train_labels.numpy(),
            pixels(data.test_images), data.test_labels.numpy())


def _check_components(n_components) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive int, got {n_components!r}")
    return n_components


def _fit_pca(train_x, n_components: int, seed: int) -> PCA:
    # At most min(N, D) components exist; randomized SVD is fast for a few of many, seeded for repeatability.
    k = min(n_components, *train_x.shape)
    return PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(train_x)


def pixel_baselines(data, n_components: int = 50, seed: int = 0) -> dict[str, float]:
    """Test accuracy of the three baselines on ``data`` (an ImageDataset with labels).

    Returns ``{"raw_pixels": ..., "pca": ..., "pca_lda": ...}``; ``n_components`` is the
    number of principal components kept by PCA and PCA + LDA.
    """
    _check_components(n_components)
    train_x, train_y, test_x, test_y = _labelled_splits(data)
    raw = make_pipeline(StandardScaler(), LogisticRegression(C=RAW_PIXELS_C, max_iter=1000))
    raw.fit(train_x, train_y)
    pca = _fit_pca(train_x, n_components, seed)
    train_p, test_p = pca.transform(train_x), pca.transform(test_x)
    lda = LinearDiscriminantAnalysis().fit(train_p, train_y)
    as_torch = [torch.from_numpy(a) for a in (train_p, train_y, test_p, test_y)]
    return {"raw_pixels": float(raw.score(test_x, test_y)),
            "pca": linear_probe(*as_torch, seed=seed),
            "pca_lda": float(lda.score(test_p, test_y))}


def fisherfaces(data, n_components: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """The fitted directions as images, to look at: the "eigen-shapes" and "fisher-shapes".

    Returns ``mean`` (C, H, W), ``eigen`` (k, C, H, W) the principal components (largest
    variance first) and ``fisher`` (c - 1, C, H, W) the discriminant directions mapped back
    to pixel space (most discriminative first), each direction scaled to unit length.
    """
    _check_components(n_components)
    train_x, train_y, _, _ = _labelled_splits(data)
    shape = tuple(data.train_images.shape[1:])
    pca = _fit_pca(train_x, n_components, seed)
    lda = LinearDiscriminantAnalysis().fit(pca.transform(train_x), train_y)
    # A discriminant direction w in PCA space is the pixel-space direction components^T w.
    fisher = (pca.components_.T @ lda.scalings_[:, :lda.explained_variance_ratio_.size]).T
    fisher /= np.linalg.norm(fisher, axis=1, keepdims=True)
    return {"mean": pca.mean_.reshape(shape),
            "eigen": pca.components_.reshape(-1, *shape),
            "fisher": fisher.reshape(-1, *shape)}
