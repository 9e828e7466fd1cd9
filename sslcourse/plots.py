"""Pictures the course shows: image grids, views, embeddings and distance distributions."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from .analysis import intra_inter_distances
from .clustering import contingency


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
    into same-class and different-class pairs: two 1-D numpy arrays.

    ``sslcourse.analysis.intra_inter_distances`` computes them; this accepts arrays too."""
    intra, inter = intra_inter_distances(torch.as_tensor(features).detach().float(),
                                         torch.as_tensor(labels), max_points, seed)
    return intra.numpy(), inter.numpy()


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


def plot_retrieval(query_images, gallery_images, neighbour_indices, query_labels=None, gallery_labels=None,
                   size: float = 1.2):
    """One row per query: the query, then its k nearest gallery images in order.

    neighbour_indices: (M, k) gallery rows, e.g. ``nearest_neighbours(...).indices``.
    With both label sets, each neighbour gets a green frame when it shares the query's
    class and a red one otherwise, and the row's title counts the hits.
    """
    index = torch.as_tensor(neighbour_indices)
    if index.ndim != 2 or len(index) != len(query_images):
        raise ValueError(f"neighbour_indices must be (M, k) with M={len(query_images)} queries, "
                         f"got shape {tuple(index.shape)}")
    if len(index) and (index.min() < 0 or index.max() >= len(gallery_images)):
        raise ValueError(f"neighbour_indices must lie in [0, {len(gallery_images)}), the gallery's rows")
    judged = query_labels is not None and gallery_labels is not None
    queries, gallery = to_display(query_images), to_display(gallery_images)
    m, k = index.shape
    fig, axes = plt.subplots(m, k + 1, figsize=(size * (k + 1), size * m * 1.15), squeeze=False)
    for row in range(m):
        panels = [(queries[row], "query", "black")]
        for rank, j in enumerate(index[row].tolist()):
            same = judged and int(gallery_labels[j]) == int(query_labels[row])
            colour = ("tab:green" if same else "tab:red") if judged else "black"
            panels.append((gallery[j], str(rank + 1), colour))
        for ax, (picture, title, colour) in zip(axes[row], panels):
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7, color=colour)
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(2.5 if colour != "black" else 0.5)
        if judged:
            hits = sum(int(gallery_labels[j]) == int(query_labels[row]) for j in index[row].tolist())
            axes[row, 0].set_ylabel(f"{hits}/{k} same class", fontsize=7)
    fig.tight_layout()
    return fig


def plot_spectrum(spectra_by_name: dict, ax=None):
    """Singular values of the embedding covariance against their rank, log scale, one line
    per embedding (``sslcourse.analysis.singular_values``; Jing et al. ICLR 2022, Fig. 1).
    Values that are exactly 0 cannot be drawn on a log scale and leave the line early."""
    fig, ax = plt.subplots(figsize=(5, 3.4)) if ax is None else (ax.figure, ax)
    for name, spectrum in spectra_by_name.items():
        s = np.asarray(torch.as_tensor(spectrum).detach().cpu(), dtype=float)
        ax.plot(np.arange(1, len(s) + 1), np.where(s > 0, s, np.nan), label=name)
    ax.set(yscale="log", xlabel="singular value rank", ylabel="singular value (log scale)",
           title="spectrum of the embedding covariance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_max_min_ratio(dims, ratios_by_name: dict, ax=None):
    """(D_max - D_min) / D_min against the embedding dimension, one line per embedding
    (``sslcourse.analysis.max_min_distance_ratio``; Chen et al. NeurIPS 2022)."""
    fig, ax = plt.subplots(figsize=(5, 3.4)) if ax is None else (ax.figure, ax)
    for name, ratios in ratios_by_name.items():
        if len(ratios) != len(dims):
            raise ValueError(f"{name!r} has {len(ratios)} ratios for {len(dims)} dimensions")
        ax.plot(dims, ratios, marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="embedding dimension", ylabel="(D_max - D_min) / D_min",
           title="relative contrast of distances")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layerwise(accuracy_by_task: dict, ax=None, chance: float | None = None):
    """Heatmap of layer-wise probe accuracies: one row per task, one column per block, annotated
    (``sslcourse.evaluation.layerwise_probe``; the layout of Wu et al. CVPR 2018, Table 2).
    Tasks may have different blocks (a ConvNet and a ResNet-18): missing cells stay blank. Each
    row's best block is outlined, so where a task's features peak reads at a glance."""
    import pandas as pd
    import seaborn as sns

    if not accuracy_by_task:
        raise ValueError("accuracy_by_task is empty: give {task: {block: accuracy}}")
    table = pd.DataFrame({task: pd.Series(acc, dtype=float) for task, acc in accuracy_by_task.items()}).T
    table = table[sorted(table.columns, key=lambda b: (len(str(b)), str(b)))]   # block2 before block10
    fig, ax = (plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.55 * table.shape[0] + 1.4))
               if ax is None else (ax.figure, ax))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", cbar_kws={"label": "test accuracy"}, ax=ax)
    for row, (_, values) in enumerate(table.iterrows()):
        if values.notna().any():
            col = table.columns.get_loc(values.idxmax())
            ax.add_patch(plt.Rectangle((col, row), 1, 1, fill=False, edgecolor="white", lw=2.5))
    title = "linear probe on each block" + (f" (chance {chance:.2f})" if chance is not None else "")
    ax.set(xlabel="block (input side -> output side)", ylabel="", title=title)
    fig.tight_layout()
    return fig


def _check_strip(frames, maps, what: str, shape: str, lag: int):
    """(T, C, H, W) frames and one map per frame (``lag`` = 0) or per frame but the last (``lag`` = 1),
    checked -> (the frames for imshow, the maps as a float tensor)."""
    frames, maps = torch.as_tensor(frames).detach().cpu(), torch.as_tensor(maps).detach().cpu().float()
    if frames.ndim != 4 or len(frames) < 1 + lag:
        raise ValueError(f"frames must be (T, C, H, W) with T >= {1 + lag}, got shape {tuple(frames.shape)}")
    flows = what == "flows"
    if maps.ndim != 3 + flows or len(maps) != len(frames) - lag or \
            (flows and (maps.shape[1] != 2 or maps.shape[2:] != frames.shape[2:])):
        raise ValueError(f"{what} must be {shape} for frames {tuple(frames.shape)}, got shape {tuple(maps.shape)}")
    return to_display(frames), maps


def plot_flow_strip(frames, flows, step: int = 2, magnify: float = 3.0, size: float = 1.8, title: str | None = None):
    """Frames of one clip with their forward optical flow drawn over them as arrows, one panel per flow.

    frames: (T, C, H, W); flows: (T-1, 2, H, W) in pixels, (dx, dy) as ``sslcourse.data.video`` gives it.
    An arrow starts at every ``step``-th pixel centre where the flow is not zero (the background's is)
    and is ``magnify`` times the flow long, so that motions of a pixel or two show.
    """
    pictures, flows = _check_strip(frames, flows, "flows", "(T-1, 2, H, W), one field per frame but the last", 1)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be an int >= 1 (pixels between arrows), got {step!r}")
    n, (h, w) = len(flows), flows.shape[-2:]
    fig, axes = plt.subplots(1, n, figsize=(size * n, size * 1.15), squeeze=False)
    rows, cols = np.mgrid[step // 2:h:step, step // 2:w:step]                       # arrow tails, pixel indices
    for t, ax in enumerate(axes[0]):
        dx, dy = flows[t, 0].numpy()[rows, cols], flows[t, 1].numpy()[rows, cols]
        moving = (dx != 0) | (dy != 0)
        ax.imshow(pictures[t], cmap="gray" if pictures[t].ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.quiver(cols[moving], rows[moving], magnify * dx[moving], magnify * dy[moving], color="white",
                  angles="xy", scale_units="xy", scale=1, width=0.012, headwidth=3, edgecolor="black", linewidth=0.3)
        ax.set(xticks=[], yticks=[], xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
        ax.set_title(f"frame {t} -> {t + 1}", fontsize=7)
    fig.suptitle(title or f"forward flow, arrows x{magnify:g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_heatmap_strip(frames, maps, size: float = 1.8, alpha: float = 0.55, title: str | None = None):
    """Frames with a coarse (h, w) map each laid over them (stretched to the frame, nearest cells), and a
    cross on each map's peak cell: e.g. where a sound is, ``sslcourse.methods.avc.localisation_map``.

    frames: (T, C, H, W); maps: (T, h, w). One colour scale for all panels, so that panels compare.
    """
    pictures, maps = _check_strip(frames, maps, "maps", "(T, h, w), one per frame", 0)
    (h, w), (height, width) = maps.shape[1:], pictures.shape[1:3]
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps), size * 1.15), squeeze=False)
    low, high = maps.min().item(), maps.max().item()
    for t, ax in enumerate(axes[0]):
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        ax.imshow(pictures[t], cmap="gray" if pictures[t].ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest", extent=extent)
        ax.imshow(maps[t].numpy(), cmap="inferno", vmin=low, vmax=high, alpha=alpha, interpolation="nearest",
                  extent=extent)
        row, col = divmod(int(maps[t].argmax()), w)
        ax.plot((col + 0.5) * width / w - 0.5, (row + 0.5) * height / h - 0.5, marker="x", color="cyan",
                markersize=9, markeredgewidth=2)
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"frame {t}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_confusion(labels, predictions, classes, ax=None, title: str | None = None):
    """Confusion matrix of class predictions, each row (a true class) normalised to sum to 1, annotated.

    labels, predictions: (N,) ints in [0, len(classes)). A true class with no sample keeps a row of zeros.
    """
    labels, predictions = (torch.as_tensor(a).detach().cpu().long().flatten() for a in (labels, predictions))
    k = len(classes)
    if len(labels) != len(predictions) or len(labels) == 0:
        raise ValueError(f"labels and predictions must be two non-empty (N,) arrays of one length, got "
                         f"{len(labels)} and {len(predictions)}")
    if min(labels.min(), predictions.min()) < 0 or max(labels.max(), predictions.max()) >= k:
        raise ValueError(f"labels and predictions must lie in [0, {k}), one per class of {list(classes)}")
    counts = contingency(labels, predictions, shape=(k, k)).double()                        # (true, predicted)
    matrix = (counts / counts.sum(dim=1, keepdim=True).clamp_min(1)).numpy()
    fig, ax = plt.subplots(figsize=(0.5 * k + 2.2, 0.5 * k + 1.4)) if ax is None else (ax.figure, ax)
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(k, k):
        if matrix[i, j] >= 0.005:
            ax.text(j, i, f"{matrix[i, j]:.2f}"[1:] if matrix[i, j] < 1 else "1", ha="center", va="center",
                    fontsize=6, color="white" if matrix[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    accuracy = (labels == predictions).double().mean().item()
    ax.set(xlabel="predicted", ylabel="true", title=title or f"accuracy {accuracy:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return fig
