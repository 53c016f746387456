"""The forced aligner's search (w2vcli/alignment/viterbi.py) against every valid CTC path, and its
bounded memory on long inputs."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest

from w2vcli.alignment.viterbi import MAX_WIDTH, ctc_graph, forced_align, frame_scores


def collapse(labels: tuple[int, ...], blank: int = 0) -> list[int]:
    """CTC's many-to-one map: merge repeats, drop blanks."""
    return [x for i, x in enumerate(labels) if x != blank and (i == 0 or labels[i - 1] != x)]


def valid_outputs(units: list[int], optional: list[bool]) -> set[tuple[int, ...]]:
    """Every unit sequence a path may write: each optional unit present or left out."""
    idx = [i for i, o in enumerate(optional) if o]
    out = set()
    for drop in itertools.product([False, True], repeat=len(idx)):
        gone = {i for i, d in zip(idx, drop) if d}
        out.add(tuple(u for i, u in enumerate(units) if i not in gone))
    return out


def brute_force(lp: np.ndarray, units: list[int], optional: list[bool]) -> float:
    """The best score over every frame labelling whose CTC collapse is a valid output."""
    T, V = lp.shape
    ok = valid_outputs(units, optional)
    best = -np.inf
    for labels in itertools.product(range(V), repeat=T):
        if tuple(collapse(labels)) in ok:
            best = max(best, float(lp[np.arange(T), labels].sum()))
    return best


def random_case(rng, T, V, U, star):
    lp = rng.normal(0, 2, (T, V))
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    units = list(rng.integers(1, V - (1 if star else 0), U))  # the last column is the star's
    optional = [False] * U
    if star:  # a star at the start, the end or between two units, as the aligner puts them
        pos = sorted(set(rng.choice(U + 1, size=min(2, U + 1), replace=False).tolist()), reverse=True)
        for p in pos:
            units.insert(p, V - 1)
            optional.insert(p, True)
        for i in range(len(units) - 1, 0, -1):  # never two optional units in a row
            if optional[i] and optional[i - 1]:
                del units[i], optional[i]
    return lp, units, optional


@pytest.mark.parametrize("star", [False, True])
def test_viterbi_equals_exhaustive_search(star):
    rng = np.random.default_rng(1 if star else 0)
    cases = 0
    for _ in range(60):
        T, V, U = int(rng.integers(2, 7)), 4, int(rng.integers(1, 4))
        lp, units, optional = random_case(rng, T, V, U, star)
        g = ctc_graph(units, optional)
        expected = brute_force(lp, units, optional)
        if expected == -np.inf:  # the text needs more frames than there are
            with pytest.raises(Exception):
                forced_align(lp, g, beam=np.inf)
            continue
        for segment in (None, 1, 2):  # checkpoints every sqrt(T), every frame, every second frame
            path = forced_align(lp, g, beam=np.inf, segment=segment)
            assert path.score == pytest.approx(expected, abs=1e-9)
            labels = tuple(g.column[path.states].tolist())
            assert tuple(collapse(labels)) in valid_outputs(units, optional)
            assert frame_scores(lp, g, path).sum() == pytest.approx(expected, abs=1e-9)
        cases += 1
    assert cases >= 25


def full_matrix_viterbi(lp: np.ndarray, g) -> tuple[float, np.ndarray]:
    """The textbook T x S Viterbi with a full backpointer matrix (the reference for long inputs)."""
    T, S = len(lp), g.size
    score = np.where(g.start, lp[0, g.column], -np.inf)
    back = np.zeros((T, S), np.int64)
    for t in range(1, T):
        cand = [score]
        for k in range(1, 5):
            shifted = np.full(S, -np.inf)
            shifted[k:] = score[:-k]
            cand.append(np.where(g.pred[k - 1], shifted, -np.inf))
        cand = np.stack(cand)
        back[t] = cand.argmax(0)
        score = cand.max(0) + lp[t, g.column]
    end = np.where(g.end, score, -np.inf)
    s = int(end.argmax())
    path = np.zeros(T, np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= back[t, s]
    return float(end.max()), path


def speech_like(rng, units_per_second, seconds, V=30, blank_run=3):
    """Emissions that write a random text letter by letter, with blanks between (a trained model's shape)."""
    T = int(seconds * 50)
    U = int(seconds * units_per_second)
    units = rng.integers(1, V, U)
    lp = rng.normal(-8, 1.5, (T, V))
    frames = np.sort(rng.choice(np.arange(1, T - 1), U, replace=False))
    lp[:, 0] = -0.05 + rng.normal(0, 0.02, T)
    lp[frames, units] = -0.1
    lp[frames, 0] = -4.0
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    return lp, list(units)


def test_pruned_checkpointed_search_equals_full_matrix():
    rng = np.random.default_rng(3)
    lp, units = speech_like(rng, 12, 20)  # 1,000 frames, 240 units
    optional = [False] * len(units)
    g = ctc_graph(units, optional)
    ref_score, ref_path = full_matrix_viterbi(lp, g)
    path = forced_align(lp, g)  # default beam and width
    assert path.score == pytest.approx(ref_score, abs=1e-6)
    assert np.array_equal(path.states, ref_path)


def test_long_input_memory_does_not_grow_with_frames_times_states():
    """10 minutes at 50 frames/s and 12 units/s: T x S is 30,000 x 14,401 states (430 MB of
    one-byte decisions for a full backpointer matrix); the aligner holds well under 1 MB of
    scores and decisions, and O(T) integers."""
    rng = np.random.default_rng(4)
    lp, units = speech_like(rng, 12, 600)
    g = ctc_graph(units)
    T, S = lp.shape[0], g.size
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    path = forced_align(lp, g)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert T * S > 4e8
    # O(T) arrays (window bounds and path: 20 bytes per frame) plus O(sqrt(T) x width) scores
    # checkpoints every sqrt(T) frames and one segment's decisions: 2 sqrt(T) windows of MAX_WIDTH states
    assert path.peak_bytes <= 2 * (math.isqrt(T) + 1) * MAX_WIDTH * 8, path.peak_bytes
    assert peak < 40 * T + 4e6, peak  # numpy's temporaries included
    # the path writes the text (every unit in order)
    labels = g.column[path.states]
    assert collapse(tuple(labels.tolist())) == units
