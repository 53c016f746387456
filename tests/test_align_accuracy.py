"""bench/studies/align_accuracy.py's speech with known word boundaries: the trimmed span is the word's
audio (a DC offset in the trailing silence does not count as speech), the boundaries it
reports after joining, resampling by the speaker's speed and adding the noise floor lie where
the words' energy is in the finished audio, and flite's own word times of connected speech
tile the utterance between its leading and trailing pauses."""

import numpy as np
import pytest

from bench.studies.align_accuracy import flite_timed, join_words, trim
from w2vcli.data.synth import Speaker, _flite_lib

SR = 16000


def _burst(n: int, hz: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


def test_trim_finds_the_word_and_ignores_a_dc_tail():
    rng = np.random.default_rng(0)
    wav = np.concatenate([np.zeros(800), _burst(1600, 300), np.full(1600, 0.005), np.zeros(400)])
    wav = (wav + 1e-5 * rng.standard_normal(len(wav))).astype(np.float32)  # floor 90 dB down
    a, b = trim(wav, SR)
    assert abs(a - 800) <= 40 and abs(b - 2400) <= 40  # within half the 5 ms window
    assert trim(np.zeros(100, np.float32), SR) == (0, 0)


def test_joined_words_sit_at_their_boundaries():
    spk = Speaker(id=1, engine="flite", voice="slt", stretch=1.0, speed=1.1, pitch=50, gain=0.8, snr_db=60.0)
    lengths = {"ONE": 3200, "TWO": 1600, "THREE": 4800}
    cut = {w: (_burst(n, 200 + 100 * k), SR) for k, (w, n) in enumerate(lengths.items())}
    text = "THREE ONE TWO ONE THREE"
    wav, bounds = join_words(spk, text, cut, np.random.default_rng(1))
    assert len(bounds) == 5
    for word, (s, e) in zip(text.split(), bounds):
        assert e - s == pytest.approx(lengths[word] / (SR * spk.speed))  # the speed factor shortens every word
    power = np.convolve(wav.astype(np.float64) ** 2, np.ones(80) / 80, mode="same")
    loud = power > power.max() * 1e-3
    inside = np.zeros(len(wav), bool)
    for s, e in bounds:
        inside[int(round(s * SR)) + 40 : int(round(e * SR)) - 40] = True
        assert loud[int(round(s * SR)) + 40 : int(round(e * SR)) - 40].all()
    edges = np.zeros(len(wav), bool)  # a window's reach around each boundary
    for s, e in bounds:
        for t in (s, e):
            edges[max(0, int(round(t * SR)) - 80) : int(round(t * SR)) + 80] = True
    assert not (loud & ~inside & ~edges).any()  # no energy between words
    assert abs(len(wav) / SR - (bounds[-1][1] + 0.2)) < 0.002  # 200 ms of silence after the last word


def test_flite_word_times_tile_the_utterance():
    if _flite_lib("rms")[0] is None:
        pytest.skip("libflite is not installed")
    spk = Speaker(id=1, engine="flite", voice="rms", stretch=1.0, speed=1.0, pitch=50, gain=0.8, snr_db=60.0)
    text = "TURN OFF THE RADIO IN THE KITCHEN"
    (wav, sr, words), = flite_timed(spk, [text], "")
    assert len(words) == len(text.split())
    starts, ends = np.array([s for s, _ in words]), np.array([e for _, e in words])
    assert (ends > starts).all() and (starts[1:] == ends[:-1]).all()  # connected: each word starts where the last ended
    assert 0.05 < starts[0] and ends[-1] < len(wav) / sr - 0.05  # pauses before and after
    a, b = trim(wav, sr)  # the audible speech (-40 dB) spans about the first to the last word: rms fades 40 ms past
    assert starts[0] - 0.03 < a / sr < starts[0] + 0.1 and ends[-1] - 0.1 < b / sr < ends[-1] + 0.08
