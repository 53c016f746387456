"""CTC decoding of log-probabilities [T,V]: greedy (argmax) and beam search with pyctcdecode.

Both decoders share one small interface: `decoder.decode(log_probs[T,V]) -> Hypothesis`, the
text plus each word's first frame and one-past-last frame (the caller turns frames into
seconds with the model's frame stride), its confidence, its units' frames, and with
`nbest` > 1 the best beams and their scores. `make_decoder(vocab, DecodingOptions(...))` picks one.

Word confidence, the same for greedy and beam search: the product over the word's units of the
unit's probability at the frame, within the word's frames, where the model gives it the most:
the chance that every unit of the word is right if the units' errors were independent. It is
only as good as the model's calibration (docs/transcribe.md).

Special tokens: index 0 is the CTC blank. The other specials of w2v's letter vocabulary
(`<s>`, `</s>`, `<unk>`) never appear in text: greedy decoding collapses repeats and then
drops them (what `Vocabulary.decode` does), and beam search adds their probability mass to
the blank's, which gives the same text for the same frame-wise choices.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from w2vcli.alignment.viterbi import ctc_graph, forced_align
from w2vcli.decode.lm import read_unigrams, unigrams_path
from w2vcli.errors import W2VError
from w2vcli.messages import kenlm_reason
from w2vcli.text import BLANK, SPECIALS, Vocabulary
from w2vcli.utils import quiet_stderr, warn

SP_WORD = "\u2581"  # sentencepiece's word-start marker


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn emissions into words; validates itself."""

    beam_size: int = 0  # 0: greedy (argmax) decoding; > 0: beam search through pyctcdecode
    lm: str | None = None  # KenLM binary or ARPA file (needs beam search)
    alpha: float = 0.5  # LM weight (natural-log LM score is multiplied by it)
    beta: float = 1.0  # word insertion bonus (added per word)
    unigrams: str | None = None  # LM word list or lexicon (first field); default: LM.unigrams.txt
    hotwords: tuple[str, ...] = ()  # words or phrases to favour (beam search only)
    hotword_weight: float = 10.0  # pyctcdecode's hotword weight
    beam_prune_logp: float = -10.0  # drop beams this far below the best one (natural log)
    token_min_logp: float = -5.0  # skip tokens below this log-probability at a frame (unless argmax)
    unk_score_offset: float = -10.0  # log-score penalty for words outside the unigram list
    nbest: int = 1  # beams returned with their scores (beam search)
    strict: bool = False  # words outside the unigram list / lexicon are impossible, not penalised
    unit_times: bool = False  # beam search: each word's units with their frames (greedy always has them)

    def __post_init__(self) -> None:
        if self.nbest < 1 or (self.nbest > 1 and self.beam_size < self.nbest):
            raise W2VError(f"--nbest {self.nbest} needs beam search with --beam >= {self.nbest}")
        if self.strict and self.lm is None:
            raise W2VError("--strict needs --lm and a lexicon (--lexicon FILE, or the LM's unigram list)")
        if self.beam_size < 0:
            raise W2VError(f"--beam must be >= 0 (0 = greedy), got {self.beam_size}")
        if self.lm is not None and self.beam_size == 0:
            raise W2VError("--lm needs beam search: give --beam N with N > 0")
        if self.hotwords and self.beam_size == 0:
            raise W2VError("--hotwords needs beam search: give --beam N with N > 0 (or --lm)")
        if self.lm is not None and not Path(self.lm).is_file():
            raise W2VError(f"{self.lm}: language model not found")
        if self.unigrams is not None and not Path(self.unigrams).is_file():
            raise W2VError(f"{self.unigrams}: unigram list not found")
        if self.unigrams is not None and self.lm is None:
            raise W2VError("--unigrams/--lexicon only make sense with --lm")

    @property
    def method(self) -> str:
        return "beam" if self.beam_size > 0 else "greedy"


@dataclass(frozen=True)
class Unit:
    unit: str  # a letter (or sentencepiece piece) of a word
    start: int  # first frame
    end: int  # one past the last frame


@dataclass(frozen=True)
class Word:
    word: str
    start: int  # first frame
    end: int  # one past the last frame
    confidence: float | None = None  # see the module docstring
    units: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class Hypothesis:
    text: str
    words: list[Word] = field(default_factory=list)
    score: float | None = None  # beam search: combined acoustic + LM score
    nbest: list[tuple[str, float]] = field(default_factory=list)  # (text, score) of the best beams


def word_confidence(log_probs: np.ndarray, ids: list[int], start: int, end: int) -> float:
    """Product over units `ids` of their highest probability on frames [start, end) (module docstring)."""
    if not ids or end <= start:
        return 0.0
    return float(np.exp(min(0.0, float(log_probs[start:end][:, ids].max(axis=0).sum()))))  # logits: capped at 1


def unit_times(log_probs: np.ndarray, ids: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """(first frame, one past the last) of each unit of a word: the best CTC path of `ids` through
    the word's frames (w2vcli/alignment/viterbi.py), widened by a few frames where they are too few."""
    g = ctc_graph(ids)
    T = len(log_probs)
    need = int(g.need[g.start].min()) + 1
    if end - start < need:
        start, end = max(0, start - need), min(T, end + need)
    path = forced_align(log_probs[start:end], g, beam=np.inf).states
    out = []
    for k in range(len(ids)):
        frames = np.flatnonzero(path == 2 * k + 1)
        out.append((start + int(frames[0]), start + int(frames[-1]) + 1))
    return out


class GreedyDecoder:
    """Argmax per frame, collapse repeats, drop blanks and specials; words from `|` or `▁`."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.skip = np.array([t in SPECIALS for t in vocab.tokens])  # blank and other specials

    def decode(self, log_probs: np.ndarray) -> Hypothesis:
        """log_probs [T,V] (or logits: only the argmax matters)."""
        ids = np.asarray(log_probs).argmax(axis=-1)  # [T]
        if ids.size == 0:
            return Hypothesis("")
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # first frame of each run
        ends = np.r_[starts[1:], ids.size]
        tokens, boundary = self.vocab.tokens, self.vocab.word_boundary
        words: list[Word] = []
        piece, w_start, w_end = "", 0, 0
        units: list[Unit] = []
        unit_ids: list[int] = []

        def close() -> None:
            conf = word_confidence(log_probs, unit_ids, w_start, w_end)
            words.append(Word(piece, w_start, w_end, conf, tuple(units)))
            units.clear()
            unit_ids.clear()

        for tok_id, s, e in zip(ids[starts].tolist(), starts.tolist(), ends.tolist()):
            if self.skip[tok_id]:
                continue
            tok = tokens[tok_id]
            if self.vocab.pieces and tok.startswith(SP_WORD):  # sentencepiece: a new word starts
                if piece:
                    close()
                piece, tok = "", tok[len(SP_WORD):]
                if not tok:
                    continue
            elif tok == boundary:
                if piece:
                    close()
                piece = ""
                continue
            if not piece:
                w_start = s
            piece += tok
            w_end = e
            units.append(Unit(tok, s, e))
            unit_ids.append(tok_id)
        if piece:
            close()
        return Hypothesis(" ".join(w.word for w in words), words)


class BeamSearchDecoder:
    """CTC prefix beam search with an optional KenLM n-gram and hotwords (pyctcdecode)."""

    def __init__(self, vocab: Vocabulary, options: DecodingOptions):
        try:
            # lazy: pyctcdecode (11 ms) only for beam search; greedy decoding, the default, never loads it
            from pyctcdecode import build_ctcdecoder
            from pyctcdecode.language_model import load_unigram_set_from_arpa
        except ImportError:
            raise W2VError("beam search needs pyctcdecode: pip install 'pyctcdecode>=0.5' 'numpy<2'") from None
        if options.lm is not None and vocab.units == "chars":
            raise W2VError("--lm: this model's units are characters of a script written without spaces (no word "
                           "boundary), so a word n-gram cannot guide the beam search; decode without --lm")
        if options.lm is not None:
            try:
                # lazy: only --lm needs kenlm; checked here so a broken install is named (0 ms: pyctcdecode loaded it)
                import kenlm  # noqa: F401
            except ImportError:
                raise W2VError("--lm needs the kenlm module: pip install kenlm") from None
        logging.getLogger("pyctcdecode").setLevel(logging.ERROR)  # we warn about what matters ourselves
        self.options = options
        # keep the blank, drop the other specials (their mass goes to the blank), relabel
        self.keep = [i for i, t in enumerate(vocab.tokens) if t not in SPECIALS or t == BLANK]
        self.merge = [i for i, t in enumerate(vocab.tokens) if t in SPECIALS and t != BLANK]
        labels = []
        for i in self.keep:
            tok = vocab.tokens[i]
            labels.append("" if tok == BLANK else " " if tok == vocab.word_boundary else tok)
        unigrams = None
        self.vocab = vocab
        if options.lm is not None:
            arpa = _check_lm_file(options.lm)
            path = options.unigrams or (str(unigrams_path(options.lm)) if unigrams_path(options.lm).is_file() else None)
            if path is not None:
                unigrams = read_unigrams(path)
            elif arpa:
                try:
                    unigrams = sorted(load_unigram_set_from_arpa(options.lm) - {"<s>", "</s>", "<unk>"})
                except ValueError as exc:  # also UnicodeDecodeError
                    raise W2VError(f"{options.lm}: not a usable ARPA file ({exc})") from None
            else:
                if options.strict:
                    raise W2VError(f"--strict needs a word list: no {unigrams_path(options.lm)} beside {options.lm}; "
                                   "give --lexicon FILE")
                warn(
                    f"no unigram list for {options.lm} (expected {unigrams_path(options.lm)}, which `w2v lm build` "
                    "writes): beam search treats every word as known; pass --unigrams"
                )
        self.lexicon = frozenset(unigrams) if options.strict and unigrams is not None else None
        # --strict: a word outside the lexicon gets a penalty no beam survives (pyctcdecode needs a finite one)
        try:
            with quiet_stderr(KENLM_NOISE):  # KenLM's loading banner and progress bar
                self._decoder = build_ctcdecoder(
                    labels, kenlm_model_path=options.lm, unigrams=unigrams, alpha=float(options.alpha),
                    beta=float(options.beta),
                    unk_score_offset=STRICT_OFFSET if options.strict else float(options.unk_score_offset),
                )  # fmt: skip
        except (OSError, RuntimeError, ValueError) as exc:
            reason = kenlm_reason(str(exc))  # KenLM's text, read in w2vcli/messages.py
            raise W2VError(f"cannot set up beam search{f' with {options.lm}' if options.lm else ''}: {reason}") from None

    def set_lm_weights(self, alpha: float, beta: float) -> None:
        """Change α and β without reloading the LM (used by `--tune`)."""
        self._decoder.reset_params(alpha=float(alpha), beta=float(beta))

    def _relabel(self, log_probs: np.ndarray) -> np.ndarray:
        """[T,V] -> [T,V'] over the kept labels, specials' mass added to the blank."""
        lp = np.asarray(log_probs, dtype=np.float32)
        if not self.merge:
            return lp
        out = lp[:, self.keep]
        out[:, 0] = np.logaddexp.reduce(lp[:, [0, *self.merge]], axis=1)
        return out

    def decode(self, log_probs: np.ndarray) -> Hypothesis:
        """log_probs [T,V]: log-softmax outputs of the CTC model."""
        if len(log_probs) == 0:
            return Hypothesis("")
        o = self.options
        # --strict: a frame's unlikely tokens (the blank too) stay in play, so a beam can go round a
        # word that is not in the lexicon even where the acoustics are sure of it
        min_logp = min(o.token_min_logp, STRICT_TOKEN_MIN_LOGP) if self.lexicon is not None else o.token_min_logp
        beams = self._decoder.decode_beams(
            self._relabel(log_probs), beam_width=o.beam_size, beam_prune_logp=o.beam_prune_logp,
            token_min_logp=min_logp, hotwords=list(o.hotwords) or None, hotword_weight=o.hotword_weight,
        )  # fmt: skip
        if self.lexicon is not None:  # --strict: beams with a word outside the lexicon are impossible
            beams = [b for b in beams if all(w in self.lexicon for w in b[0].split())] or [
                ("", None, [], 0.0, -np.inf)]
        text, _, word_frames, _, score = beams[0]
        words = []
        for w, (s, e) in word_frames:
            s, e = int(s), int(e)
            ids = [self.vocab.index[c] for c in w if c in self.vocab.index] if not self.vocab.pieces else []
            units: tuple[Unit, ...] = ()
            if o.unit_times and ids and len(ids) == len(w):
                units = tuple(Unit(c, a, b) for c, (a, b) in zip(w, unit_times(log_probs, ids, s, e)))
            words.append(Word(w, s, e, word_confidence(log_probs, ids, s, e) if ids else None, units))
        nbest = [(b[0], float(b[4])) for b in beams[: o.nbest]] if o.nbest > 1 else []
        return Hypothesis(text, words, float(score), nbest)


STRICT_OFFSET = -1e6  # --strict: the log-score of a word outside the lexicon (no beam survives it)
STRICT_TOKEN_MIN_LOGP = -30.0  # --strict: tokens above this log-probability are tried at each frame

# what KenLM writes to stderr while it loads a model: "Loading the LM will be faster if you build a
# binary file.", "Reading PATH", a "----5---10---...--100" scale and a row of stars
KENLM_NOISE = r"^(Loading the LM will be faster|Reading |-+5-+10-|\*+\s*$)"
KENLM_BINARY = b"mmap lm http://kheafield.com/code"  # how KenLM's binary files begin


def _check_lm_file(path: str) -> bool:
    """True for an ARPA file, False for a KenLM binary; a W2VError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise W2VError(f"{path}: cannot read the language model ({exc.strerror})") from None
    if head.lstrip().startswith(b"\\data\\"):
        return True
    if head.startswith(KENLM_BINARY):
        return False
    raise W2VError(f"{path}: not a KenLM language model (neither an ARPA file nor a KenLM binary; "
                   "`w2v lm build` makes one)")


def make_decoder(vocab: Vocabulary, options: DecodingOptions) -> GreedyDecoder | BeamSearchDecoder:
    """The decoder the options ask for."""
    return BeamSearchDecoder(vocab, options) if options.method == "beam" else GreedyDecoder(vocab)


# --- decoding in worker processes ---------------------------------------------------------------


class _Worker:
    """The decoder of one worker process. A pool's processes are forked with their pool's decoder
    (`DecoderPool` passes it to `_start_worker`, and fork hands it over without pickling), so the
    parent process holds no decoder of its own here and several pools can live side by side."""

    decoder: GreedyDecoder | BeamSearchDecoder | None = None


def _start_worker(decoder: GreedyDecoder | BeamSearchDecoder) -> None:
    # The parent owns its workers' lifetime. A Ctrl-C (SIGINT to the terminal's process group) or
    # `systemctl stop` (SIGTERM to the whole cgroup) also reaches the workers: dying there, they
    # were re-forked by the pool (inheriting a server's listening socket) and left the parent's
    # close hanging, so they ignore both; the parent stops them in `DecoderPool.close`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _Worker.decoder = decoder


def _timed_decode(decoder, log_probs: np.ndarray) -> tuple[Hypothesis, float]:
    t0 = time.perf_counter()
    hyp = decoder.decode(log_probs)
    return hyp, time.perf_counter() - t0


def _worker_decode(task: tuple[np.ndarray, tuple[float, float] | None]) -> tuple[Hypothesis, float]:
    log_probs, weights = task
    if weights is not None:
        _Worker.decoder.set_lm_weights(*weights)
    return _timed_decode(_Worker.decoder, log_probs)


class _Done:
    """An already computed result with the interface of multiprocessing's AsyncResult."""

    def __init__(self, value):
        self.value = value

    def ready(self) -> bool:
        return True

    def get(self):
        return self.value


class DecoderPool:
    """Runs a decoder in `jobs` forked processes (pyctcdecode's beam search is pure Python and
    uses one core), so decoding overlaps with the acoustic model and scales with cores.
    With `jobs` <= 1, or where `fork` is unavailable, it decodes in this process.

    `submit(log_probs, weights=None)` returns a handle whose `get()` gives (Hypothesis, seconds);
    `weights` = (alpha, beta) sets the LM weights first (used by `--tune`). `callback(result)` /
    `error_callback(exc)` are called with the result, from a thread of the pool (`w2v serve`
    waits for them without blocking its event loop).
    """

    def __init__(self, decoder: GreedyDecoder | BeamSearchDecoder, jobs: int = 1):
        self.decoder, self.jobs, self._pool = decoder, 1, None
        self._pending, self._lock = 0, threading.Lock()  # tasks submitted and not yet finished
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            self._pool = multiprocessing.get_context("fork").Pool(jobs, _start_worker, (decoder,))
            self.jobs = jobs
        elif jobs > 1:
            warn("--jobs needs the 'fork' start method (Linux); decoding in one process")

    def submit(self, log_probs: np.ndarray, weights: tuple[float, float] | None = None, callback=None,
               error_callback=None):
        if self._pool is not None:
            with self._lock:
                self._pending += 1
            return self._pool.apply_async(_worker_decode, ((log_probs, weights),), callback=self._finished(callback),
                                          error_callback=self._finished(error_callback))
        if weights is not None:
            self.decoder.set_lm_weights(*weights)
        try:
            done = _Done(_timed_decode(self.decoder, log_probs))
        except Exception as exc:
            if error_callback is None:
                raise
            error_callback(exc)
            return None
        if callback is not None:
            callback(done.value)
        return done

    def map(self, emissions: list[np.ndarray], weights: tuple[float, float] | None = None) -> list[tuple[Hypothesis, float]]:
        return [h.get() for h in [self.submit(lp, weights) for lp in emissions]]

    def _finished(self, then):
        def done(value) -> None:
            with self._lock:
                self._pending -= 1
            if then is not None:
                then(value)
        return done

    def close(self) -> None:
        """Stop the workers: at once when tasks are still pending (an error, Ctrl-C: their results
        are not wanted), else after they take the pool's sentinel. Workers ignore SIGTERM, so a
        pending pool's are killed (SIGKILL) before multiprocessing's terminate."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if self._pending == 0:
            pool.close()
        else:
            for worker in list(pool._pool):  # multiprocessing keeps its processes there
                worker.kill()
            pool.terminate()
        pool.join()

    def __enter__(self) -> "DecoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
