"""The cross-modal lecture's figures: flow arrows over frames, heatmaps over frames, confusion matrices."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from sslcourse.plots import plot_confusion, plot_flow_strip, plot_heatmap_strip  # noqa: E402


def clip(frames=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, 3, size, size), generator=g, dtype=torch.uint8)


def test_flow_arrows_start_on_the_moving_pixels_and_are_the_magnified_flow():
    frames = clip(frames=3, size=8)
    flows = torch.zeros(2, 2, 8, 8)
    flows[0, :, 2:4, 4:6] = torch.tensor([1.5, -0.5])[:, None, None]     # a patch moving right and up
    flows[1, 0, 6, 1] = -2.0                                             # one pixel moving left
    fig = plot_flow_strip(frames, flows, step=1, magnify=2.0)
    axes = fig.axes
    assert len(axes) == 2
    for ax, flow in zip(axes, flows):
        arrows = next(c for c in ax.collections if isinstance(c, Quiver))
        # An arrow per pixel whose flow is not zero, from its centre (x = column, y = row), 2x the flow.
        rows, cols = torch.nonzero(flow.abs().sum(0) > 0, as_tuple=True)
        expected = sorted(zip(cols.tolist(), rows.tolist(), (2 * flow[0, rows, cols]).tolist(),
                              (2 * flow[1, rows, cols]).tolist()))
        drawn = sorted(zip(arrows.X.tolist(), arrows.Y.tolist(), np.asarray(arrows.U).tolist(),
                           np.asarray(arrows.V).tolist()))
        np.testing.assert_allclose(np.array(drawn, dtype=float), np.array(expected, dtype=float))
    # A coarser step keeps only every step-th pixel: the patch (rows 2-3, columns 4-5) has one, at (5, 3).
    fig = plot_flow_strip(frames, flows, step=2, magnify=1.0)
    arrows = next(c for c in fig.axes[0].collections if isinstance(c, Quiver))
    assert (arrows.X.tolist(), arrows.Y.tolist()) == ([5], [3])
    plt.close("all")


def test_heatmaps_cover_each_frame_and_mark_the_peak_cell():
    frames = clip(frames=2, size=8)
    maps = torch.zeros(2, 4, 4)
    maps[0, 1, 3] = 1.0                                                   # peak: row 1, column 3
    maps[1, 3, 0] = 0.5
    fig = plot_heatmap_strip(frames, maps)
    for ax, (row, col) in zip(fig.axes, [(1, 3), (3, 0)]):
        picture, heat = ax.images
        assert picture.get_extent() == heat.get_extent() == [-0.5, 7.5, 7.5, -0.5]
        np.testing.assert_array_equal(heat.get_array(), maps[0 if row == 1 else 1].numpy())
        assert heat.get_clim() == (0.0, 1.0)                              # one colour scale for every panel
        (peak,) = ax.lines                                                 # the centre of the 2 x 2 pixel cell
        assert (peak.get_xdata()[0], peak.get_ydata()[0]) == (2 * col + 0.5, 2 * row + 0.5)
    plt.close("all")


def confusion_loop(labels, predictions, k):
    rows = [[sum(1 for y, p in zip(labels, predictions) if y == i and p == j) for j in range(k)] for i in range(k)]
    return [[c / max(1, sum(row)) for c in row] for row in rows]


def test_confusion_matrix_rows_are_the_true_classes_normalised():
    g = torch.Generator().manual_seed(0)
    labels, predictions = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
    labels[labels == 3] = 2                                               # class 3 never true: a row of zeros
    fig = plot_confusion(labels, predictions, ["a", "b", "c", "d"])
    matrix = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(matrix, confusion_loop(labels.tolist(), predictions.tolist(), 4))
    assert fig.axes[0].get_title() == f"accuracy {(labels == predictions).float().mean():.3f}"
    plt.close("all")


@pytest.mark.parametrize("call,message", [
    (lambda: plot_flow_strip(clip(3), torch.zeros(3, 2, 8, 8)), r"one field per frame but the last"),
    (lambda: plot_flow_strip(clip(3), torch.zeros(2, 3, 8, 8)), r"\(T-1, 2, H, W\)"),
    (lambda: plot_flow_strip(clip(3), torch.zeros(2, 2, 4, 4)), r"\(T-1, 2, H, W\)"),
    (lambda: plot_flow_strip(clip(3)[0], torch.zeros(2, 2, 8, 8)), r"frames must be \(T, C, H, W\)"),
    (lambda: plot_flow_strip(clip(3), torch.zeros(2, 2, 8, 8), step=0), "step must be an int >= 1"),
    (lambda: plot_heatmap_strip(clip(3), torch.zeros(2, 4, 4)), r"one per frame"),
    (lambda: plot_heatmap_strip(clip(3), torch.zeros(3, 2, 4, 4)), r"\(T, h, w\)"),
    (lambda: plot_confusion([0, 1], [1], ["a", "b"]), "one length"),
    (lambda: plot_confusion([0, 2], [1, 1], ["a", "b"]), r"in \[0, 2\)"),
    (lambda: plot_confusion([0, 1], [-1, 1], ["a", "b"]), r"in \[0, 2\)"),
])
def test_the_figures_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
