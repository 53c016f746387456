"""Audio loading and header checks: mono mix-down, resampling, and clear errors for bad files."""

import numpy as np
import pytest
import soundfile as sf

from w2vcli.audio import audio_info, load_audio, resampled_length, write_flac
from w2vcli.errors import W2VError


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_44k_wav_loads_as_mono_16k(tmp_path):
    left = _tone(1.3, 44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44100)
    info = audio_info(path)
    assert (info.num_samples, info.sample_rate, info.channels) == (len(left), 44100, 2)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == resampled_length(len(left), 44100) == round(len(left) * 16000 / 44100)
    assert np.abs(wav).max() == pytest.approx(0.25, abs=0.02)  # mean of a 0.5 tone and silence


def test_16k_flac_round_trip(tmp_path):
    tone = _tone(0.5, 16000)
    write_flac(tmp_path / "a.flac", tone)
    wav = load_audio(tmp_path / "a.flac")
    assert len(wav) == len(tone)
    assert np.abs(wav - tone).max() < 1e-3


def test_real_file_header(real_mini):
    path = real_mini / "test-real" / "8001" / "1" / "8001-1-0000.flac"
    info = audio_info(path)
    assert info.num_samples == sf.info(path).frames
    assert info.duration == pytest.approx(info.num_samples / 16000)
    assert len(load_audio(path)) == info.num_samples


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "truncated", "wav-no-frames"])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.flac"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif kind == "truncated":
        write_flac(tmp_path / "full.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 48000))
        data = (tmp_path / "full.flac").read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "wav-no-frames":
        path = tmp_path / "zero.wav"
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(W2VError) as err:
        audio_info(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    if kind == "truncated":
        assert "truncated" in message
    if kind != "truncated":
        with pytest.raises(W2VError, match=str(path.name)):
            load_audio(path)


def test_real_speech_ships_with_the_repository(real_mini):
    """A clone alone runs every test: the real utterances and their licences are in tests/data."""
    from pathlib import Path

    repo_data = Path(__file__).resolve().parent / "data"
    assert real_mini == repo_data / "real-mini"
    flacs = sorted(real_mini.rglob("*.flac"))
    assert len(flacs) == 10 and sum(f.stat().st_size for f in flacs) < 1_000_000
    readme = (repo_data / "README.md").read_text(encoding="utf-8")
    assert all(word in readme for word in ("LibriVox", "CMU ARCTIC", "public domain"))
