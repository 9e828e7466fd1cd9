"""Motion masks as an automatic annotator, a single-frame segmenter trained on them (Pathak et al.
2017), and RGB-flow correspondence (Sayed et al. 2018) on the world's videos.

The annotator is checked exactly on a square moving over a still texture and against the world's
true object maps; the correspondence loss against a loop; then bad input, the registry, the
trainer, the command line, and one learning test per method.

(The flow's exactness, warping frame t+1 by the flow of frame t gives back frame t away from
occlusions and borders, is ``test_video.py::test_warping_frame_t_plus_1_by_the_flow_gives_back_frame_t``.)
"""
import json
import math

import pytest
import torch

from sslcourse.cli import main
from sslcourse.data.motion import (changed_region, dilate, erode, fill_holes, frame_blind_iou, frame_difference,
                                   mask_iou, motion_mask, motion_masks)
from sslcourse.data.video import load_videos
from sslcourse.losses import pair_correspondence_loss
from sslcourse.losses.pair_correspondence import derangement
from sslcourse.methods import METHODS, MotionSegmentation, RGBFlowCorrespondence
from sslcourse.methods.motion_segmentation import motion_mask_examples, segmentation_iou
from sslcourse.methods.rgb_flow import check_flows, frame_flow_pairs
from sslcourse.models import build_backbone
from sslcourse.trainer import train
from test_temporal_pretext import DEVICES, class_probe, with_data_statistics   # the temporal tasks' baseline and probe


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def sliding_square(n=3, frames=6, size=24, side=6, step=2, seed=0):
    """(n, frames, 3, size, size) uint8 videos of a red square moving ``step`` px right per frame over
    a still grey texture (0..100, so every channel sum differs from the square's by > 155), and the
    square's true masks (n, frames, size, size)."""
    g = gen(seed)
    background = torch.randint(0, 101, (n, 1, 1, size, size), generator=g, dtype=torch.uint8).expand(n, frames, 3, size,
                                                                                                      size).clone()
    masks = torch.zeros(n, frames, size, size, dtype=torch.bool)
    for i in range(n):
        top = 5 + i % 12
        for t in range(frames):
            left = 3 + step * t
            masks[i, t, top:top + side, left:left + side] = True
    videos = background
    colour = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 1, 3, 1, 1)
    videos = torch.where(masks[:, :, None], colour, videos)
    return videos, masks


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory):
    """300 training and 100 test videos of 8 frames at 16 px, objects at 0.05-0.1 of the side per frame."""
    return load_videos(n_train=300, n_test=100, seed=0, image_size=16, frames=8, speed_range=(0.05, 0.1),
                       root=tmp_path_factory.mktemp("videos"))


def true_masks(data, split, frames=slice(None)):
    return torch.from_numpy(data.extras[split]["masks"][:, frames]) >= 0


def centre_disk(size, radius):
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (rows - (size - 1) / 2) ** 2 + (cols - (size - 1) / 2) ** 2 <= radius ** 2


def test_frame_blind_iou_is_the_best_of_all_foreground_and_every_centred_disk():
    true = torch.rand(3, 2, 9, 9, generator=gen(2)) < 0.3
    true[0, 0] = centre_disk(9, 3)                                   # one frame is exactly a disk
    candidates = [torch.ones(9, 9, dtype=torch.bool)] + [centre_disk(9, r) for r in range(1, 9)]
    scores = []
    for candidate in candidates:                                     # the mean over frames of each one's IoU
        ious = []
        for mask in true.flatten(0, 1):
            union = (candidate | mask).sum().item()
            ious.append((candidate & mask).sum().item() / union if union else 1.0)
        scores.append(sum(ious) / len(ious))
    assert frame_blind_iou(true) == pytest.approx(max(scores))
    assert frame_blind_iou(centre_disk(9, 3).expand(4, 9, 9)) == 1.0
    with pytest.raises(ValueError, match=r"true must be bool masks \(..., H, W\), got torch.float32"):
        frame_blind_iou(true.float())


# ---------------------------------------------------------------- morphology

def test_dilate_and_erode_match_a_loop_over_the_square_neighbourhood():
    mask = torch.rand(2, 9, 11, generator=gen(1)) < 0.2
    for radius in (0, 1, 2):
        dilated, eroded = dilate(mask, radius), erode(mask, radius)
        for i in range(2):
            for y in range(9):
                for x in range(11):
                    window = mask[i, max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
                    assert dilated[i, y, x] == window.any()
                    assert eroded[i, y, x] == window.all()          # outside the image counts as True


def test_fill_holes_fills_enclosed_regions_only():
    ring = torch.zeros(1, 10, 10, dtype=torch.bool)
    ring[0, 2:8, 2:8] = True
    ring[0, 3:7, 3:7] = False                                       # a closed ring: its inside is filled
    square = torch.zeros_like(ring)
    square[0, 2:8, 2:8] = True
    assert torch.equal(fill_holes(ring), square)
    opened = ring.clone()
    opened[0, 4, 7] = False                                         # a gap to the outside: nothing to fill
    assert torch.equal(fill_holes(opened), opened)
    diagonal = ring.clone()
    diagonal[0, 2, 2] = False                                       # a diagonal leak is not a 4-connected path
    expected = square.clone()
    expected[0, 2, 2] = False
    assert torch.equal(fill_holes(diagonal), expected)
    assert torch.equal(fill_holes(torch.zeros(2, 5, 5, dtype=torch.bool)), torch.zeros(2, 5, 5, dtype=torch.bool))
    assert fill_holes(torch.ones(1, 5, 5, dtype=torch.bool)).all()


# ---------------------------------------------------------------- the annotator

def test_motion_masks_find_a_flat_square_moving_over_a_still_texture_exactly():
    """The difference of two frames shows only the square's leading and trailing rims (its inside
    keeps its colour); closing, filling and intersecting the pairs before and after give the square."""
    videos, masks = sliding_square()
    rims = frame_difference(videos[:, 0], videos[:, 1]) > 30
    assert torch.equal(rims, masks[:, 0] ^ masks[:, 1])             # not the square: its two rims
    found = motion_masks(videos)
    assert found.shape == (3, 4, 24, 24) and found.dtype == torch.bool
    assert torch.equal(found, masks[:, 1:-1])                       # [:, i] is frame i + 1
    assert torch.equal(motion_mask(videos[:, 1], videos[:, 2], videos[:, 3]), masks[:, 2])
    assert torch.equal(changed_region(videos[:, 1], videos[:, 2]), masks[:, 1] | masks[:, 2])
    # Without the closing the rims stay rims; float frames in [0, 1] give the same masks as uint8.
    assert not torch.equal(motion_masks(videos, radius=0), masks[:, 1:-1])
    assert torch.equal(motion_masks(videos.float() / 255), found)
    still = videos[:, :1].expand(-1, 5, -1, -1, -1)
    assert not motion_masks(still).any()                            # nothing moves, nothing is found


def test_motion_masks_on_the_worlds_videos_beat_every_mask_that_ignores_the_frame(small_videos):
    """Measured: IoU 0.67 on these test videos; all-foreground 0.14, the best centred disk 0.37."""
    found = motion_masks(small_videos.test_videos)                  # (N, 6, 16, 16)
    true = true_masks(small_videos, "test", slice(1, -1))
    iou = mask_iou(found.flatten(0, 1), true.flatten(0, 1)).mean().item()
    trivial = frame_blind_iou(true)
    assert iou > trivial + 0.15 and iou > 0.55, f"motion masks IoU {iou:.3f}, best trivial mask {trivial:.3f}"
    assert torch.equal(found, motion_masks(small_videos.test_videos))          # deterministic


@pytest.mark.parametrize("call,error,message", [
    (lambda: motion_masks(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)), ValueError, "must have 5 dimensions"),
    (lambda: motion_masks(torch.zeros(2, 2, 3, 8, 8, dtype=torch.uint8)), ValueError, "at least 3 frames"),
    (lambda: motion_masks(torch.zeros(2, 3, 3, 8, 8, dtype=torch.long)), TypeError, "uint8 .0..255. or float"),
    (lambda: motion_masks([[0]]), TypeError, "must be a torch.Tensor"),
    (lambda: motion_masks(torch.zeros(2, 3, 3, 8, 8), threshold=-1), ValueError,
     r"threshold must be a number in \[0, 765\)"),
    (lambda: motion_masks(torch.zeros(2, 3, 3, 8, 8), radius=1.5), ValueError, "radius must be an int >= 0"),
    (lambda: frame_difference(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9)), ValueError, "same shape"),
    (lambda: mask_iou(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool)), ValueError, "bool masks"),
])
def test_the_annotator_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mask_iou_per_image():
    a = torch.zeros(3, 2, 2, dtype=torch.bool)
    b = a.clone()
    a[0, 0], b[0, :, 0] = True, True                                 # 1 of 3 pixels shared
    a[1], b[1] = True, True
    assert torch.allclose(mask_iou(a, b), torch.tensor([1 / 3, 1.0, 1.0]))   # both empty: 1


# ---------------------------------------------------------------- the segmenter (Pathak et al.)

def test_segmenter_pseudo_labels_are_a_frame_and_its_motion_mask():
    videos, masks = sliding_square(n=40, frames=6)
    frames, pseudo = motion_mask_examples(videos, gen(3))
    assert frames.shape == (40, 3, 24, 24) and pseudo.shape == (40, 24, 24)
    drawn = []
    for i in range(40):
        t = next(t for t in range(6) if torch.equal(frames[i], videos[i, t]))
        assert torch.equal(pseudo[i], masks[i, t])                  # the annotator is exact on squares
        drawn.append(t)
    assert set(drawn) == {1, 2, 3, 4}                               # frames with a neighbour either side


def test_segmenter_is_registered_predicts_a_map_and_trains_with_the_one_trainer(small_videos, small_world):
    assert METHODS["motion_segmentation"] is MotionSegmentation
    torch.manual_seed(0)
    method = MotionSegmentation.for_data(build_backbone("convnet"), small_videos, decoder_width=16)
    assert method.hparams() == {"image_size": 16, "threshold": 30.0, "radius": 3, "decoder_width": 16}
    logits = method.predict(small_videos.train_images[:4])
    assert logits.shape == (4, 16, 16)
    index = torch.arange(8)
    loss = method.training_step(small_videos.train_images[index], gen(), index=index)
    frames, target = method.make_pseudo_labels(small_videos.train_videos[index], gen())
    reference = torch.nn.functional.binary_cross_entropy(torch.sigmoid(method.predict(frames)), target)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-4)   # the same draw, the same loss
    loss.backward()
    assert method.backbone.blocks[0][0].weight.grad.abs().sum() > 0 and method.decoder.project.weight.grad is not None
    history = train(method, small_videos, epochs=1, batch_size=64, seed=0, knn_every=1, progress=False)
    assert len(history["loss"]) == 1 and math.isfinite(history["loss"][0]) and len(history["knn"]) == 1
    assert method.segment(small_videos.test_images).dtype == torch.bool
    assert 0 <= segmentation_iou(method, small_videos.test_videos[:5], small_videos.extras["test"]["masks"][:5]) <= 1
    with pytest.raises(ValueError, match=r"object_maps must be \(N, T, H, W\)"):
        segmentation_iou(method, small_videos.test_videos[:5], small_videos.extras["test"]["masks"][:4])
    with pytest.raises(ValueError, match="built for 16 px frames, got 24 px"):
        method.make_pseudo_labels(sliding_square()[0], gen())
    with pytest.raises(ValueError, match="--dataset videos"):
        MotionSegmentation.for_data(build_backbone("convnet"), small_world)
    with pytest.raises(ValueError, match="threshold must be"):
        MotionSegmentation(build_backbone("convnet"), 16, threshold=1000)


# ---------------------------------------------------------------- the correspondence loss

def pair_loss_loop(first, second, partner, head):
    """Each anchor i: its own pair (i, i) is class 1, (i, partner[i]) class 0; -log softmax of the class, averaged."""
    total, n = 0.0, len(first)
    for i in range(n):
        for j, label in ((i, 1), (int(partner[i]), 0)):
            logits = head(torch.cat([first[i], second[j]])[None])[0].tolist()
            total += -logits[label] + math.log(sum(math.exp(v) for v in logits))
    return total / (2 * n)


def test_pair_correspondence_loss_matches_a_loop_and_has_exact_gradients():
    g = gen(4)
    first = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    second = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    partner = derangement(6, gen(5))
    loss = pair_correspondence_loss(first, second, partner, head)
    assert loss.item() == pytest.approx(pair_loss_loop(first.detach(), second.detach(), partner, head), rel=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: pair_correspondence_loss(a, b, partner, head), (first, second))
    # A head that knows the answer: the logit of "same" is the features' agreement.
    same = torch.eye(6, dtype=torch.float64)

    class Agreement(torch.nn.Module):
        def forward(self, pairs):
            score = 50 * (pairs[:, :6] * pairs[:, 6:]).sum(1) - 25
            return torch.stack([-score, score], 1)
    loss, accuracy = pair_correspondence_loss(same, same, partner, Agreement(), return_accuracy=True)
    assert loss.item() < 1e-9 and accuracy == 1.0


def test_derangement_pairs_every_clip_with_another_uniformly():
    counts = torch.zeros(5, 5)
    for seed in range(400):
        partner = derangement(5, gen(seed))
        assert (partner != torch.arange(5)).all()
        counts[torch.arange(5), partner] += 1
    assert counts.diagonal().sum() == 0 and counts.sum(1).eq(400).all()
    off = counts[~torch.eye(5, dtype=torch.bool)]
    assert off.min() > 60 and off.max() < 140                       # 100 each expected
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, gen())


@pytest.mark.parametrize("partner,message", [
    (torch.tensor([1, 1, 3, 2]), r"partner\[i\] != i"),
    (torch.tensor([1, 0, 3]), "for each of the 4 clips"),
    (torch.tensor([1, 0, 3, 4]), r"integers in \[0, 4\)"),
    (torch.tensor([1.0, 0.0, 3.0, 2.0]), "integers"),
])
def test_pair_correspondence_loss_rejects_bad_partners(partner, message):
    head = torch.nn.Linear(5, 2)
    with pytest.raises(ValueError, match=message):
        pair_correspondence_loss(torch.randn(4, 2), torch.randn(4, 3), partner, head)


def test_pair_correspondence_loss_rejects_bad_features_and_heads():
    partner = torch.tensor([1, 0])
    with pytest.raises(ValueError, match="same N >= 2 clips"):
        pair_correspondence_loss(torch.randn(2, 2), torch.randn(3, 3), partner, torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"head must map \(M, 5\) pairs to \(M, 2\) logits"):
        pair_correspondence_loss(torch.randn(2, 2), torch.randn(2, 3), partner, torch.nn.Linear(5, 1))
    with pytest.raises(TypeError, match="floating-point"):
        pair_correspondence_loss(torch.ones(2, 2, dtype=torch.long), torch.randn(2, 3), partner, torch.nn.Linear(5, 2))


# ---------------------------------------------------------------- RGB-flow correspondence

def numbered_flows(n=30, frames=6, size=4):
    """Videos and flows whose values say which clip and frame they come from (channel 0 / dx: the frame)."""
    videos = torch.zeros(n, frames, 3, size, size, dtype=torch.uint8)
    videos[:, :, 0] = torch.arange(frames, dtype=torch.uint8).view(1, frames, 1, 1)
    videos[:, :, 1] = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    flows = torch.zeros(n, frames - 1, 2, size, size)
    flows[:, :, 0] = torch.arange(frames - 1, dtype=torch.float32).view(1, -1, 1, 1)
    flows[:, :, 1] = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    return videos, flows


def test_frame_flow_pairs_give_each_frame_its_own_flow():
    videos, flows = numbered_flows(200)
    frames, flow = frame_flow_pairs(videos, flows, gen(6))
    assert frames.shape == (200, 3, 4, 4) and flow.shape == (200, 2, 4, 4)
    assert torch.equal(frames[:, 1, 0, 0].float(), torch.arange(200.0))                # each clip its own
    assert torch.equal(flow[:, 1, 0, 0], torch.arange(200.0))
    assert torch.equal(frames[:, 0, 0, 0].float(), flow[:, 0, 0, 0])                   # the flow of that frame
    assert set(frames[:, 0, 0, 0].tolist()) == set(range(5))                          # never the last frame
    with pytest.raises(ValueError, match="one flow field per frame but the last"):
        frame_flow_pairs(videos, flows[:, :-1], gen())
    with pytest.raises(ValueError, match=r"\(N, T-1, 2, H, W\) forward flows"):
        check_flows(torch.zeros(2, 3, 3, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        check_flows(torch.zeros(2, 3, 2, 4, 4, dtype=torch.long))


def test_rgb_flow_is_registered_and_trains_all_three_networks(small_videos, small_world):
    assert METHODS["rgb_flow"] is RGBFlowCorrespondence
    torch.manual_seed(0)
    method = RGBFlowCorrespondence.for_data(build_backbone("convnet"), small_videos)
    assert method.flows.shape == (300, 7, 2, 16, 16)
    index = torch.tensor([4, 0, 9, 2])
    loss = method.training_step(small_videos.train_images[index], gen(), index=index)
    loss.backward()
    assert math.isfinite(loss.item())
    for net in (method.backbone, method.flow_net, method.head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    history = train(method, small_videos, epochs=1, batch_size=64, seed=0, knn_every=1, progress=False)
    assert math.isfinite(history["loss"][0]) and len(history["knn"]) == 1
    flows = torch.as_tensor(small_videos.extras["test"]["flow"])
    accuracy = method.correspondence_accuracy(small_videos.test_videos, flows, gen(7))
    assert accuracy == method.correspondence_accuracy(small_videos.test_videos, flows, gen(7))   # one seed, one score
    assert 0 <= accuracy <= 1
    with pytest.raises(ValueError, match="--dataset videos"):
        RGBFlowCorrespondence.for_data(build_backbone("convnet"), small_world)
    with pytest.raises(RuntimeError, match="no training videos and flows"):
        RGBFlowCorrespondence(build_backbone("convnet")).training_step(small_videos.train_images[:4], gen(),
                                                                       index=torch.arange(4))
    with pytest.raises(ValueError, match="one flow field per frame"):
        RGBFlowCorrespondence(build_backbone("convnet"), small_videos.train_videos, method.flows[:10])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["motion_segmentation", "rgb_flow"])
def test_a_step_is_deterministic_and_runs_on_the_batchs_device(name, device, small_videos):
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        method = METHODS[name].for_data(build_backbone("convnet"), small_videos).to(device)
        index = torch.arange(16, device=device)
        loss = method.training_step(small_videos.train_images[:16].to(device), gen(8), index=index)
        assert loss.device.type == device and loss.ndim == 0 and torch.isfinite(loss)
        losses.append(loss.item())
    assert losses[0] == losses[1]                                   # one seed, one batch of pseudo labels
    if name == "motion_segmentation":
        first, again = (method.make_pseudo_labels(small_videos.train_videos[:16].to(device), gen(9)) for _ in range(2))
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        assert first[1].device.type == device


@pytest.mark.parametrize("name", ["motion_segmentation", "rgb_flow"])
def test_pretrain_command_runs_on_videos(name, tmp_path):
    out = tmp_path / "run"
    code = main(["pretrain", "--method", name, "--dataset", "videos", "--epochs", "1", "--batch-size", "16",
                 "--n-train", "48", "--n-test", "32", "--device", "cpu", "--out", str(out), "--no-progress",
                 "--data-dir", str(tmp_path / "data")])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["method"], results["dataset"]) == (name, "videos")
    assert set(results["pretrained"]) == {"knn", "linear_1pct", "linear_10pct", "linear_100pct"}


# ---------------------------------------------------------------- learning on the world's videos (slow)
#
# 2000 videos of 8 frames at 16 px, objects at 0.05-0.1 of the side per frame (as in
# test_temporal_pretext.py), default batch 128 and learning rate, 5 epochs, 1 thread.
# Measured over training seeds 0, 1, 2:
# - motion_segmentation: IoU with the TRUE object maps on every frame of the 500 test videos
#   0.587, 0.586, 0.599 (the annotator itself, which sees three frames: 0.66 on frames 1..6;
#   on every frame all-foreground 0.14, the best centred disk 0.35); a linear probe of the class
#   from the backbone 0.204 -> 0.312, 0.206 -> 0.294, 0.176 -> 0.300 (random init with the data's batch-norm
#   statistics -> trained); about 6 s of training.
# - rgb_flow: correspondence accuracy on the test clips 0.882, 0.877, 0.884 (chance 0.5); the class
#   probe moves less, 0.204 -> 0.288, 0.206 -> 0.242, 0.176 -> 0.206, so it is not tested; 4.5 s.

@pytest.fixture(scope="module")
def videos_16px(tmp_path_factory):
    return load_videos(n_train=2000, n_test=500, seed=0, image_size=16, frames=8, speed_range=(0.05, 0.1),
                       root=tmp_path_factory.mktemp("videos16"))


@pytest.mark.slow
def test_the_segmenter_draws_the_true_objects_from_one_frame_and_its_features_beat_random_init(videos_16px):
    torch.manual_seed(0)
    method = MotionSegmentation.for_data(build_backbone("convnet"), videos_16px)
    baseline = with_data_statistics(method.backbone, videos_16px.train_images)
    train(method, videos_16px, epochs=5, seed=0, knn_every=0, progress=False)
    iou = segmentation_iou(method, videos_16px.test_videos, videos_16px.extras["test"]["masks"])
    trivial = frame_blind_iou(true_masks(videos_16px, "test"))
    assert iou > trivial + 0.1, f"IoU with the true masks {iou:.3f}, best mask that ignores the frame {trivial:.3f}"
    before, after = class_probe(baseline, videos_16px), class_probe(method.backbone, videos_16px)
    assert after > before + 0.04, f"linear probe {before:.3f} at random init, {after:.3f} after segmentation"


@pytest.mark.slow
def test_rgb_flow_tells_a_frames_own_flow_from_another_clips_on_held_out_videos(videos_16px):
    torch.manual_seed(0)
    method = RGBFlowCorrespondence.for_data(build_backbone("convnet"), videos_16px)
    train(method, videos_16px, epochs=5, seed=0, knn_every=0, progress=False)
    flows = torch.as_tensor(videos_16px.extras["test"]["flow"])
    accuracy = method.correspondence_accuracy(videos_16px.test_videos, flows, gen(123))
    assert accuracy > 0.7, f"correspondence accuracy {accuracy:.3f} on held-out clips (chance 0.5)"
