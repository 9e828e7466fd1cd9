"""Sounds of the world: written from the scenes, deterministic, pitch = class, loudness and timbre = size."""
import numpy as np
import pytest
import torch

from sslcourse.data import ImageDataset, subset
from sslcourse.data.sound import (FRAME_SAMPLES, HARMONICS, PITCHES, SAMPLE_RATE, SAMPLES, dominant_frequency,
                                  hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_to_hz, scene_sources, sources,
                                  sound_generator, stereo_gains, synthesize, video_sounds, world_sounds,
                                  world_sources)
from sslcourse.data.video import load_videos
from sslcourse.data.world import load_world, sample_scenes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return load_world(n_train=200, n_test=100, seed=0, image_size=16, root=tmp_path_factory.mktemp("data"))


def clean(cls, scale):
    """One clip per (class, scale), one object each, without noise or distractor."""
    params = sources(np.array(cls)[:, None], np.array(scale, dtype=np.float32)[:, None], np.ones((len(cls), 1)))
    return synthesize(params, torch.Generator().manual_seed(0), noise=0.0, distractor=0.0)


def spectrum(waves):
    """(N, T) -> (N, T // 2 + 1) magnitude spectrum of the whole clip; bins SAMPLE_RATE / T = 4 Hz apart."""
    return torch.fft.rfft(waves * torch.hann_window(waves.shape[1]), dim=1).abs()


def test_world_sounds_are_deterministic_and_depend_on_seed_and_split(world):
    first = world_sounds(world, "train", seed=0)
    assert first.shape == (200, SAMPLES) and first.dtype == torch.float32
    assert torch.equal(first, world_sounds(world, "train", seed=0))
    assert not torch.allclose(first, world_sounds(world, "train", seed=1))
    again = load_world(n_train=200, n_test=100, seed=0, image_size=16, cache=False)
    assert torch.equal(world_sounds(again, "test", seed=3), world_sounds(world, "test", seed=3))
    assert world_sounds(world, "test").shape == (100, SAMPLES)


def test_world_sources_are_the_scenes_sources(world):
    # The world's seed streams, drawn again, give the scenes whose free labels the sounds read.
    for split_id, split in enumerate(("train", "test")):
        n = len(getattr(world, f"{split}_images"))
        scenes = sample_scenes(n, np.random.SeedSequence([0, split_id]), world.extras["config"])
        torch.testing.assert_close(world_sources(world, split), scene_sources(scenes))
    params = world_sources(world)
    torch.testing.assert_close(params[:, 0, 0], torch.tensor(PITCHES, dtype=torch.float32)[world.train_labels])
    torch.testing.assert_close(params[:, 0, 1], torch.from_numpy(world.extras["train"]["scale"]))


def test_the_dominant_frequency_is_the_pitch_of_the_class(world):
    waves = world_sounds(world, "train", seed=0)                       # with noise and distractor
    found = dominant_frequency(waves)
    pitch = torch.tensor(PITCHES, dtype=torch.float32)[world.train_labels]
    assert ((found - pitch).abs() <= SAMPLE_RATE / SAMPLES).all()      # within one 4 Hz bin
    # Neighbouring classes lie 3 semitones apart: the pitch alone tells every class.
    assert np.diff(np.log2(PITCHES)).min() == pytest.approx(0.25)


def test_loudness_grows_with_size_and_large_objects_ring_with_more_overtones():
    scales = [0.2, 0.3, 0.45, 0.6, 0.75]
    waves = clean([4] * len(scales), scales)
    rms = waves.pow(2).mean(dim=1).sqrt()
    assert (rms.diff() > 0).all(), rms
    # Harmonic h has amplitude scale * h^(-1/scale) relative to a unit fundamental.
    mag = spectrum(waves)
    f0 = PITCHES[4]
    bin_of = lambda f: int(round(f * SAMPLES / SAMPLE_RATE))  # noqa: E731
    fundamental, second = mag[:, bin_of(f0)], mag[:, bin_of(2 * f0)]
    expected = torch.tensor([2 ** (-1 / s) for s in scales])
    torch.testing.assert_close(second / fundamental, expected, rtol=0.05, atol=1e-3)
    torch.testing.assert_close(fundamental / fundamental[-1], torch.tensor(scales) / scales[-1], rtol=0.02, atol=0)
    # No harmonic above Nyquist: the highest class's spectrum is empty beyond its last allowed harmonic.
    top = clean([9], [0.75])
    last = max(h for h in range(1, HARMONICS + 1) if h * PITCHES[9] < SAMPLE_RATE / 2)
    assert spectrum(top)[0, bin_of(last * PITCHES[9]) + 10:].max() < 1e-3 * spectrum(top).max()


def test_every_object_of_a_scene_sounds_and_absent_ones_are_silent(tmp_path):
    data = load_world(n_train=60, n_test=10, seed=1, image_size=16, max_objects=3, root=tmp_path)
    params = world_sources(data)
    present = torch.from_numpy(data.extras["train"]["obj_present"])
    assert params.shape == (60, 3, 3)
    assert (params[~present] == 0)[:, :2].all() and (params[present][:, :2] > 0).all()
    mag = spectrum(synthesize(params, torch.Generator().manual_seed(0), noise=0.0, distractor=0.0))
    floor = mag.median(dim=1).values
    for i, k in present.nonzero().tolist():
        peak = mag[i, int(round(params[i, k, 0].item() * SAMPLES / SAMPLE_RATE))]
        assert peak > 100 * floor[i]


def test_video_sounds_pan_each_object_with_its_motion(tmp_path):
    videos = load_videos(n_train=40, n_test=10, seed=0, image_size=16, frames=6, root=tmp_path)
    sound = video_sounds(videos, "train", seed=0)
    assert sound.shape == (40, 2, 6 * FRAME_SAMPLES)
    assert torch.equal(sound, video_sounds(videos, "train", seed=0))
    assert not torch.allclose(sound, video_sounds(videos, "train", seed=1))
    labels = videos.extras["train"]
    x, velocity = labels["obj_x"], labels["velocity"]
    gains = stereo_gains(x, velocity, 6)
    torch.testing.assert_close(gains.pow(2).sum(dim=2), torch.ones(40, 1, 6 * FRAME_SAMPLES))   # equal power
    # Without noise, right / left loudness in frame t is tan(pi/2 x_t), x_t the object's centre then.
    clean = synthesize(world_sources(videos), torch.Generator().manual_seed(0), 0.0, 0.0, gains)
    for t in (0, 5):
        frame = clean[:, :, t * FRAME_SAMPLES + 300:(t + 1) * FRAME_SAMPLES - 300]      # around the frame's centre
        balance = frame.pow(2).mean(dim=2).sqrt()
        x_t = torch.from_numpy(x[:, 0] + t * velocity[:, 0, 0])
        torch.testing.assert_close(balance[:, 1] / balance[:, 0], torch.tan(torch.pi / 2 * x_t), rtol=0.05, atol=0)
    # The pitch is still the class's.
    assert ((dominant_frequency(sound.sum(dim=1)) - torch.tensor(PITCHES)[videos.train_labels].float()).abs()
            <= SAMPLE_RATE / (6 * FRAME_SAMPLES)).all()
    with pytest.raises(ValueError, match="VideoDataset"):
        video_sounds(load_world(n_train=10, n_test=10, image_size=16, cache=False))
    with pytest.raises(ValueError, match=r"gains must be \(N, K, C, L\)"):
        synthesize(world_sources(videos), torch.Generator(), gains=gains[:3])


def test_mel_filterbank_is_triangles_on_the_mel_scale():
    bank = mel_filterbank(n_fft=256, n_mels=40)
    assert bank.shape == (40, 129) and bank.min() >= 0 and bank.max() <= 1
    np.testing.assert_allclose(mel_to_hz(hz_to_mel([0.0, 440.0, 4000.0])), [0.0, 440.0, 4000.0])
    centres = mel_to_hz(np.linspace(0, hz_to_mel(4000), 42))[1:-1]
    bins = np.linspace(0, 4000, 129)
    peaks = bins[bank.argmax(dim=1).numpy()]
    assert np.all(np.abs(peaks - centres) <= 4000 / 128 / 2 + 1e-9)     # the nearest FFT bin
    assert (bank[:, (bins > centres[0]) & (bins < centres[-1])].sum(dim=0) > 0).all()   # no gap between bands
    # A pure tone lands in the band whose centre is nearest its frequency.
    t = torch.arange(SAMPLES) / SAMPLE_RATE
    for f in (300.0, 1000.0, 2500.0):
        spec = log_mel_spectrogram(torch.sin(2 * torch.pi * f * t)[None])
        assert spec.shape == (1, 40, 1 + SAMPLES // 64)
        assert abs(centres[spec[0, :, 16].argmax().item()] - f) <= np.diff(centres).max()


def test_thousands_of_sounds_and_spectrograms_stay_small_and_finite(world):
    params = world_sources(world).repeat(10, 1, 1)                      # 2,000 scenes
    waves = synthesize(params, torch.Generator().manual_seed(0))
    spec = log_mel_spectrogram(waves)
    assert spec.shape == (2000, 40, 32) and torch.isfinite(spec).all()
    assert waves.abs().max() < 3


def test_sound_functions_reject_bad_input(world):
    plain = ImageDataset("plain", world.train_images, world.train_labels, world.test_images, world.test_labels,
                         world.classes)
    with pytest.raises(ValueError, match="load_world"):
        world_sounds(plain)
    with pytest.raises(ValueError, match="describes 200 scenes but the split has 50"):
        world_sources(subset(world, n_train=50))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        world_sources(world, "val")
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        sound_generator(-1)
    with pytest.raises(ValueError, match=r"one \(N, K\) shape"):
        sources(np.zeros((2, 1), int), np.ones((2, 2)), np.ones((2, 1), bool))
    with pytest.raises(ValueError, match="class in"):
        sources(np.full((2, 1), 10), np.ones((2, 1)), np.ones((2, 1), bool))
    with pytest.raises(ValueError, match="finite scale > 0"):
        sources(np.zeros((2, 1), int), np.full((2, 1), np.nan), np.ones((2, 1), bool))
    params, g = world_sources(world)[:4], torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        synthesize(params[..., :2], g)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        synthesize(params, 0)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        synthesize(params, g, noise=-0.1)
    with pytest.raises(ValueError, match="distractor must be a finite number >= 0"):
        synthesize(params, g, distractor=float("inf"))
    with pytest.raises(ValueError, match="2 dimensions"):
        log_mel_spectrogram(torch.zeros(SAMPLES))
    with pytest.raises(ValueError, match="at least n_fft = 256 samples"):
        log_mel_spectrogram(torch.zeros(2, 100))
    with pytest.raises(TypeError, match="scenes must be a Scenes"):
        scene_sources(world.extras["train"])
