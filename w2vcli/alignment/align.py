"""Forced alignment of known text: emissions from the model, the best CTC path, words and characters.

    model = w2vcli.load_ctc_model("exp/ft/best.pt")
    result = w2vcli.align(model, "chapter.flac", open("chapter.txt").read())
    for w in result.words:
        print(w.start, w.end, w.score, w.text)

Emissions come from `w2vcli.decode.emissions.Emitter` (long files streamed in windows and
stitched exactly), the path from `viterbi.forced_align` (memory independent of frames x units).

Garbage unit ("star", as in the MMS aligner). An optional unit may stand at the start, at the
end and between any two words. Its log-probability at frame t is `max_v log p_t(v) - star_penalty`:
wherever the model hears speech that is not in the text, the star costs `star_penalty` per
frame, while forcing that speech onto blanks or neighbouring letters would cost much more, so
one unscripted sentence does not drag the words around it. Characters the vocabulary lacks
(digits for a letters-only model) are aligned by the same column, as mandatory units.

Scores. A character's score is exp(mean log-probability of its frames): the geometric-mean
probability the model gave that unit over the frames the path assigns to it, in (0, 1]. A
word's score is the same over all its characters' frames. Words scoring below
`low_score` are flagged `low`; audio taken by the star longer than `min_gap` seconds is listed
as an unaligned span. Both say where text and audio disagree (a paragraph not read, a heading
read that is not in the text) and where the model is unsure; they are only as good as the
model: a weak model gives low scores to correct text too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from w2vcli.alignment.text import STAR, TextWord, text_words
from w2vcli.alignment.viterbi import BEAM, MAX_WIDTH, ctc_graph, forced_align, frame_scores
from w2vcli.audio import SAMPLE_RATE
from w2vcli.errors import W2VError

STAR_PENALTY = 0.5  # nats per frame the garbage unit pays below the frame's best unit (blank included)
LOW_SCORE = 0.05  # words below this score are flagged
MIN_GAP = 0.5  # s: star spans at least this long are reported as unaligned audio


@dataclass(frozen=True)
class AlignOptions:
    """How to align; validates itself."""

    star: bool = True  # an optional garbage unit at the ends and between words
    star_penalty: float = STAR_PENALTY
    low_score: float = LOW_SCORE
    min_gap: float = MIN_GAP
    beam: float = BEAM  # viterbi.py: states this far below a frame's best are dropped
    max_width: int = MAX_WIDTH  # viterbi.py: most states kept per frame

    def __post_init__(self) -> None:
        if self.star_penalty < 0:
            raise W2VError(f"--star-penalty must be >= 0, got {self.star_penalty}")
        if not 0 <= self.low_score <= 1:
            raise W2VError(f"--low-score must be in [0, 1], got {self.low_score}")
        if self.beam <= 0 or self.max_width < 8:
            raise W2VError("--beam must be > 0 and the window at least 8 states")


@dataclass(frozen=True)
class Char:
    char: str  # as written in the text (its units' characters where it could not be mapped)
    start: float  # s
    end: float  # s
    score: float


@dataclass(frozen=True)
class AlignedWord:
    text: str  # as written, with punctuation
    start: float
    end: float
    score: float
    chars: list[Char]
    low: bool  # score below AlignOptions.low_score

    def to_dict(self) -> dict:
        d = {"word": self.text, "start": self.start, "end": self.end, "score": round(self.score, 4)}
        if self.low:
            d["low"] = True
        d["chars"] = [{"char": c.char, "start": c.start, "end": c.end, "score": round(c.score, 4)} for c in self.chars]
        return d


@dataclass(frozen=True)
class Alignment:
    """The words of a text with their times in one recording."""

    audio: str  # path, or "" for a waveform given in memory
    words: list[AlignedWord]
    duration: float  # s
    score: float  # exp(mean log-probability over every frame of the path)
    unaligned: list[tuple[float, float]] = field(default_factory=list)  # spans taken by the garbage unit

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def to_dict(self) -> dict:
        return {
            "audio": self.audio, "text": self.text, "duration": self.duration, "score": round(self.score, 4),
            "words": [w.to_dict() for w in self.words],
            "unaligned": [{"start": a, "end": b} for a, b in self.unaligned],
        }  # fmt: skip


def with_star(log_probs: np.ndarray, penalty: float) -> np.ndarray:
    """[T, V+1]: the emissions with the garbage unit's column appended."""
    star = log_probs.max(axis=1, keepdims=True) - np.float32(penalty)
    return np.concatenate([log_probs, star.astype(log_probs.dtype)], axis=1)


def align_emissions(log_probs: np.ndarray, words: list[TextWord], boundary: int | None, frame_seconds: float,
                    options: AlignOptions = AlignOptions(), audio: str = "", num_samples: int | None = None) -> Alignment:  # fmt: skip
    """Align `words` (from `text_words`) to emissions [T,V] of a model with this frame stride;
    `boundary`: the vocabulary's word-boundary id, put between words (None: no such unit)."""
    T, V = log_probs.shape
    lp = with_star(log_probs, options.star_penalty)
    units: list[int] = []
    optional: list[bool] = []
    owner: list[tuple[int, int]] = []  # per unit: (word, unit within word); (-1, -1) for a star or a boundary
    for i, w in enumerate(words):
        if i > 0 and boundary is not None:
            units.append(boundary)
            optional.append(False)
            owner.append((-1, -1))
        if options.star:
            units.append(V)
            optional.append(True)
            owner.append((-1, -1))
        for k, u in enumerate(w.units):
            units.append(V if u == STAR else u)
            optional.append(False)
            owner.append((i, k))
    if options.star:
        units.append(V)
        optional.append(True)
        owner.append((-1, -1))
    g = ctc_graph(units, optional)
    path = forced_align(lp, g, beam=options.beam, max_width=options.max_width)
    frame_lp = frame_scores(lp, g, path)  # [T]
    unit_of_frame = np.where(path.states % 2 == 1, path.states // 2, -1)  # [T] unit index, -1 on blanks
    aligned: list[AlignedWord] = []
    frames_by_unit: dict[int, list[int]] = {}
    for t, u in enumerate(unit_of_frame.tolist()):
        if u >= 0:
            frames_by_unit.setdefault(u, []).append(t)
    by_word: dict[int, list[int]] = {}
    for u, (wi, k) in enumerate(owner):
        if wi >= 0 and words[wi].units[k] != boundary:  # a word's own units ("|" inside "rock-and-roll" left out)
            by_word.setdefault(wi, []).append(u)
    fs = frame_seconds
    for wi, w in enumerate(words):
        chars: list[Char] = []
        heard: list[int] = []  # frames of the units the model can write (not the garbage unit's)
        spans: list[int] = []
        for u in by_word.get(wi, []):
            fr = frames_by_unit.get(u, [])
            spans += [fr[0], fr[-1]]
            _, k = owner[u]
            known = w.units[k] != STAR
            heard += fr if known else []
            if w.chars[k]:  # a character the vocabulary lacks scores 0: the model cannot vouch for it
                score = math.exp(float(frame_lp[fr].mean())) if known else 0.0
                chars.append(Char(w.chars[k], round(fr[0] * fs, 3), round((fr[-1] + 1) * fs, 3), score))
        # a word with characters the model cannot write scores 0 (and is flagged)
        score = math.exp(float(frame_lp[heard].mean())) if heard and STAR not in w.units else 0.0
        start, end = min(spans) * fs, (max(spans) + 1) * fs
        aligned.append(AlignedWord(w.text, round(start, 3), round(end, 3), score, chars, score < options.low_score))
    gaps = []
    star_frames = np.flatnonzero(np.isin(unit_of_frame, [u for u, o in enumerate(optional) if o]))
    if len(star_frames):
        breaks = np.flatnonzero(np.diff(star_frames) > 1)
        for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, len(star_frames) - 1]):
            s, e = star_frames[a] * fs, (star_frames[b] + 1) * fs
            if e - s >= options.min_gap:
                gaps.append((round(s, 3), round(e, 3)))
    n = num_samples if num_samples is not None else int(round(T * fs * SAMPLE_RATE))
    return Alignment(audio, aligned, round(n / SAMPLE_RATE, 3), math.exp(path.score / T), gaps)


def _emissions(emitter, audio: str | np.ndarray) -> tuple[np.ndarray, int]:
    """(log-probs [T,V], samples at 16 kHz) of a file or of a waveform [S] at 16 kHz."""
    from w2vcli.audio import audio_info, load_audio, resampled_length
    from w2vcli.decode.emissions import iter_windows

    if isinstance(audio, np.ndarray):
        wav = np.asarray(audio, dtype=np.float32)
        if wav.ndim != 1:
            raise W2VError(f"align: a waveform must be one channel [S] at 16 kHz, got shape {wav.shape}")
        if emitter.needs_chunking(len(wav)):
            return emitter.stitched(iter_windows([wav], emitter.chunk, emitter.context))
        return emitter.batch([wav])[0], len(wav)
    info = audio_info(audio, check_end=False)
    if emitter.needs_chunking(resampled_length(info.num_samples, info.sample_rate)):
        return emitter.long_file(str(audio))
    wav = load_audio(audio)
    return emitter.batch([wav])[0], len(wav)


def align(model, audio, text: str, options: AlignOptions = AlignOptions(), emission=None) -> Alignment:
    """Align `text` to `audio` (a file path, or a 16 kHz mono waveform [S]) with a CTC model
    (`w2vcli.load_ctc_model`); `emission`: `w2vcli.decode.emissions.EmissionOptions`."""
    from w2vcli.decode.emissions import EmissionOptions, Emitter

    emitter = Emitter(model, emission or EmissionOptions())
    return align_with(emitter, model, audio, text, options)


def align_with(emitter, model, audio, text: str, options: AlignOptions) -> Alignment:
    """`align` with an existing `Emitter` (several files, one model set-up)."""
    words = text_words(text, model.text_rules, model.vocab)
    lp, n = _emissions(emitter, audio)
    boundary = model.vocab.index.get(model.vocab.word_boundary) if model.vocab.word_boundary else None
    name = "" if isinstance(audio, np.ndarray) else str(audio)
    try:
        return align_emissions(lp, words, boundary, emitter.frame_seconds, options, name, n)
    except W2VError as exc:
        raise W2VError(f"{name or 'audio'}: {exc}") from None


def align_items(model, items: list[tuple[str, str, str]], options: AlignOptions, emission, on_result, on_error,
                progress=None):
    """Align (key, audio path, text) items in order: `on_result(key, Alignment)` for each, or
    `on_error(path, message)` for a file that cannot be read or a text that cannot be aligned.
    Returns (files aligned, seconds of audio, w2vcli.decode.transcribe.Stats of the model run)."""
    from w2vcli.decode.emissions import Emitter
    from w2vcli.decode.transcribe import Stats, iter_emissions
    from w2vcli.utils import NoProgress

    emitter = Emitter(model, emission)
    stats = Stats()
    texts: dict[str, tuple[list[TextWord], str]] = {}
    runnable = []
    for key, path, text in items:
        try:
            texts[key] = (text_words(text, model.text_rules, model.vocab), text)
            runnable.append((key, path))
        except W2VError as exc:
            stats.failed.append(path)
            on_error(path, f"{path}: {exc}")
    boundary = model.vocab.index.get(model.vocab.word_boundary) if model.vocab.word_boundary else None
    with (progress or NoProgress)("aligning", len(runnable), "files") as bar:
        for key, path, lp, n in iter_emissions(emitter, runnable, stats, on_error):
            try:
                result = align_emissions(lp, texts[key][0], boundary, emitter.frame_seconds, options, path, n)
            except W2VError as exc:
                stats.failed.append(path)
                on_error(path, f"{path}: {exc}")
            else:
                stats.files += 1
                stats.audio_seconds += n / SAMPLE_RATE
                on_result(key, result)
            bar.advance()
    stats.model_seconds, stats.mode = emitter.model_seconds, str(emitter.mode)
    return stats
