"""`w2v align --segment MAX_SECONDS`: a long recording and its text cut into training utterances.

The aligned words are grouped into utterances of at most MAX_SECONDS: an utterance is closed at
the longest pause between words in the second half of what fits, so cuts fall in silences. Each
utterance's audio runs from halfway into the pause before its first word to halfway into the
pause after its last one (at most `PAD` seconds on each side), is read from the file by its
sample range (the recording is never held whole) and written as 16 kHz FLAC; the manifest rows
are `w2v prepare`'s (`id`, `audio` relative to the manifest's folder, `num_samples`,
`sample_rate`, `text` as written), plus the
utterance's `score` and its `start`/`end` in the recording.

An utterance is dropped when its score is below `min_score` or when audio the text does not cover
(a span taken by the garbage unit) lies inside it: its text would not be what is said.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from w2vcli.alignment.align import AlignedWord, Alignment
from w2vcli.audio import SAMPLE_RATE, write_flac
from w2vcli.errors import W2VError
from w2vcli.utils import write_jsonl

PAD = 0.3  # s of pause kept at most on each side of an utterance


def group_words(words: list[AlignedWord], max_seconds: float) -> list[tuple[int, int]]:
    """Consecutive runs of words [i, j), each spanning at most `max_seconds` (a longer word alone)."""
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = i + 1  # one past the last word that fits
        while j < len(words) and words[j].end - words[i].start <= max_seconds:
            j += 1
        if j < len(words):  # close at the longest pause in the second half of what fits
            half = [k for k in range(i + 1, j + 1) if words[k - 1].end - words[i].start >= max_seconds / 2] or [j]
            j = max(half, key=lambda k: (words[k].start - words[k - 1].end, k))
        groups.append((i, j))
        i = j
    return groups


def utterance_score(words: list[AlignedWord]) -> float:
    """exp of the mean log score of the words, weighted by their characters (as their frames are)."""
    weights = [max(1, len(w.chars)) for w in words]
    return math.exp(sum(n * math.log(max(w.score, 1e-30)) for n, w in zip(weights, words)) / sum(weights))


def write_segments(a: Alignment, max_seconds: float, min_score: float, manifest: str | os.PathLike,
                   out_dir: str | os.PathLike, rules=None) -> tuple[int, int]:  # fmt: skip
    """Cut `a`'s recording into utterances (see the module docstring); (kept, total)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        info = sf.info(a.audio)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise W2VError(f"{a.audio}: not readable audio ({exc})") from None
    groups = group_words(a.words, max_seconds)
    stem = Path(a.audio).stem
    rows = []
    for n, (i, j) in enumerate(groups):
        g = a.words[i:j]
        before = a.words[i - 1].end if i > 0 else 0.0
        after = a.words[j].start if j < len(a.words) else a.duration
        start = max(before + (g[0].start - before) / 2, g[0].start - PAD, 0.0)
        end = min(g[-1].end + (after - g[-1].end) / 2, g[-1].end + PAD, a.duration)
        score = utterance_score(g)
        uncovered = any(s < g[-1].end and e > g[0].start for s, e in a.unaligned)
        if score < min_score or uncovered:
            continue
        wav, sr = sf.read(a.audio, start=int(start * info.samplerate), stop=int(math.ceil(end * info.samplerate)),
                          dtype="float32", always_2d=True)  # fmt: skip
        wav = wav.mean(axis=1)
        if sr != SAMPLE_RATE:
            wav = soxr.resample(wav, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
        uid = f"{stem}-{n:04d}"
        path = out_dir / f"{uid}.flac"
        write_flac(path, wav)
        audio = os.path.relpath(path.resolve(), Path(manifest).resolve().parent)  # as manifests hold them
        rows.append({"id": uid, "audio": audio, "num_samples": len(wav), "sample_rate": SAMPLE_RATE,
                     "text": " ".join(w.text for w in g), "score": round(score, 4),
                     "start": round(start, 3), "end": round(end, 3)})  # fmt: skip
    write_jsonl(manifest, rows)
    return len(rows), len(groups)
