"""CTC forced alignment: the best frame-by-frame path of known units through log-probabilities.

The units are laid out as CTC's state graph, a blank before, between and after them:

    states  s = 0 1 2 3 4 ...  S-1      (S = 2U + 1 for U units)
    column    b u1 b u2 b ...  b        (b: the blank; u: a unit's column of the emissions)

A path stays in its state, or moves on by one state, or skips a blank between two different
units (a repeated letter needs a blank between its two copies). A unit may be *optional*: the
garbage ("star") unit put between words, which absorbs speech that is not in the text; a path
may skip it and its blank. Its column is appended to the emissions by the caller
(`w2vcli.alignment.align`). The best path maximises the summed log-probability of its frames.

Memory does not grow with T x S (frames x states: 180,000 x 100,000 for an hour of speech).
The forward pass keeps, per frame, only the window of states [lo_t, hi_t] within `beam` of
that frame's best state (and at most `max_width` of them), plus a checkpoint of the window's
scores every K = ceil(sqrt(T)) frames. The backtrace then goes through the K-frame segments
from the last one back, recomputing each segment's forward pass from its checkpoint and
storing its decisions (the predecessor offset 0-4 of each state, one byte) only for those K
frames. Memory: T window bounds and the path (O(T) integers, as the emissions are O(T)), plus
2 x sqrt(T) x width scores and decisions, which is a few MB for an hour; the time is two
forward passes. With beam = inf and max_width >= S the search is exact (the tests compare
it with every valid path on small cases); the defaults prune only states so far behind that
they cannot catch up in any realistic recording, and the tests check that pruning leaves the
path of a long file unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from w2vcli.errors import W2VError

NEG = -np.inf
# states more than this many nats below the frame's best one are dropped: wide enough that text
# missing from the audio (forced through a few frames at ~10 nats a unit) keeps its path
BEAM = 2000.0
MAX_WIDTH = 2000  # most states kept per frame (a ceiling on memory and time for any text and audio)


@dataclass(frozen=True)
class Graph:
    """CTC's state graph of a unit sequence (see the module docstring)."""

    column: np.ndarray  # [S] int: the emission column of each state (blank at even states)
    pred: np.ndarray  # [4, S] bool: pred[k-1, s] = the path may come to s from s-k
    edge: np.ndarray  # [4, S] float: 0 where pred, -inf elsewhere (added to scores)
    start: np.ndarray  # [S] bool: states a path may start in
    end: np.ndarray  # [S] bool: states a path may end in
    need: np.ndarray  # [S] int: fewest further frames from s to an end state
    need_after: np.ndarray  # [S] int: max(need[s:]), so a window that needs no pruning is seen at once
    far: np.ndarray  # sorted states with an edge from s-3 or s-4 (past an optional unit)

    @property
    def size(self) -> int:
        return len(self.column)


def ctc_graph(units: list[int], optional: list[bool] | None = None, blank: int = 0) -> Graph:
    """The graph of `units` (emission columns); `optional[i]`: unit i may be skipped (star).
    Two optional units never stand next to each other."""
    U = len(units)
    optional = list(optional) if optional is not None else [False] * U
    if len(optional) != U or any(optional[i] and optional[i + 1] for i in range(U - 1)):
        raise ValueError("optional: one flag per unit, never two optional units in a row")
    S = 2 * U + 1
    column = np.full(S, blank, dtype=np.int64)
    column[1::2] = units
    pred = np.zeros((4, S), dtype=bool)
    pred[0, 1:] = True  # from the state before: a blank into a unit, a unit into a blank
    for i in range(U):
        s = 2 * i + 1  # state of unit i
        if i >= 1 and units[i] != units[i - 1]:
            pred[1, s] = True  # skip the blank between two different units
        if i >= 1 and optional[i - 1]:  # skip the optional unit before (and its blank)
            pred[2, s] = True  # from the blank before it
            if i >= 2 and units[i] != units[i - 2]:
                pred[3, s] = True  # from the unit before it
    start = np.zeros(S, dtype=bool)
    start[: min(2, S)] = True
    if U >= 2 and optional[0]:
        start[3] = True
    end = np.zeros(S, dtype=bool)
    end[S - min(2, S):] = True
    if U >= 2 and optional[-1]:
        end[S - 4 : S - 2] = True
    # fewest frames still needed: a reverse pass over the edges (every edge goes forward)
    need = np.full(S, np.iinfo(np.int64).max // 2, dtype=np.int64)
    need[end] = 0
    for s in range(S - 1, -1, -1):
        for k in range(1, 5):
            if s + k < S and pred[k - 1, s + k]:
                need[s] = min(need[s], need[s + k] + 1)
    need_after = np.maximum.accumulate(need[::-1])[::-1].copy()
    far = np.flatnonzero(pred[2] | pred[3])
    return Graph(column, pred, np.where(pred, 0.0, NEG), start, end, need, need_after, far)


@dataclass(frozen=True)
class Path:
    """The best path: the state of each frame, and its total log-probability."""

    states: np.ndarray  # [T] int32
    score: float
    peak_bytes: int  # most bytes the search held at once for scores and decisions (not O(T) bounds)


def _step(prev: np.ndarray, plo: int, lo: int, hi: int, g: Graph, emit: np.ndarray,
          decide: bool = True) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Scores and (if `decide`) decisions, the predecessor offsets, of states [lo, hi] at a frame,
    from the previous frame's scores `prev` of states [plo, plo + len(prev)); `emit`: that frame's [V]."""
    n = hi - lo + 1
    ext = np.full(n + 4, NEG)  # ext[j] = previous score of state lo - 4 + j
    a, b = max(plo, lo - 4), min(plo + len(prev), hi + 1)
    if a < b:
        ext[a - lo + 4 : b - lo + 4] = prev[a - plo : b - plo]
    # from s-1: every state but 0 has that edge, and ext holds -inf for state -1
    best = np.maximum(ext[4:], ext[3 : 3 + n])
    choice = (ext[3 : 3 + n] > ext[4:]).astype(np.uint8) if decide else None  # ties keep the smaller offset
    cand = ext[2 : 2 + n] + g.edge[1, lo : hi + 1]  # from s-2: skip a blank between different units
    if decide:
        choice[cand > best] = 2
    np.maximum(best, cand, out=best)
    if g.far.size and g.far[-1] >= lo and g.far[0] <= hi:  # past an optional unit: from s-3 or s-4
        for k in (3, 4):
            cand = ext[4 - k : 4 - k + n] + g.edge[k - 1, lo : hi + 1]
            if decide:
                choice[cand > best] = k
            np.maximum(best, cand, out=best)
    return best + emit[g.column[lo : hi + 1]], choice


def _first_window(g: Graph, emit0: np.ndarray) -> tuple[int, int, np.ndarray]:
    hi = int(np.flatnonzero(g.start).max())
    return 0, hi, np.where(g.start[: hi + 1], emit0[g.column[: hi + 1]], NEG)


def forced_align(log_probs: np.ndarray, g: Graph, beam: float = BEAM, max_width: int = MAX_WIDTH,
                 segment: int | None = None) -> Path:  # fmt: skip
    """The best path of graph `g` through log_probs [T,V] (see the module docstring);
    `segment`: frames per checkpoint (default ceil(sqrt(T)))."""
    T, S = len(log_probs), g.size
    if T == 0 or T < int(g.need[g.start].min()) + 1:
        raise W2VError(f"the text needs at least {int(g.need[g.start].min()) + 1} frames of audio, the audio has {T}")
    K = segment or max(1, math.isqrt(T - 1) + 1)
    los, his = np.zeros(T, np.int64), np.zeros(T, np.int64)
    checkpoints: dict[int, np.ndarray] = {}  # frame t -> scores of frame t - 1 (window los/his[t-1])
    lo, hi, scores = _first_window(g, log_probs[0])
    peak = held = 0  # bytes of checkpoints (and decisions) held
    for t in range(T):
        if t > 0:
            if t % K == 0:
                checkpoints[t] = scores
                held += scores.nbytes
                peak = max(peak, held)
            hi = min(hi + 4, S - 1)
            scores, _ = _step(scores, lo, lo, hi, g, log_probs[t], decide=False)
        # prune: states that cannot reach an end in the frames left, then the beam and the width
        if g.need_after[lo] > T - 1 - t:
            scores = np.where(g.need[lo : hi + 1] <= T - 1 - t, scores, NEG)
        best = int(scores.argmax())
        if scores[best] == NEG:
            raise W2VError(f"no path through the text by frame {t} (of {T}): the text needs more frames than the audio has")
        floor = scores[best] - beam
        if scores[0] >= floor and scores[-1] >= floor:
            a, b = 0, len(scores) - 1
        else:
            keep = np.flatnonzero(scores >= floor)
            a, b = int(keep[0]), int(keep[-1])
        if b - a + 1 > max_width:
            a = max(a, min(best - max_width // 2, b - max_width + 1))
            b = a + max_width - 1
        if a > 0 or b < len(scores) - 1:
            lo, hi, scores = lo + a, lo + b, scores[a : b + 1]
        los[t], his[t] = lo, hi
    ends = np.where(g.end[lo : hi + 1], scores, NEG)
    state = lo + int(ends.argmax())
    total = float(ends.max())
    if total == NEG:
        raise W2VError("no path through the whole text: raise the beam, or the text does not fit the audio")
    # backtrace, one segment at a time from the end
    path = np.zeros(T, np.int32)
    for t0 in range(((T - 1) // K) * K, -1, -K):
        t1 = min(T, t0 + K)
        decisions: list[np.ndarray] = []
        prev = checkpoints.pop(t0) if t0 > 0 else None
        for t in range(t0, t1):
            if t == 0:
                _, _, prev = _first_window(g, log_probs[0])
                prev = np.where(g.need[: len(prev)] <= T - 1, prev, NEG)[los[0] : his[0] + 1]
                decisions.append(np.zeros(len(prev), np.uint8))
                continue
            lo, hi = int(los[t]), int(his[t])
            prev, choice = _step(prev, int(los[t - 1]), lo, hi, g, log_probs[t])
            if g.need_after[lo] > T - 1 - t:
                prev = np.where(g.need[lo : hi + 1] <= T - 1 - t, prev, NEG)  # as the forward pass had it
            decisions.append(choice)
        seg_bytes = sum(d.nbytes for d in decisions) + sum(c.nbytes for c in checkpoints.values())
        peak = max(peak, seg_bytes)
        for t in range(t1 - 1, t0 - 1, -1):
            path[t] = state
            state -= int(decisions[t - t0][state - los[t]])
    return Path(path, total, peak)


def frame_scores(log_probs: np.ndarray, g: Graph, path: Path) -> np.ndarray:
    """[T] the log-probability of each frame's state on the path."""
    return log_probs[np.arange(len(path.states)), g.column[path.states]]
