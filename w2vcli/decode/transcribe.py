"""Transcription: audio in memory, files or a manifest in, transcripts out; and α/β tuning on a dev set.

    model = w2vcli.load_ctc_model("exp/ft/best.pt")
    print(transcribe(model, wav).hyp.text)         # wav: 16 kHz mono float [S], numpy or torch; or a path
    with Transcriber(model, TranscribeOptions(jobs=2)) as t:   # emitter, decoder, decoder processes: yours
        texts = [t(w).hyp.text for w in wavs]
    stats = transcribe_files(model, ["a.wav", "b.flac"], TranscribeOptions(), on_result=lambda t: print(t.hyp.text))
    stats = transcribe_files_to(model, ["a.wav"], TranscribeOptions(), Output("srt", out_dir=Path("subs")))

Files are read with `w2vcli.audio` (mono, 16 kHz). Files no longer than `chunk + stride`
seconds go through the model in padded batches; longer ones are streamed in overlapping
windows (`emissions.py`). A file that is missing or cannot be decoded is reported through
`on_error` with its name, counted in `Stats.failed`, and the others go on.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from w2vcli.audio import SAMPLE_RATE, as_waveform, audio_info, load_audio, resampled_length
from w2vcli.decode.ctc import DecoderPool, DecodingOptions, Hypothesis, make_decoder
from w2vcli.decode.emissions import EmissionOptions, Emitter
from w2vcli.decode.output import Output, transcript_writer
from w2vcli.errors import W2VError
from w2vcli.utils import NoProgress, warn, write_jsonl


@dataclass(frozen=True)
class TranscribeOptions:
    emission: EmissionOptions = field(default_factory=EmissionOptions)
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    jobs: int = 1  # beam-search decoder processes, overlapping with the model (1: in this process)
    timestamps: str = "word"  # word | char: also each word's units (letters or pieces) with times

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise W2VError(f"--jobs must be >= 1, got {self.jobs}")
        if self.timestamps not in ("word", "char"):
            raise W2VError(f"--timestamps must be word or char, got {self.timestamps!r}")


@dataclass
class Stats:
    """Counts and timings of one run (for the summary line and benchmarks)."""

    files: int = 0
    failed: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    load_seconds: float = 0.0  # reading and resampling audio (short files; streamed files count as model)
    model_seconds: float = 0.0
    decode_seconds: float = 0.0  # summed over decoder processes
    decode_jobs: int = 1
    wall_seconds: float = 0.0
    mode: str = ""  # how the model ran: fp32 | bf16 | fp16 | int8 (Emitter.mode)

    def summary(self) -> str:
        rtf = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        share = 100 * self.decode_seconds / self.decode_jobs / self.wall_seconds if self.wall_seconds else 0.0
        procs = f" in {self.decode_jobs} processes" if self.decode_jobs > 1 else ""
        return (
            f"transcribed {self.files} file(s), {self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({rtf:.1f} audio s per wall s; model{' (' + self.mode + ')' if self.mode else ''} "
            f"{self.model_seconds:.1f} s, decoder {self.decode_seconds:.1f} s"
            f"{procs} = {share:.0f}% of the wall time, audio loading {self.load_seconds:.1f} s)"
            + (f"; {len(self.failed)} failed" if self.failed else "")
        )


@dataclass(frozen=True)
class AudioData:
    """Audio already in memory (an array, standard input, an upload), under a name for messages
    and outputs ("-" for standard input)."""

    name: str
    wav: np.ndarray  # [S] float32, mono, 16 kHz


def iter_emissions(
    emitter: Emitter, items: list[tuple[str, str | AudioData]], stats: Stats, on_error: Callable[[str, str], None]
) -> Iterator[tuple[str, str, np.ndarray, int]]:
    """(key, name, log_probs[T,V], samples at 16 kHz) for each (key, path or AudioData) that can be
    read, in order; `name` is the path, or the AudioData's name."""
    pending: list[tuple[str, str, np.ndarray]] = []

    def flush():
        outs = emitter.batch([w for _, _, w in pending])
        done = [(k, p, lp, len(w)) for (k, p, w), lp in zip(pending, outs)]
        pending.clear()
        return done

    for key, path in items:
        if isinstance(path, AudioData):
            if emitter.needs_chunking(len(path.wav)):
                yield from flush()
                lp, n = emitter.stitched(emitter.windows(path.wav))
                yield key, path.name, lp, n
                continue
            pending.append((key, path.name, path.wav))
            if len(pending) == emitter.options.batch_size:
                yield from flush()
            continue
        try:
            info = audio_info(path, check_end=False)
            n = resampled_length(info.num_samples, info.sample_rate)
            if emitter.needs_chunking(n):
                yield from flush()
                lp, n = emitter.long_file(path)
                yield key, path, lp, n
                continue
            t0 = time.perf_counter()
            wav = load_audio(path)
            stats.load_seconds += time.perf_counter() - t0
        except W2VError as exc:
            stats.failed.append(path)
            on_error(path, str(exc))
            continue
        pending.append((key, path, wav))
        if len(pending) == emitter.options.batch_size:
            yield from flush()
    yield from flush()


@dataclass(frozen=True)
class Transcript:
    """One file's result, typed until a writer renders it (`to_dict`, w2vcli/decode/formats.py)."""

    audio: str  # the path as given
    hyp: Hypothesis  # words with frames, confidences, units, n-best
    num_samples: int  # at 16 kHz
    frame_seconds: float  # the model's frame stride
    chars: bool = False  # `to_dict` includes each word's units (--timestamps char)

    def to_dict(self) -> dict:
        return transcript(self.audio, self.hyp, self.num_samples, self.frame_seconds, self.chars)


def transcript(path: str, hyp: Hypothesis, num_samples: int, frame_seconds: float, chars: bool = False) -> dict:
    """`{"audio", "text", "words": [{"word", "start", "end", "confidence"}], "duration"}` with times
    in seconds; `chars`: each word's "chars" [{"char", "start", "end"}]; "nbest" [{"text", "score"}]
    when the decoder returned several beams."""
    fs = frame_seconds
    words = []
    for w in hyp.words:
        d = {"word": w.word, "start": round(w.start * fs, 3), "end": round(w.end * fs, 3)}
        if w.confidence is not None:
            d["confidence"] = round(w.confidence, 4)
        if chars:
            d["chars"] = [{"char": u.unit, "start": round(u.start * fs, 3), "end": round(u.end * fs, 3)} for u in w.units]
        words.append(d)
    out = {"audio": path, "text": hyp.text, "words": words, "duration": round(num_samples / SAMPLE_RATE, 3)}
    if hyp.nbest:
        out["nbest"] = [{"text": t, "score": round(sc, 4)} for t, sc in hyp.nbest]
    return out


def model_decoder(model, options):
    """The decoder for `model`'s vocabulary, after `check_lm_rules`."""
    if options.lm is not None:
        from w2vcli.decode.lm import rules_path
        from w2vcli.text import TextRules

        path = rules_path(options.lm)
        if path.is_file():
            check_lm_rules(TextRules.load(path), model.text_rules, options.lm)
    return make_decoder(model.vocab, options)


def check_lm_rules(lm_rules, model_rules, lm) -> None:
    """Refuse an LM whose words are in another case than the model's output (upper vs lower: no
    LM word could ever match); warn about a milder difference (kept punctuation, digits, normal
    form, a kept case), where some words are spelled differently."""
    if lm_rules == model_rules:
        return
    fix = ("rebuild it with `w2v lm build TEXT --rules RULES --out LM`, RULES being the model's text rules "
           "(the text_rules.json beside its checkpoint)")
    if {lm_rules.case, model_rules.case} == {"upper", "lower"}:
        raise W2VError(f"--lm {lm} holds {lm_rules.case}-case words and the model writes {model_rules.case} case, "
                       f"so no LM word can match its output; {fix}")
    differ = ", ".join(f"{k} {v!r} (model: {model_rules.to_dict()[k]!r})"
                       for k, v in lm_rules.to_dict().items() if v != model_rules.to_dict()[k])
    warn(f"--lm {lm} was built with other text rules than the model's: {differ}; words with those characters "
         f"are spelled unlike the model's output; {fix}")


def _default_error(path: str, message: str) -> None:
    warn(message if path in message else f"{path}: {message}")


class Transcriber:
    """A model set up to transcribe: its `Emitter`, decoder and decoder processes, owned by the
    caller (several can live side by side; nothing is kept in module state). Close it, or use it
    as a context manager, to stop the decoder processes of `options.jobs` > 1.

    `decoder`: an existing decoder for the model's vocabulary (one loaded LM shared by several
    transcribers); by default one is made from `options.decoding` (`model_decoder`).
    """

    def __init__(self, model, options: TranscribeOptions = TranscribeOptions(), decoder=None):
        self.model, self.options = model, options
        self.decoder = decoder if decoder is not None else model_decoder(model, options.decoding)
        self.emitter = Emitter(model, options.emission)
        self.pool = DecoderPool(self.decoder, options.jobs if options.decoding.method == "beam" else 1)

    def __call__(self, audio, name: str | None = None) -> Transcript:
        """The transcript of one recording: a path, or a 16 kHz mono waveform [S] (numpy array or
        torch tensor, floats in [-1, 1]); a W2VError when it cannot be read."""
        source = audio if isinstance(audio, (str, os.PathLike)) else AudioData(name or "", as_waveform(audio, name or "audio"))
        errors: list[str] = []
        out: list[Transcript] = []
        self.items([("", source)], lambda _k, t: out.append(t), lambda _p, m: errors.append(m))
        if errors:
            raise W2VError(errors[0])
        return out[0]

    def items(
        self, items: list[tuple[str, str | AudioData]], on_result: Callable[[str, Transcript], None],
        on_error: Callable[[str, str], None] = _default_error, progress=NoProgress,
    ) -> Stats:
        """Transcribe (key, path or AudioData) items; `on_result(key, Transcript)` is called in item
        order; `progress(description, total, unit)`: a `w2vcli.utils.ProgressBar` to draw one."""
        t_start, model_seconds = time.perf_counter(), self.emitter.model_seconds
        stats = Stats()
        inflight: deque = deque()  # (key, name, samples, handle) in item order
        chars = self.options.timestamps == "char"
        with progress("transcribing", len(items), "files") as bar:

            def finish() -> None:
                key, name, n, handle = inflight.popleft()
                hyp, seconds = handle.get()
                stats.decode_seconds += seconds
                stats.files += 1
                stats.audio_seconds += n / SAMPLE_RATE
                on_result(key, Transcript(name, hyp, n, self.emitter.frame_seconds, chars))
                bar.advance()

            for key, name, lp, n in iter_emissions(self.emitter, items, stats, lambda p, m: (on_error(p, m), bar.advance())):
                inflight.append((key, name, n, self.pool.submit(lp)))
                while inflight and (inflight[0][3].ready() or len(inflight) > 4 * self.pool.jobs):
                    finish()
            while inflight:
                finish()
        stats.decode_jobs = self.pool.jobs
        stats.model_seconds, stats.mode = self.emitter.model_seconds - model_seconds, str(self.emitter.mode)
        stats.wall_seconds = time.perf_counter() - t_start
        return stats

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "Transcriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def transcribe(model, audio, options: TranscribeOptions = TranscribeOptions()) -> Transcript:
    """The transcript of one recording (a path, or a 16 kHz mono waveform [S], numpy or torch)
    with a CTC model (`w2vcli.load_ctc_model`); for many, keep one `Transcriber`."""
    with Transcriber(model, options) as t:
        return t(audio)


def transcribe_items(
    model,
    items: list[tuple[str, str | AudioData]],
    options: TranscribeOptions,
    on_result: Callable[[str, Transcript], None],
    on_error: Callable[[str, str], None] = _default_error,
    progress=NoProgress,
) -> Stats:
    """Transcribe (key, path or AudioData) items; `on_result(key, Transcript)` is called in item order."""
    with Transcriber(model, options) as t:
        return t.items(items, on_result, on_error, progress)


def transcribe_files(model, paths: list, options: TranscribeOptions, on_result, on_error=_default_error,
                     progress=NoProgress) -> Stats:
    """Transcribe audio files (paths, or `AudioData`) in the order given; `on_result(Transcript)` per readable file."""
    items = [(p.name if isinstance(p, AudioData) else p, p) for p in paths]
    return transcribe_items(model, items, options, lambda _k, t: on_result(t), on_error, progress)


def transcribe_files_to(model, paths: list, options: TranscribeOptions, output: Output, progress=NoProgress) -> Stats:
    """Transcribe audio files and write each transcript where `output` says, in the order given
    (w2vcli/decode/output.py); a txt stream of several files puts each file's path first."""
    with transcript_writer(output, with_path=len(paths) > 1) as write:
        return transcribe_files(model, paths, options, write, progress=progress)


def manifest_items(rows: list[dict]) -> list[tuple[str, str]]:
    """(id, audio) of manifest rows, longest first (less padding per batch, memory errors early)."""
    def length(row):
        return row.get("num_samples", 0) / max(1, row.get("sample_rate", SAMPLE_RATE))

    return [(str(r["id"]), str(r["audio"])) for r in sorted(rows, key=length, reverse=True)]


def transcribe_manifest(model, rows: list[dict], options: TranscribeOptions, on_error=_default_error,
                        progress=NoProgress) -> tuple[list[dict], Stats]:
    """Hypothesis rows `{"id", "audio", "text", "words", "duration"}` in manifest order."""
    results: dict[str, dict] = {}
    stats = transcribe_items(model, manifest_items(rows), options, lambda k, t: results.__setitem__(k, t.to_dict()),
                             on_error, progress)
    out = [{"id": str(r["id"]), **results[str(r["id"])]} for r in rows if str(r["id"]) in results]
    return out, stats


def transcribe_manifest_to(model, rows: list[dict], options: TranscribeOptions, out: str | os.PathLike,
                           progress=NoProgress) -> Stats:
    """`transcribe_manifest`, its hypothesis rows written to `out` (JSONL, atomically)."""
    hyps, stats = transcribe_manifest(model, rows, options, progress=progress)
    write_jsonl(out, hyps)
    return stats


# --- α/β tuning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    alpha: float | None  # None for the greedy baseline
    beta: float | None
    wer: float
    cer: float


def tune_pairs(alphas: list[float], betas: list[float], trials: int = 0, seed: int = 0) -> list[tuple[float, float]]:
    """The grid alphas x betas, or `trials` random pairs drawn uniformly within their ranges."""
    if trials <= 0:
        return [(a, b) for a in alphas for b in betas]
    rng = random.Random(seed)
    return [
        (round(rng.uniform(min(alphas), max(alphas)), 3), round(rng.uniform(min(betas), max(betas)), 3))
        for _ in range(trials)
    ]


def coarse_pairs(alphas: list[float], betas: list[float]) -> list[tuple[float, float]]:
    """Every other value of each axis (both ends kept), crossed: where `tune_lm(grid=...)` starts."""
    def every_other(values: list[float]) -> list[float]:
        return sorted(set(values[::2]) | {values[-1]})

    return [(a, b) for a in every_other(alphas) for b in every_other(betas)]


def grid_neighbours(alphas: list[float], betas: list[float], pair: tuple[float, float]) -> list[tuple[float, float]]:
    """The pairs of the grid next to `pair` (one step along either axis or both)."""
    i, j = alphas.index(pair[0]), betas.index(pair[1])
    return [(alphas[a], betas[b]) for a in range(max(i - 1, 0), min(i + 2, len(alphas)))
            for b in range(max(j - 1, 0), min(j + 2, len(betas))) if (a, b) != (i, j)]


def search_grid(score: Callable[[float, float], tuple], pairs: list[tuple[float, float]],
                grid: tuple[list[float], list[float]] | None = None,
                more: Callable[[int], None] = lambda n: None) -> dict[tuple[float, float], tuple]:
    """Score `pairs` (lower is better); with `grid`, then the untried grid neighbours of the best
    pair so far, until the best has none left. `more(n)` hears of each round of n further pairs.
    Returns every pair's score."""
    scores: dict[tuple[float, float], tuple] = {}
    todo = list(pairs)
    while todo:
        for pair in todo:
            scores[pair] = score(*pair)
        best = min(scores, key=scores.get)
        todo = [] if grid is None else [p for p in grid_neighbours(*grid, best) if p not in scores]
        if todo:
            more(len(todo))
    return scores


def tune_lm(
    model, rows: list[dict], options: TranscribeOptions, pairs: list[tuple[float, float]], on_error=_default_error,
    grid: tuple[list[float], list[float]] | None = None, progress=NoProgress,
) -> tuple[list[TuneResult], Stats]:
    """WER of beam search with each (α, β) on a dev manifest; emissions are computed once.

    With `grid` = (alphas, betas), `pairs` is a coarse part of that grid (`coarse_pairs`), and
    the grid neighbours of the best pair so far are tried until the best one has no untried
    neighbour: a local search that reaches the grid's best in a fraction of its pairs when WER
    falls smoothly towards it. Results come sorted by WER (then CER); the greedy baseline is
    included with α = β = None.
    """
    from w2vcli.decode.ctc import GreedyDecoder
    from w2vcli.score import score_texts

    if options.decoding.lm is None:
        raise W2VError("--tune needs --lm")
    missing = [str(r.get("id")) for r in rows if not isinstance(r.get("text"), str)]
    if missing:
        raise W2VError(f"--tune needs reference text in the manifest; no 'text' for id {missing[0]}")
    refs = {str(r["id"]): r["text"] for r in rows}
    t_start = time.perf_counter()
    stats = Stats()
    emitter = Emitter(model, options.emission)
    emissions: dict[str, np.ndarray] = {}
    with progress("emissions", len(rows), "files") as bar:
        for key, _path, lp, n in iter_emissions(emitter, manifest_items(rows), stats, lambda p, m: on_error(p, m)):
            emissions[key] = lp
            stats.files += 1
            stats.audio_seconds += n / SAMPLE_RATE
            bar.advance()
    stats.model_seconds, stats.mode = emitter.model_seconds, str(emitter.mode)

    keys = list(emissions)

    def wer_of(texts: list[str]) -> tuple[float, float]:
        hyps = dict(zip(keys, texts))
        report = score_texts({k: refs[k] for k in keys}, hyps, on_missing=lambda _m: None, rules=model.text_rules)
        return report.wer, report.cer

    # scripts written without spaces: WER is the sentence error rate, CER decides (w2vcli/score.py)
    def rank(r: TuneResult) -> tuple[float, float]:
        return (r.cer, r.wer) if not model.text_rules.word_boundary else (r.wer, r.cer)

    greedy = GreedyDecoder(model.vocab)
    results = [TuneResult(None, None, *wer_of([greedy.decode(emissions[k]).text for k in keys]))]
    decoder = model_decoder(model, options.decoding)
    with progress("tuning", len(pairs), "(α, β) pairs") as bar, DecoderPool(decoder, options.jobs) as pool:
        def score(alpha: float, beta: float) -> tuple[float, float]:
            out = pool.map([emissions[k] for k in keys], weights=(alpha, beta))
            stats.decode_seconds += sum(sec for _, sec in out)
            results.append(TuneResult(alpha, beta, *wer_of([hyp.text for hyp, _ in out])))
            bar.advance()
            return rank(results[-1])

        search_grid(score, pairs, grid, bar.add_total)
        stats.decode_jobs = pool.jobs
    stats.wall_seconds = time.perf_counter() - t_start
    results.sort(key=rank)
    return results, stats
