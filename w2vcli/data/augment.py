"""Waveform augmentation of fine-tuning's training audio: speed perturbation and additive noise.

    speed perturbation  each utterance is played at one of the speed factors (0.9/1.0/1.1, say),
                        drawn anew every epoch: resampled as if recorded at factor × 16 kHz, so
                        tempo and pitch change together, as `sox speed` does; 0.9 lasts 1/0.9 as long
    additive noise      with probability `noise_prob`, noise at an SNR drawn uniformly from
                        [snr_min, snr_max] dB against the (perturbed) utterance's own power: white,
                        pink (1/f power) or brown (1/f²) noise, or a random stretch of a file from a
                        folder of noise recordings (long files cropped, short ones looped)

Every draw is a pure function of (seed, epoch, utterance index): the speed factors of an epoch
come from (seed, epoch), an utterance's noise from (seed, epoch, index). So the audio does not
depend on worker processes or on any random state a checkpoint would have to carry, and a
resumed run sees exactly the audio an uninterrupted one would. The batch sampler reads the same
factors to make each epoch's batches from the perturbed lengths (`AudioDataset.epoch_sizes`).

Written on soxr and numpy rather than a library such as audiomentations: its transforms draw their
parameters from the process-wide `random`/`np.random` state (not from a key per utterance), and it
has no `sox speed` (its TimeStretch keeps the pitch), so the two operations are kept small here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from w2vcli.audio import SAMPLE_RATE, audio_info, load_audio, load_audio_segment
from w2vcli.data.folder import audio_extensions
from w2vcli.errors import W2VError
from w2vcli.utils import warn

NOISE_COLOURS = ("white", "pink", "brown")
SPEED_STREAM, NOISE_STREAM = 1, 2  # last entry of the seed keys, so the streams never coincide (nor with crops')
RESAMPLE_MARGIN = 64  # extra source frames read from a noise file that gets resampled


def speed_length(num_samples, factor):
    """Samples of audio of `num_samples` after speed perturbation by `factor` (scalars or arrays):
    round(S / factor), which is what soxr returns."""
    return np.rint(np.asarray(num_samples) / np.asarray(factor)).astype(np.int64)


def speed_perturb(wav: np.ndarray, factor: float) -> np.ndarray:
    """`wav` [S] played `factor` times as fast (tempo and pitch): [speed_length(S, factor)] float32."""
    if factor == 1.0:
        return wav
    out = soxr.resample(wav, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ")
    n = int(speed_length(len(wav), factor))
    return np.ascontiguousarray(np.pad(out[:n], (0, max(0, n - len(out)))), dtype=np.float32)


def coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise [n] whose power falls as 1/f^0 (white), 1/f (pink) or 1/f² (brown), no DC."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= f ** (0.5 if colour == "pink" else 1.0)  # amplitude ∝ f^-1/2 (pink), f^-1 (brown)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


@dataclass(frozen=True)
class NoiseFile:
    path: str
    num_samples: int  # at the file's own rate
    sample_rate: int
    mp3: bool  # decoded whole (an MP3's seeking is not exact)


def scan_noise_folder(folder: str, quiet: bool = False) -> tuple[NoiseFile, ...]:
    """The readable audio files under `folder` (any format `w2v` reads), sorted by path.

    Unreadable ones are left out with one warning (unless `quiet`: ranks other than the first);
    a folder with none is a W2VError naming it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise W2VError(f"--noise {folder}: neither {', '.join(NOISE_COLOURS)} nor a folder")
    exts = audio_extensions()
    paths = sorted(str(Path(d) / f) for d, _, names in os.walk(root) for f in names if Path(f).suffix.lower() in exts)
    files, bad = [], []
    for p in paths:
        try:
            info = audio_info(p)
        except W2VError as exc:
            bad.append(str(exc))
            continue
        files.append(NoiseFile(p, info.num_samples, info.sample_rate, info.format == "MP3"))
    if not files:
        found = (f"{len(paths)} audio files, none readable ({bad[0]})" if bad
                 else "no audio files by their extension: .wav, .flac, .ogg, .mp3 and the others soundfile reads")
        raise W2VError(f"--noise {folder}: no readable noise audio in this folder ({found})")
    if bad and not quiet:
        warn(f"--noise {folder}: leaving out {len(bad)} of {len(paths)} files that cannot be read, e.g. {bad[0]}")
    return tuple(files)


def noise_from_file(f: NoiseFile, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples at 16 kHz of noise file `f` from a random offset: a long file is read in part,
    a short one (or an MP3) decoded whole and looped from the offset."""
    resample = f.sample_rate != SAMPLE_RATE
    need = math.ceil(n * f.sample_rate / SAMPLE_RATE) + (RESAMPLE_MARGIN if resample else 0)  # source frames
    if f.num_samples >= need and not f.mp3:
        start = int(rng.integers(0, f.num_samples - need + 1))
        x = load_audio_segment(f.path, start, need)
        return soxr.resample(x, f.sample_rate, SAMPLE_RATE, quality="HQ")[:n] if resample else x
    x = load_audio(f.path)  # [S'] at 16 kHz
    start = int(rng.integers(0, len(x)))
    return x[(start + np.arange(n)) % len(x)]


@dataclass(frozen=True)
class Augment:
    """What to do to each training utterance (`AudioDataset` applies it; validation never does)."""

    seed: int
    speeds: tuple[float, ...] = ()  # speed factors, one drawn uniformly per utterance and epoch; () = none
    noise: str = ""  # "", white, pink, brown, or a folder of noise recordings
    snr: tuple[float, float] = (10.0, 30.0)  # dB, drawn uniformly per noised utterance
    noise_prob: float = 0.5  # share of utterances that get noise
    noise_files: tuple[NoiseFile, ...] = ()  # the folder's files (`scan_noise_folder`)

    @classmethod
    def from_options(cls, seed: int, speeds=(), noise: str = "", snr=(10.0, 30.0), noise_prob: float = 0.5,
                     quiet: bool = False) -> Augment | None:
        """None when there is nothing to do; a noise folder is scanned here, once, not in every worker."""
        speeds = tuple(float(s) for s in speeds)
        if set(speeds) <= {1.0} and not (noise and noise_prob > 0):
            return None
        files = scan_noise_folder(noise, quiet) if noise and noise not in NOISE_COLOURS else ()
        return cls(seed, speeds if set(speeds) - {1.0} else (), noise, (float(snr[0]), float(snr[1])),
                   float(noise_prob), files)

    @property
    def slowest(self) -> float:
        """The smallest speed factor: the one that lengthens audio most (1.0 without perturbation)."""
        return min(self.speeds, default=1.0)

    def longest_input(self, max_tokens: int) -> int:
        """The longest audio (samples) whose slowest perturbation still fits in `max_tokens`."""
        n = int(max_tokens * min(self.slowest, 1.0))
        while speed_length(n, self.slowest) > max_tokens:
            n -= 1
        return n

    def speed_factors(self, epoch: int, n: int) -> np.ndarray:
        """[n] the speed factor of every utterance in `epoch`, from (seed, epoch) alone."""
        if not self.speeds:
            return np.ones(n)
        pick = np.random.default_rng([self.seed, epoch, 0, SPEED_STREAM]).integers(len(self.speeds), size=n)
        return np.asarray(self.speeds, dtype=np.float64)[pick]

    def add_noise(self, wav: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """`wav` [S] with noise added (or as it is, for the 1 - noise_prob left clean), from (seed, epoch, index)."""
        if not self.noise:
            return wav
        rng = np.random.default_rng([self.seed, epoch, index, NOISE_STREAM])
        if rng.random() >= self.noise_prob:
            return wav
        snr = rng.uniform(*self.snr) if self.snr[1] > self.snr[0] else self.snr[0]
        if self.noise_files:
            noise = noise_from_file(self.noise_files[int(rng.integers(len(self.noise_files)))], len(wav), rng)
        else:
            noise = coloured_noise(self.noise, len(wav), rng)
        signal_power = float(np.mean(wav.astype(np.float64) ** 2))
        noise_power = float(np.mean(noise.astype(np.float64) ** 2))
        if signal_power == 0.0 or noise_power == 0.0:  # silence: no SNR to keep; a silent noise file
            return wav
        gain = math.sqrt(signal_power / (noise_power * 10.0 ** (snr / 10.0)))
        return (wav + gain * noise).astype(np.float32)

    def describe(self, max_tokens: int) -> str:
        """One line saying what is done to the training audio (the run logs it)."""
        return "augmenting the training audio: " + self.summary(max_tokens) + " (validation is not augmented)"

    def summary(self, max_tokens: int | None = None) -> str:
        """What is done to the training audio, in words; with `max_tokens`, which utterances the
        slowest speed makes too long (the demo's results page says it without)."""
        parts = []
        if self.speeds:
            line = f"speed {'/'.join(f'{s:g}' for s in self.speeds)}"
            if self.slowest < 1 and max_tokens is not None:
                line += (f" (utterances over {self.longest_input(max_tokens)} samples are skipped, so that "
                         f"×{self.slowest:g} fits --max-tokens {max_tokens})")
            parts.append(line)
        if self.noise and self.noise_prob > 0:
            source = (f"{self.noise} noise" if not self.noise_files
                      else f"noise from {len(self.noise_files)} files in {self.noise}")
            snr = f"{self.snr[0]:g}-{self.snr[1]:g} dB" if self.snr[1] > self.snr[0] else f"{self.snr[0]:g} dB"
            parts.append(f"{source} at {snr} SNR on {self.noise_prob:.0%} of utterances")
        return "; ".join(parts)
