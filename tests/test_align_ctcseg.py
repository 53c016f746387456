"""Character times of `w2v align` against ctc-segmentation (the aligner ESPnet and NeMo use, on
PyPI) on the same emissions.

ctc-segmentation's trellis has one row per character and lets a character "stay" on frames
where either it or the blank is likelier; its time for a character is the frame where the path
enters that row. Our Viterbi's character start is the first frame of the unit on the CTC path.
On emissions where the model is sure, the two are the same to the frame. Where the emissions are
noisy they may differ: ctc-segmentation scores a staying frame by max(blank, character), so it
can cross two copies of a letter without the blank CTC requires between them and move a character
into a frame that a strict CTC path would give to the blank; our path also keeps the garbage unit
off (--no-star) here, as ctc-segmentation has none.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_align import FS, VOCAB, emissions, run_align

cs = pytest.importorskip("ctc_segmentation")


def ctcseg_char_starts(lp: np.ndarray, words: list[str]) -> list[float]:
    cfg = cs.CtcSegmentationParameters()
    cfg.char_list = VOCAB.tokens
    cfg.index_duration = FS
    cfg.blank = 0
    gt, _ = cs.prepare_text(cfg, words)
    timings, _, _ = cs.ctc_segmentation(cfg, lp.astype(np.float64), gt)
    return [float(t) for g, t in zip(gt, timings) if g[0] > 0]  # rows of letters (not the separators)


def ours(lp: np.ndarray, words: list[str]) -> list[float]:
    a = run_align(lp, " ".join(words), star=False)
    return [c.start for w in a.words for c in w.chars]


def test_same_character_times_on_clear_emissions():
    rng = np.random.default_rng(0)
    words = "IT WAS THE BEST OF TIMES IT WAS THE WORST OF TIMES".split()
    lp, _ = emissions(words, rng)
    theirs = ctcseg_char_starts(lp, words)
    assert len(theirs) == sum(map(len, words))
    assert np.allclose(ours(lp, words), theirs, atol=1e-6)


def test_close_character_times_on_noisy_emissions():
    """Noise of 1.5 nats on every log-probability: most characters still agree to the frame; the
    rest are the cases the module docstring names."""
    rng = np.random.default_rng(1)
    words = "A LITTLE LATER THE BOOKS WERE BACK ON THE SHELF AND ALL WAS WELL AGAIN".split()
    agree, total = 0, 0
    for _ in range(4):
        lp, _ = emissions(words, rng)
        lp = lp + rng.normal(0, 1.5, lp.shape).astype(np.float32)
        lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
        a, b = np.array(ours(lp, words)), np.array(ctcseg_char_starts(lp, words))
        agree += int((np.abs(a - b) <= FS + 1e-6).sum())
        total += len(a)
    assert agree / total >= 0.9, (agree, total)
