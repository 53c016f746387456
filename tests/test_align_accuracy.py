"""bench/align_accuracy.py's speech with known word boundaries: the trimmed span is the word's
audio (a DC offset in the trailing silence does not count as speech), and the boundaries it
reports after joining, resampling by the speaker's speed and adding the noise floor lie where
the words' energy is in the finished audio."""

import numpy as np
import pytest

from bench.align_accuracy import join_words, trim
from w2vcli.data.synth import Speaker

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
