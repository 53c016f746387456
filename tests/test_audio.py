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


# --- MP3 (libsndfile decodes it with mpg123) ------------------------------------------------------

MPEG1_LAYER3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


def _without_length_header(data: bytes) -> bytes:
    """An MP3 (MPEG-1 layer III, no ID3 tag, as libsndfile writes it) without its first frame, the
    Xing/Info header that holds the length: what an encoder writing to a stream produces."""
    b1, b2 = data[1], data[2]
    assert data[0] == 0xFF and (b1 >> 1) & 0xF == 0xD  # sync, MPEG-1, layer III
    assert data[21:25] in (b"Xing", b"Info") or data[36:40] in (b"Xing", b"Info")  # after mono/stereo side info
    rate = (44100, 48000, 32000)[(b2 >> 2) & 3]
    size = 144 * MPEG1_LAYER3_KBPS[b2 >> 4] * 1000 // rate + ((b2 >> 1) & 1)
    return data[size:]


def _speechlike(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_mp3_with_length_header(tmp_path):
    audio = _speechlike(2.5, 48000)
    path = tmp_path / "a.mp3"
    sf.write(path, audio, 48000, format="MP3")
    info = audio_info(path)
    assert (info.format, info.sample_rate, info.num_samples) == ("MP3", 48000, len(audio))
    assert len(load_audio(path, 48000)) == info.num_samples
    assert len(load_audio(path)) == resampled_length(info.num_samples, 48000)


def test_mp3_without_length_header_is_decoded_to_its_end(tmp_path):
    """mpg123 estimates such a file's length from its first frame, and libsndfile stops reading
    there: here at a fraction of the audio. w2v decodes it to the end and counts what it got."""
    audio = _speechlike(3.0, 48000)
    sf.write(tmp_path / "a.mp3", audio, 48000, format="MP3")
    path = tmp_path / "stream.mp3"
    path.write_bytes(_without_length_header((tmp_path / "a.mp3").read_bytes()))
    estimate = sf.info(path).frames
    info = audio_info(path)
    wav = load_audio(path, 48000)
    assert len(wav) == info.num_samples != estimate
    assert len(audio) <= info.num_samples <= len(audio) + 2 * 1152  # encoder delay and padding: a frame or two
    assert len(load_audio(path)) == resampled_length(info.num_samples, 48000)
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(path.read_bytes()[:-100])  # cut inside the last frame
    with pytest.raises(W2VError, match="damaged.mp3"):
        audio_info(damaged)


def test_real_speech_ships_with_the_repository(real_mini):
    """A clone alone runs every test: the real utterances and their licences are in tests/data."""
    from pathlib import Path

    repo_data = Path(__file__).resolve().parent / "data"
    assert real_mini == repo_data / "real-mini"
    flacs = sorted(real_mini.rglob("*.flac"))
    assert len(flacs) == 10 and sum(f.stat().st_size for f in flacs) < 1_000_000
    readme = (repo_data / "README.md").read_text(encoding="utf-8")
    assert all(word in readme for word in ("LibriVox", "CMU ARCTIC", "public domain"))
