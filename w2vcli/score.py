"""Word and character error rates with substitution/deletion/insertion counts and alignments.

The edit distance is Hyyrö's bit-parallel Levenshtein algorithm ("A Note on Bit-Parallel
Alignment Computation", 2004) with the same backtrace and the same stripping of a common
prefix and suffix as `rapidfuzz.distance.Levenshtein.editops`, which `jiwer` uses. Equal-cost
alignments are therefore broken the same way, so not only the error totals but the S/D/I
counts agree with `jiwer` (`tests/test_score.py` checks that on random strings).

Conventions (the same as `jiwer` 4):
- WER = (S + D + I) / N over all utterances together, N the number of reference words.
  When every reference is empty, N = 0 and the "rate" is the number of insertions.
- CER is the same over characters of the words joined by single spaces: spaces count.
- Text is normalised on both sides first by the corpus's text rules (`w2vcli.text.TextRules`,
  LibriSpeech's by default: upper case, letters and apostrophes); `normalize=False` only splits
  on whitespace.
- Scripts written without spaces (rules with `word_boundary=False`): a transcript is one
  "word", so WER is the sentence error rate; CER is the figure to quote (`headline`).
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

from w2vcli.errors import W2VError
from w2vcli.text import ENGLISH, TextRules
from w2vcli.utils import atomic_open, warn

# one aligned position: (op, ref index or None, hyp index or None); op in "=", "S", "D", "I"
AlignedPair = tuple[str, "int | None", "int | None"]


# --- edit distance ------------------------------------------------------------------------------


def _bit_vectors(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """Vertical +1 / -1 delta bit vectors of the Levenshtein matrix, one pair per hyp position.

    Bit i of `vp[j]` is set when D[i+1][j+1] - D[i][j+1] == +1, of `vn[j]` when it is -1,
    where D[i][j] is the distance between ref[:i] and hyp[:j].
    """
    n = len(ref)
    full = (1 << n) - 1
    match: dict[Hashable, int] = {}  # token -> bit mask of its positions in ref
    for i, tok in enumerate(ref):
        match[tok] = match.get(tok, 0) | (1 << i)
    vp, vn = full, 0
    vps, vns = [], []
    for tok in hyp:
        x = match.get(tok, 0)
        d0 = ((((x & vp) + vp) ^ vp) | x | vn) & full  # diagonal zero-delta
        hp = (vn | ~(d0 | vp)) & full  # horizontal +1
        hn = d0 & vp  # horizontal -1
        hp = ((hp << 1) | 1) & full
        hn = (hn << 1) & full
        vp = (hn | ~(d0 | hp)) & full
        vn = hp & d0
        vps.append(vp)
        vns.append(vn)
    return vps, vns


def align(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> list[AlignedPair]:
    """A minimal Levenshtein alignment of two token sequences, ties broken like rapidfuzz.

    >>> align("ab", "b")
    [('D', 0, None), ('=', 1, 0)]
    """
    prefix = 0
    while prefix < min(len(ref), len(hyp)) and ref[prefix] == hyp[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(ref), len(hyp)) - prefix and ref[-1 - suffix] == hyp[-1 - suffix]:
        suffix += 1
    r = ref[prefix : len(ref) - suffix]
    h = hyp[prefix : len(hyp) - suffix]
    vps, vns = _bit_vectors(r, h) if r else ([], [])

    core: list[AlignedPair] = []  # built backwards
    i, j = len(r), len(h)
    while i and j:
        if (vps[j - 1] >> (i - 1)) & 1:  # D[i][j] came from D[i-1][j]: ref token deleted
            i -= 1
            core.append(("D", i + prefix, None))
            continue
        j -= 1
        if j and (vns[j - 1] >> (i - 1)) & 1:  # came from D[i][j-1]: hyp token inserted
            core.append(("I", None, j + prefix))
        else:  # diagonal: match or substitution
            i -= 1
            core.append(("=" if r[i] == h[j] else "S", i + prefix, j + prefix))
    while i:
        i -= 1
        core.append(("D", i + prefix, None))
    while j:
        j -= 1
        core.append(("I", None, j + prefix))
    core.reverse()
    head = [("=", k, k) for k in range(prefix)]
    tail = [("=", len(ref) - suffix + k, len(hyp) - suffix + k) for k in range(suffix)]
    return head + core + tail


# --- counts -------------------------------------------------------------------------------------


@dataclass
class ErrorCounts:
    """Edit operations summed over one or more utterances."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def hyp_len(self) -> int:
        return self.hits + self.substitutions + self.insertions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """errors / reference length; the insertion count when the reference is empty (as jiwer)."""
        return self.errors / self.ref_len if self.ref_len else float(self.insertions)

    def add(self, other: "ErrorCounts") -> None:
        self.hits += other.hits
        self.substitutions += other.substitutions
        self.deletions += other.deletions
        self.insertions += other.insertions

    @classmethod
    def from_alignment(cls, pairs: list[AlignedPair]) -> "ErrorCounts":
        ops = Counter(op for op, _, _ in pairs)
        return cls(ops["="], ops["S"], ops["D"], ops["I"])


def headline(unspaced: bool) -> str:
    """The rate to quote: "cer" for scripts written without spaces (where a transcript is one
    "word" and WER the sentence error rate), else "wer"."""
    return "cer" if unspaced else "wer"


def tokenize(text: str, normalize: bool = True, rules: TextRules = ENGLISH) -> list[str]:
    """Words of a transcript, normalised by `rules` first unless `normalize` is False."""
    return (rules.normalize(text) if normalize else text).split()


@dataclass
class Utterance:
    """One scored utterance: its words, word alignment and counts."""

    id: str
    ref: list[str]
    hyp: list[str]
    alignment: list[AlignedPair]
    words: ErrorCounts
    chars: ErrorCounts
    missing: bool = False  # no hypothesis: everything counted as deleted


def score_utterance(utt_id: str, ref: list[str], hyp: list[str], missing: bool = False) -> Utterance:
    """Align words, and characters of the space-joined words, of one utterance."""
    pairs = align(ref, hyp)
    chars = ErrorCounts.from_alignment(align(" ".join(ref), " ".join(hyp)))
    return Utterance(utt_id, ref, hyp, pairs, ErrorCounts.from_alignment(pairs), chars, missing)


@dataclass
class ScoreReport:
    """Corpus-level WER/CER and the per-utterance details behind them."""

    utterances: list[Utterance]
    missing: list[str] = field(default_factory=list)  # ref ids without a hypothesis
    extra: list[str] = field(default_factory=list)  # hyp ids without a reference
    words: ErrorCounts = field(default_factory=ErrorCounts)
    chars: ErrorCounts = field(default_factory=ErrorCounts)
    unspaced: bool = False  # text without word boundaries: CER is the headline, WER the sentence error rate

    def __post_init__(self) -> None:
        for utt in self.utterances:
            self.words.add(utt.words)
            self.chars.add(utt.chars)

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def headline(self) -> str:
        """The figure to quote: "cer" for scripts written without spaces, else "wer"."""
        return headline(self.unspaced)

    def ranking(self) -> list[float]:
        """The rates in the order a better result is told by (lower is better): the headline
        first, the other rate to break ties (fine-tuning's best.pt)."""
        return [self.cer, self.wer] if self.unspaced else [self.wer, self.cer]

    @property
    def note(self) -> str | None:
        if not self.unspaced:
            return None
        return ("text without word boundaries (text rules: word_boundary false): each transcript counts as one "
                "word, so WER is the sentence error rate; quote CER")

    def to_json(self) -> dict:
        w, c = self.words, self.chars
        return {
            "wer": w.rate, "cer": c.rate,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions,
            "hits": w.hits, "words": w.ref_len, "hyp_words": w.hyp_len,
            "chars": c.ref_len, "char_substitutions": c.substitutions, "char_deletions": c.deletions,
            "char_insertions": c.insertions, "char_hits": c.hits,
            "utterances": len(self.utterances), "missing": len(self.missing), "extra": len(self.extra),
            "headline": self.headline, **({"note": self.note} if self.note else {}),
        }  # fmt: skip


def score_texts(
    refs: dict[str, str], hyps: dict[str, str], normalize: bool = True, on_missing=warn,
    rules: TextRules = ENGLISH,
) -> ScoreReport:
    """Score hypotheses against references matched by id (in reference order), both normalised by
    `rules` unless `normalize` is False.

    A reference id without a hypothesis counts as all deletions; a hypothesis id without a
    reference is ignored. Both are reported through `on_missing` (a warning by default).
    """
    missing = [k for k in refs if k not in hyps]
    extra = [k for k in hyps if k not in refs]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        on_missing(f"{len(missing)} reference id(s) have no hypothesis, counted as all deletions: {shown}")
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        on_missing(f"{len(extra)} hypothesis id(s) have no reference, ignored: {shown}")
    utts = [
        score_utterance(k, tokenize(refs[k], normalize, rules), tokenize(hyps.get(k, ""), normalize, rules),
                        k not in hyps)
        for k in refs
    ]
    return ScoreReport(utts, missing, extra, unspaced=not rules.word_boundary)


# --- reading transcripts ------------------------------------------------------------------------


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """id -> text from a JSONL manifest (`id`, `text` fields) or a Kaldi-style `ID TEXT` file.

    The format is JSONL for a `.jsonl`/`.json` file (also gzipped), else decided by the first
    non-empty line: a JSON object means JSONL. Duplicate ids, a line that is not a JSON object
    (JSONL) or that looks like one (Kaldi), a JSON line without `id` or `text`, and unreadable
    files are errors naming file:line.
    """
    path = Path(path)
    if not path.is_file():
        raise W2VError(f"{path}: transcript file not found")
    out: dict[str, str] = {}
    is_json: bool | None = True if Path(path.name.removesuffix(".gz")).suffix in (".jsonl", ".json") else None
    try:
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if is_json is None:
                    is_json = line.startswith("{")
                if is_json:
                    try:
                        row = json.loads(line)
                    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
                        raise W2VError(f"{path}:{n}: not a JSON object ({exc})") from None
                    if not isinstance(row, dict) or "id" not in row:
                        raise W2VError(f"{path}:{n}: JSON line has no 'id' field")
                    if not isinstance(row.get("text"), str):
                        raise W2VError(f"{path}:{n}: id {row['id']!r} has no 'text' string")
                    key, text = str(row["id"]), row["text"]
                else:
                    if line.startswith("{"):
                        raise W2VError(f"{path}:{n}: a JSON object in a Kaldi-style 'ID TEXT' file "
                                       f"(line 1 is not JSON; name the file .jsonl if it is JSONL)")
                    key, _, text = line.partition(" ")
                    if "\t" in key:
                        key, _, rest = key.partition("\t")
                        text = f"{rest} {text}"
                if key in out:
                    raise W2VError(f"{path}:{n}: duplicate id {key!r}")
                out[key] = text
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise W2VError(f"{path}: cannot read ({exc})") from None
    return out


def check_ids(refs: dict[str, str], hyps: dict[str, str], ref_name: str, hyp_name: str) -> None:
    """A W2VError when there is nothing to score: no references, no hypotheses, or no id in common
    (scoring would report a WER of 100 % from deletions alone)."""
    if not refs:
        raise W2VError(f"{ref_name}: no references (empty file)")
    if not hyps:
        raise W2VError(f"{hyp_name}: no hypotheses (empty file)")
    if not any(k in hyps for k in refs):
        raise W2VError(f"{hyp_name} and {ref_name} have no utterance id in common (e.g. {next(iter(hyps))!r} "
                       f"and {next(iter(refs))!r}): hypotheses of another set?")


# --- details (icefall's recogs-*/errs-* idea) ---------------------------------------------------


def aligned_lines(utt: Utterance) -> tuple[str, str, str]:
    """REF/HYP lines padded to common column widths, `***` for a missing word, and an op line."""
    ref_cols, hyp_cols, op_cols = [], [], []
    for op, i, j in utt.alignment:
        r = utt.ref[i] if i is not None else "***"
        h = utt.hyp[j] if j is not None else "***"
        if op == "=":
            r = h = r.lower()
        width = max(len(r), len(h))
        ref_cols.append(r.ljust(width))
        hyp_cols.append(h.ljust(width))
        op_cols.append(("" if op == "=" else op).ljust(width))
    return " ".join(ref_cols).rstrip(), " ".join(hyp_cols).rstrip(), " ".join(op_cols).rstrip()


def write_details(report: ScoreReport, out_dir: str | os.PathLike, top: int = 30) -> list[Path]:
    """Write `recogs.txt`, `alignments.txt`, `errs.txt` and `per_utt.jsonl` into `out_dir`."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in ("recogs.txt", "alignments.txt", "errs.txt", "per_utt.jsonl")}
    subs: Counter = Counter()
    dels: Counter = Counter()
    ins: Counter = Counter()
    for utt in report.utterances:
        for op, i, j in utt.alignment:
            if op == "S":
                subs[(utt.ref[i], utt.hyp[j])] += 1
            elif op == "D":
                dels[utt.ref[i]] += 1
            elif op == "I":
                ins[utt.hyp[j]] += 1

    with atomic_open(paths["recogs.txt"], encoding="utf-8") as f:
        for utt in report.utterances:
            f.write(f"{utt.id}:\tref={utt.ref}\n{utt.id}:\thyp={utt.hyp}\n")

    with atomic_open(paths["alignments.txt"], encoding="utf-8") as f:
        f.write("# matches in lower case, errors in upper case; *** marks a deleted or inserted word\n\n")
        for utt in report.utterances:
            w = utt.words
            note = "  (no hypothesis)" if utt.missing else ""
            f.write(
                f"{utt.id}  S={w.substitutions} D={w.deletions} I={w.insertions} "
                f"N={w.ref_len} WER={100 * w.rate:.2f}%{note}\n"
            )
            ref, hyp, ops = aligned_lines(utt)
            f.write(f"REF: {ref}\nHYP: {hyp}\nOPS: {ops}\n\n")

    w = report.words
    with atomic_open(paths["errs.txt"], encoding="utf-8") as f:
        f.write(f"%WER {100 * report.wer:.2f}\n%CER {100 * report.cer:.2f}\n")
        f.write(
            f"Errors: {w.insertions} insertions, {w.deletions} deletions, {w.substitutions} "
            f"substitutions, over {w.ref_len} reference words ({w.hits} correct)\n\n"
        )
        f.write("PER-UTT DETAILS: correct words, or (ref->hyp), * for nothing\n")
        for utt in report.utterances:
            parts = []
            for op, i, j in utt.alignment:
                if op == "=":
                    parts.append(utt.ref[i])
                else:
                    parts.append(f"({utt.ref[i] if i is not None else '*'}->{utt.hyp[j] if j is not None else '*'})")
            f.write(f"{utt.id}:\t{' '.join(parts)}\n")
        f.write(f"\nSUBSTITUTIONS (most frequent {top}): count ref -> hyp\n")
        for (r, h), n in subs.most_common(top):
            f.write(f"{n}\t{r} -> {h}\n")
        f.write(f"\nDELETIONS (most frequent {top}): count ref\n")
        for r, n in dels.most_common(top):
            f.write(f"{n}\t{r}\n")
        f.write(f"\nINSERTIONS (most frequent {top}): count hyp\n")
        for h, n in ins.most_common(top):
            f.write(f"{n}\t{h}\n")

    with atomic_open(paths["per_utt.jsonl"], encoding="utf-8") as f:
        for utt in report.utterances:
            row = {
                "id": utt.id, "wer": utt.words.rate, "cer": utt.chars.rate,
                "substitutions": utt.words.substitutions, "deletions": utt.words.deletions,
                "insertions": utt.words.insertions, "words": utt.words.ref_len,
                "ref": " ".join(utt.ref), "hyp": " ".join(utt.hyp), "missing": utt.missing,
            }  # fmt: skip
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return list(paths.values())
