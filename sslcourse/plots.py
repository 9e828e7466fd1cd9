"""Pictures the course shows: image grids, views, embeddings and distance distributions."""
import matplotlib.pyplot as plt
import numpy as np
import torch


def to_display(images) -> np.ndarray:
    """(N, C, H, W) uint8 or float tensor/array -> (N, H, W, C) float in [0, 1] for imshow."""
    x = torch.as_tensor(images).detach().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(0)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.min() < 0 or x.max() > 1:  # normalised batch: stretch per image for display
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def show_images(images, titles=None, ncols: int = 8, size: float = 1.3, suptitle: str | None = None):
    """Grid of images with optional per-image titles; returns the figure."""
    pictures = to_display(images)
    n = len(pictures)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pictures[i], cmap="gray" if pictures[i].ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def pairwise_cosine_distances(features, labels, max_points: int = 1000, seed: int = 0):
    """Cosine distances (1 - cos) of all pairs among up to ``max_points`` samples, split
    into same-class and different-class pairs: two 1-D numpy arrays."""
    features, labels = torch.as_tensor(features).float(), torch.as_tensor(labels)
    if len(features) > max_points:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_points]
        features, labels = features[keep], labels[keep]
    f = torch.nn.functional.normalize(features, dim=1)
    distance = 1 - f @ f.T
    upper = torch.triu(torch.ones_like(distance, dtype=torch.bool), diagonal=1)
    same = labels[:, None] == labels[None, :]
    return distance[upper & same].numpy(), distance[upper & ~same].numpy()


def plot_distance_distributions(features_by_name: dict, labels, max_points: int = 1000, seed: int = 0):
    """One panel per embedding: histograms of intra-class vs inter-class cosine distances."""
    fig, axes = plt.subplots(1, len(features_by_name), figsize=(4.2 * len(features_by_name), 3.2), squeeze=False)
    for ax, (name, features) in zip(axes[0], features_by_name.items()):
        intra, inter = pairwise_cosine_distances(features, labels, max_points, seed)
        bins = np.linspace(0, max(intra.max(), inter.max()), 60)
        ax.hist(inter, bins=bins, density=True, alpha=0.6, label="inter-class", color="tab:red")
        ax.hist(intra, bins=bins, density=True, alpha=0.6, label="intra-class", color="tab:blue")
        ax.set(title=name, xlabel="cosine distance 1 - cos", ylabel="density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tsne(features_by_name: dict, labels, classes=None, max_points: int = 1000, seed: int = 0):
    """One t-SNE panel per embedding (e.g. random init vs pretrained), points coloured by class."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)[:max_points]
    fig, axes = plt.subplots(1, len(features_by_name), figsize=(4.6 * len(features_by_name), 4.2), squeeze=False)
    for ax, (name, features) in zip(axes[0], features_by_name.items()):
        with threadpool_limits(limits=1):  # small problem: spare OpenMP threads only spin
            points = TSNE(n_components=2, init="pca", perplexity=min(30, len(labels) - 1),
                          random_state=seed).fit_transform(np.asarray(features)[:max_points])
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6)
        ax.set(title=name, xticks=[], yticks=[])
    if classes:
        handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(i)), label=c)
                   for i, c in enumerate(classes)]
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.86, 1))
    else:
        fig.tight_layout()
    return fig
