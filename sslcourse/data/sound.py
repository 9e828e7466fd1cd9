"""Sounds of the world's scenes: every object hums its class, loud when near, over distractor noise.

A scene's sound is written from its parameters, as ``sslcourse.text`` writes its caption
(no rendering, the images stay as they are). Each present object k plays a harmonic tone:

    s_k(t) = a_k  e(t)  sum_h  h^(-b_k)  sin(2 pi h f_k t + phi_kh),   h = 1 .. 8, h f_k < Nyquist
    f_k = PITCHES[class_k]      pitch from the class: 220 Hz up in steps of 3 semitones
    b_k = 1 / scale_k           timbre from the size: a large object rings with more overtones
    a_k = scale_k               loudness from the apparent size: a nearer object looks bigger
                                and sounds louder (the world's only cue to distance)

``e(t)`` fades in and out over 10 ms (no clicks) and the phases phi are random. The scene's
sound is the sum over its objects plus two distractors that belong to no object: white noise
of standard deviation ``noise`` x U(0.5, 1), and an off-screen tone of log-uniform frequency
in [150, 1500] Hz and amplitude ``distractor`` x U(0, 1). Clips last 0.25 s at 8 kHz
(2,000 samples), enough for a 32-frame spectrogram: thousands of scenes take well under a second.

A video (``sslcourse.data.video``) sounds for 0.125 s per frame (``FRAME_SAMPLES``) in stereo:
each object is panned by its position as it moves, with equal power (left, right) =
(cos, sin)(pi/2 x_t), so the sound follows the object across the screen (``video_sounds``).

Randomness (phases, noise, distractor) comes from a torch generator, so a seed gives the
same waveforms: ``world_sounds(data, split, seed)`` seeds it from (seed, split), and a
method may draw fresh noise every step from its own generator (``synthesize``).

``log_mel_spectrogram`` turns waveforms into (N, n_mels, frames) log-mel power: ``torch.stft``
with a Hann window, then triangular filters on the mel scale (HTK: mel = 2595 log10(1 + f/700)),
written out in ``mel_filterbank``.
"""
import numpy as np
import torch

from ..utils import check_dim, check_generator, check_tensor
from .world import CLASSES, Scenes, free_labels_of

SAMPLE_RATE = 8000                                                    # Hz
DURATION = 0.25                                                       # seconds
SAMPLES = int(SAMPLE_RATE * DURATION)                                 # 2,000
PITCHES = 220.0 * 2 ** (3 * np.arange(len(CLASSES)) / 12)            # Hz per class: 220 .. 1047
HARMONICS = 8
FRAME_SAMPLES = 1000                                                  # 0.125 s of a video per frame
FADE = 0.01                                                           # seconds of fade in and out
DISTRACTOR_RANGE = (150.0, 1500.0)                                    # Hz, off-screen tone
_SOUND_STREAM = 3                                                     # apart from the scenes' streams
_CHUNK = 256                                                          # scenes synthesised at once


def sources(cls, scale, present) -> torch.Tensor:
    """(N, K) classes, scales, presence -> (N, K, 3) float32 [pitch Hz, loudness, timbre exponent],
    zero for absent objects (silent)."""
    cls, scale, present = (np.asarray(a) for a in (cls, scale, present))
    if not (cls.shape == scale.shape == present.shape) or cls.ndim != 2:
        raise ValueError(f"cls, scale and present must share one (N, K) shape, "
                         f"got {cls.shape}, {scale.shape}, {present.shape}")
    present = present.astype(bool)
    if (present & ((cls < 0) | (cls >= len(CLASSES)))).any() or not np.isfinite(scale[present]).all() \
            or (scale[present] <= 0).any():
        raise ValueError(f"present objects need a class in [0, {len(CLASSES)}) and a finite scale > 0")
    pitch = np.where(present, PITCHES[np.clip(cls, 0, len(CLASSES) - 1)], 0.0)
    safe_scale = np.where(present, scale, 1.0)
    params = np.stack([pitch, np.where(present, safe_scale, 0.0), 1.0 / safe_scale], axis=-1)
    return torch.from_numpy(params.astype(np.float32))


def scene_sources(scenes: Scenes) -> torch.Tensor:
    """The (N, K, 3) sound sources of ``sample_scenes`` output."""
    if not isinstance(scenes, Scenes):
        raise TypeError(f"scenes must be a Scenes from sample_scenes, got {type(scenes).__name__}")
    return sources(scenes.cls, scenes.scale, scenes.present)


def world_sources(data, split: str = "train") -> torch.Tensor:
    """The (N, K, 3) sound sources of a split of a ``load_world`` data set, from its free labels."""
    labels = free_labels_of(data, split, ("obj_cls", "obj_scale", "obj_present"), "sounds")
    return sources(labels["obj_cls"], labels["obj_scale"], labels["obj_present"])


def _envelope(samples: int, device) -> torch.Tensor:
    t = torch.arange(samples, device=device, dtype=torch.float32)
    ramp = torch.clamp(torch.minimum(t, samples - 1 - t) / (FADE * SAMPLE_RATE), max=1.0)
    return torch.sin(ramp * torch.pi / 2) ** 2                           # (samples,)


def _check_amplitude(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0 (an amplitude), got {value!r}")


def synthesize(params: torch.Tensor, generator: torch.Generator, noise: float = 0.05,
               distractor: float = 0.1, gains: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K, 3) sources (``sources``) -> (N, SAMPLES) float32 waveforms, drawing phases and
    distractors from ``generator`` (CPU), on the device of ``params``.

    ``gains`` (N, K, C, L), optional: each object's gain in each of C output channels at each of
    L samples (``video_sounds`` pans stereo with it); the result is then (N, C, L), with the
    off-screen tone in every channel at 1 / sqrt(C) and independent white noise per channel.
    """
    check_tensor(params, "params", ndim=3, floating=True)
    if params.shape[-1] != 3:
        raise ValueError(f"params must be (N, K, 3) [pitch, loudness, timbre], got {tuple(params.shape)}")
    check_generator(generator)
    _check_amplitude(noise, "noise"), _check_amplitude(distractor, "distractor")
    n, k, _ = params.shape
    if gains is not None:
        check_tensor(gains, "gains", ndim=4, floating=True)
        if gains.shape[:2] != (n, k) or gains.shape[-1] < 2 * FADE * SAMPLE_RATE:
            raise ValueError(f"gains must be (N, K, C, L) = ({n}, {k}, C, L) with L >= {int(2 * FADE * SAMPLE_RATE)} "
                             f"samples, got {tuple(gains.shape)}")
    channels, samples = (1, SAMPLES) if gains is None else gains.shape[2:]
    device = params.device
    draw = lambda *shape: torch.rand(*shape, generator=generator).to(device)  # noqa: E731
    pitch, loudness, timbre = params.float().unbind(-1)                        # (N, K) each
    h = torch.arange(1, HARMONICS + 1, device=device, dtype=torch.float32)    # (H,)
    freq = pitch[..., None] * h                                                # (N, K, H)
    weight = h ** -timbre[..., None] * (freq < SAMPLE_RATE / 2)               # (N, K, H), no aliasing
    t = torch.arange(samples, device=device, dtype=torch.float32) / SAMPLE_RATE
    phase = 2 * torch.pi * draw(n, k, HARMONICS)
    amplitude = loudness[..., None] * weight                                   # (N, K, H)
    tone = torch.empty(n, channels, samples, device=device)
    rows = max(1, 2 ** 22 // (k * HARMONICS * samples))   # (N, K, H, L) sines at once would take gigabytes
    for start in range(0, n, rows):
        part = slice(start, start + rows)
        waves = torch.sin(2 * torch.pi * freq[part, ..., None] * t + phase[part, ..., None])  # (n, K, H, L)
        objects = torch.einsum("nkh,nkht->nkt", amplitude[part], waves)                      # (n, K, L)
        tone[part] = objects.sum(1, keepdim=True) if gains is None else \
            torch.einsum("nkt,nkct->nct", objects, gains[part].to(device))
    low, high = np.log(DISTRACTOR_RANGE[0]), np.log(DISTRACTOR_RANGE[1])
    off_freq = torch.exp(low + (high - low) * draw(n, 1))                     # (N, 1) Hz
    off_tone = distractor * draw(n, 1) * torch.sin(2 * torch.pi * off_freq * t + 2 * torch.pi * draw(n, 1))
    white = noise * (0.5 + 0.5 * draw(n, 1)) * torch.randn(n, channels * samples, generator=generator).to(device)
    mix = (tone + off_tone[:, None] / channels ** 0.5) * _envelope(samples, device) \
        + white.view(n, channels, samples)
    return mix[:, 0] if gains is None else mix


def sound_generator(seed: int, split: str = "train") -> torch.Generator:
    """The generator ``world_sounds`` uses: its own stream of (seed, split), apart from the scenes'."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    split_id = {"train": 0, "test": 1}[split]
    state = np.random.SeedSequence([int(seed), split_id, _SOUND_STREAM]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def world_sounds(data, split: str = "train", seed: int = 0, noise: float = 0.05,
                 distractor: float = 0.1) -> torch.Tensor:
    """(N, SAMPLES) float32: one 0.25 s clip per image of a split of a ``load_world`` data set,
    the same for the same seed."""
    params = world_sources(data, split)
    return synthesize(params, sound_generator(seed, split), noise, distractor)


def stereo_gains(x: np.ndarray, velocity: np.ndarray, frames: int, frame_samples: int = FRAME_SAMPLES) -> torch.Tensor:
    """Equal-power panning of objects moving along x: (N, K) x in frame 0, (N, K, 2) velocity per frame
    -> (N, K, 2, frames x frame_samples) gains (left, right) = (cos, sin)(pi/2 x_t), x_t at every sample
    (frame t sounds from sample t x frame_samples on; x moves linearly between frame centres). 0 where
    an object is absent (NaN x)."""
    x, vx = np.asarray(x, dtype=np.float64), np.asarray(velocity, dtype=np.float64)[..., 0]
    frames, frame_samples = check_dim(int(frames), "frames"), check_dim(frame_samples, "frame_samples")
    when = np.clip((np.arange(frames * frame_samples) + 0.5) / frame_samples - 0.5, 0, frames - 1)   # (L,) frames
    position = np.clip(x[..., None] + vx[..., None] * when, 0, 1)                                     # (N, K, L)
    gains = np.stack([np.cos(np.pi / 2 * position), np.sin(np.pi / 2 * position)], axis=2)            # (N, K, 2, L)
    return torch.from_numpy(np.nan_to_num(gains).astype(np.float32))


def video_sounds(data, split: str = "train", seed: int = 0, noise: float = 0.05, distractor: float = 0.1,
                 frame_samples: int = FRAME_SAMPLES) -> torch.Tensor:
    """(N, 2, T x frame_samples) float32 stereo sound of each clip of a ``load_videos`` data set: the
    world's sounds, each object panned from left to right as it moves (``stereo_gains``)."""
    if not hasattr(data, "train_videos"):
        raise ValueError(f"video sounds need a VideoDataset from sslcourse.data.video.load_videos, "
                         f"got {type(data).__name__}")
    params, labels = world_sources(data, split), data.extras[split]
    gains = stereo_gains(labels["obj_x"], labels["velocity"], data.frames, frame_samples)
    return synthesize(params, sound_generator(seed, split), noise, distractor, gains)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int = 256, n_mels: int = 40, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale from 0 to Nyquist,
    each peaking at 1 on its centre frequency."""
    check_dim(n_fft, "n_fft"), check_dim(n_mels, "n_mels"), check_dim(sample_rate, "sample_rate")
    edges = mel_to_hz(np.linspace(0, hz_to_mel(sample_rate / 2), n_mels + 2))   # (n_mels + 2,) Hz
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)                       # (F,) Hz
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising, falling = (bins - left) / (centre - left), (right - bins) / (right - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None).astype(np.float32))


def log_mel_spectrogram(waves: torch.Tensor, n_fft: int = 256, hop: int = 64, n_mels: int = 40,
                        eps: float = 1e-6) -> torch.Tensor:
    """(N, T) waveforms -> (N, n_mels, 1 + T // hop) log mel power (Hann window, centred frames)."""
    check_tensor(waves, "waves", ndim=2, floating=True)
    if waves.shape[1] < n_fft:
        raise ValueError(f"waves must be at least n_fft = {n_fft} samples long, got {waves.shape[1]}")
    window = torch.hann_window(n_fft, device=waves.device)
    spec = torch.stft(waves.float(), n_fft, hop, window=window, center=True, return_complex=True)  # (N, F, frames)
    mel = mel_filterbank(n_fft, n_mels).to(waves.device) @ spec.abs() ** 2                       # (N, n_mels, frames)
    return torch.log(mel + eps)


def dominant_frequency(waves: torch.Tensor) -> torch.Tensor:
    """(N, T) -> (N,) Hz: the peak of each clip's magnitude spectrum (whole clip, Hann window)."""
    check_tensor(waves, "waves", ndim=2, floating=True)
    spectrum = torch.fft.rfft(waves * torch.hann_window(waves.shape[1], device=waves.device), dim=1).abs()
    return spectrum.argmax(dim=1) * SAMPLE_RATE / waves.shape[1]
