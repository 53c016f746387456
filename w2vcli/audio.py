"""Audio I/O used everywhere: read with soundfile, mix down to mono, resample with soxr.

`audio_info` reads headers only (plus, by default, a few thousand samples at the very end of
the file, so a truncated file is caught cheaply at `prepare` time instead of halfway through
training). Every failure is a `W2VError` with one line naming the file.

MP3 (libsndfile >= 1.1 decodes it with mpg123). An MP3's length comes from its Xing/Info
header, which LAME and ffmpeg write when they write to a file. An MP3 written to a stream has
none; mpg123 then estimates the length from the first frame's bitrate, and libsndfile stops
decoding a file at that estimate, which can be a third of the audio. So w2v asks libsndfile,
reading the file through a pipe, whether it knows the length: if not, the file is decoded from
the pipe to its end (`_read_mp3_to_end`), by `load_audio` and by `audio_info`, whose
`num_samples` is then the decoded count. Either way `num_samples` is what `load_audio` returns.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open, quiet_stderr

SAMPLE_RATE = 16000  # Hz, what every model in w2v consumes
TAIL_FRAMES = 4096  # samples decoded at the end of a file to detect truncation
PIPE_BLOCK = 1 << 16  # bytes written to, and frames read from, the pipe at a time
_READ_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, OSError)
MPG123_NOISE = r"libmpg123"  # what libmpg123 prints on its own, e.g. "[src/libmpg123/layer3.c:...] error: ..."


@dataclass(frozen=True)
class AudioInfo:
    """What the header says about an audio file."""

    path: str
    num_samples: int  # frames at the file's own sample rate
    sample_rate: int  # Hz
    channels: int
    format: str  # soundfile's container name, e.g. "FLAC", "WAV"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # soundfile prefixes "Error opening 'path': " (or "Error opening <_io.BytesIO ...>: " for bytes);
    # the caller names the file already
    if text.startswith("Error opening <"):
        return text.split(">: ", 1)[-1]
    return text.split("': ", 1)[-1] if text.startswith("Error opening") else text


def audio_info(path: str | os.PathLike, check_end: bool = True) -> AudioInfo:
    """Header information of an audio file, validated.

    Raises `W2VError` when the file is missing, not audio soundfile can read, empty (0
    frames), or (with `check_end`) truncated: the last `TAIL_FRAMES` samples cannot be
    decoded, which for FLAC means the header promises more audio than the file holds.
    """
    path = str(path)
    _check_file(path)
    if os.path.getsize(path) == 0:
        raise W2VError(f"{path}: empty file")
    try:
        f = sf.SoundFile(path)
    except _READ_ERRORS as exc:
        raise W2VError(f"{path}: not readable audio ({_reason(exc)})") from None
    with f:
        info = AudioInfo(path, int(f.frames), int(f.samplerate), int(f.channels), str(f.format))
        try:
            whole = _read_mp3_to_end(path) if info.format == "MP3" else None
        except _READ_ERRORS as exc:
            raise W2VError(f"{path}: damaged, cannot be decoded to its end ({_reason(exc)})") from None
        if whole is not None:  # an MP3 without a length header: decoded whole, so nothing left to check
            info = AudioInfo(path, len(whole), info.sample_rate, info.channels, info.format)
        if info.num_samples <= 0:
            raise W2VError(f"{path}: no audio samples (0 frames)")
        if check_end and whole is None and f.seekable():
            start = max(0, info.num_samples - TAIL_FRAMES)
            try:
                # decoding from the middle of an MP3 lacks the bit reservoir of the frames before:
                # libmpg123 complains on stderr ("part2_3_length ... too large"), harmlessly
                with quiet_stderr(MPG123_NOISE) if info.format == "MP3" else contextlib.nullcontext():
                    f.seek(start)
                    got = len(f.read(info.num_samples - start, dtype="int16", always_2d=True))
            except _READ_ERRORS as exc:
                raise W2VError(f"{path}: truncated or damaged, the last samples the header promises "
                               f"cannot be decoded ({_reason(exc)})") from None
            if got != info.num_samples - start:
                raise W2VError(f"{path}: truncated (header says {info.num_samples} samples, "
                               f"only {start + got} readable)")
    return info


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a whole file to float32 mono at `sample_rate`: array of shape [S]."""
    path = str(path)
    _check_file(path)
    return _decode(path, path, sample_rate)


def load_audio_segment(path: str | os.PathLike, start: int, frames: int) -> np.ndarray:
    """Frames [start, start + frames) of a file at its own sample rate, mixed down to mono:
    float32 [frames]. For reading part of a long file (a noise recording) without decoding all of it;
    `start + frames` must lie within `audio_info(path).num_samples`."""
    path = str(path)
    try:
        with sf.SoundFile(path) as f:
            f.seek(start)
            wav = f.read(frames, dtype="float32", always_2d=True)  # [S, C]
    except _READ_ERRORS as exc:
        raise W2VError(f"{path}: not readable audio ({_reason(exc)})") from None
    if len(wav) < frames:
        raise W2VError(f"{path}: truncated (only {start + len(wav)} samples readable, {start + frames} needed)")
    return np.ascontiguousarray(wav.mean(axis=1), dtype=np.float32)


def load_audio_bytes(data: bytes, name: str = "audio", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a whole encoded file held in memory (standard input, an upload) to float32 mono at
    `sample_rate` [S]; a W2VError naming `name` when it is not audio soundfile can read."""
    if not data:
        raise W2VError(f"{name}: empty (no bytes)")
    return _decode(data, name, sample_rate)


def _decode(source: str | bytes, name: str, sample_rate: int) -> np.ndarray:
    """A whole encoded file (a path, or its bytes) -> float32 mono [S] at `sample_rate`; MP3s
    without a length header through `_read_mp3_to_end`; a W2VError naming `name`."""
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as f:
            sr = f.samplerate
            wav = _read_mp3_to_end(source) if f.format == "MP3" else None
            if wav is None:
                wav = f.read(dtype="float32", always_2d=True)  # [S, C]
    except _READ_ERRORS as exc:
        raise W2VError(f"{name}: not readable audio ({_reason(exc)})") from None
    return _mono_at(wav, sr, sample_rate, name)


def _mono_at(wav: np.ndarray, sr: int, sample_rate: int, name: str) -> np.ndarray:
    """[S, C] at `sr` -> float32 mono [S'] at `sample_rate`."""
    if wav.shape[0] == 0:
        raise W2VError(f"{name}: no audio samples (0 frames)")
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]  # [S]
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def as_waveform(audio, name: str = "audio") -> np.ndarray:
    """A waveform given in memory (numpy array or torch tensor, 16 kHz mono, float in [-1, 1]) as
    float32 [S]; a W2VError for another shape, an empty one, or values that are not finite."""
    if hasattr(audio, "detach"):  # a torch tensor, without importing torch here
        audio = audio.detach().cpu().float().numpy()
    wav = np.asarray(audio)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise W2VError(f"{name}: a waveform must be one channel [S] at {SAMPLE_RATE} Hz, got shape {tuple(wav.shape)}")
    if not np.issubdtype(wav.dtype, np.floating):
        raise W2VError(f"{name}: a waveform must be floats in [-1, 1] at {SAMPLE_RATE} Hz, got {wav.dtype} "
                       "(divide int16 samples by 32768)")
    if len(wav) == 0:
        raise W2VError(f"{name}: no audio samples (0 frames)")
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if not np.isfinite(wav).all():
        raise W2VError(f"{name}: the waveform holds NaN or infinite values")
    return wav


def _read_mp3_to_end(path: str | bytes) -> np.ndarray | None:
    """The whole of an MP3 file (a path, or its bytes) without a length header, decoded from a pipe: [S, C] float32.
    None when libsndfile knows the file's exact length (it has a Xing/Info header): read it as usual.

    Through a pipe libsndfile cannot seek, so mpg123 estimates nothing: it reports the length
    only from a header and otherwise decodes until the data ends.
    """
    read_end, write_end = os.pipe()
    feeder = threading.Thread(target=_feed, args=(path, write_end), daemon=True)
    feeder.start()
    try:
        with sf.SoundFile(read_end, closefd=False) as f:
            if f.seekable():  # the length is known
                return None
            blocks = [np.zeros((0, f.channels), dtype=np.float32)]
            while len(block := f.read(PIPE_BLOCK, dtype="float32", always_2d=True)):
                blocks.append(block)
            return np.concatenate(blocks)
    finally:
        os.close(read_end)  # a feeder still writing gets a broken pipe and stops
        feeder.join()


def _feed(path: str | bytes, fd: int) -> None:
    """Copy a file (or bytes) into the write end of a pipe, then close it, which ends the reader's data."""
    try:
        with open(path, "rb") if isinstance(path, str) else io.BytesIO(path) as src:
            while chunk := src.read(PIPE_BLOCK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
    except OSError:  # the reader left (a broken pipe): nothing more to do
        pass
    finally:
        os.close(fd)


def _check_file(path: str) -> None:
    """A W2VError unless `path` is a regular file (soundfile would say "Format not recognised"
    for a folder, and a pipe such as /dev/stdin cannot be read twice, header then audio)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise W2VError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise W2VError(f"{path!r}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(mode):
        raise W2VError(f"{path}: a folder, not an audio file")
    if not stat.S_ISREG(mode):
        raise W2VError(f"{path}: not a regular file (a pipe or device such as /dev/stdin cannot be "
                       "read: save the audio to a file first)")


def resampled_length(num_samples: int, from_rate: int, to_rate: int = SAMPLE_RATE) -> int:
    """Number of samples `load_audio` returns for a file of `num_samples` at `from_rate`."""
    if from_rate == to_rate:
        return num_samples
    return int(round(num_samples * to_rate / from_rate))


def write_flac(path: str | os.PathLike, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 mono audio as 16-bit FLAC (clipped to [-1, 1]), via a temp file + rename."""
    pcm = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    pcm = np.round(pcm * 32767.0).astype(np.int16)
    with atomic_open(Path(path), "wb") as f:
        sf.write(f, pcm, sample_rate, format="FLAC", subtype="PCM_16")
