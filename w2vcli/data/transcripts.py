"""Transcripts of a corpus being prepared: normalised by its text rules, with a report of what changed,
and the files every `w2v prepare` writes beside its manifests.

    report = TextReport(rules)
    text = report.normalize(raw)           # None when the rules leave the utterance out (digits="skip")
    report.log("train")                    # counts and examples of what changed beyond case/punctuation
    write_text_files(out, {"train": rows, "dev": rows}, rules)
        -> vocab.json, dict.ltr.txt, words.txt, text_rules.json (and the rare-character report)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.text import CHANGE_KINDS, RULES_FILE, TextRules, Vocabulary, is_unspaced, letter_counts
from w2vcli.utils import atomic_open, log, warn

MAX_EXAMPLES = 3  # shown per kind of change
RARE_CHARACTER = 10  # a character seen fewer times than this in training transcripts is too rare to learn


@dataclass
class TextReport:
    """What normalising a corpus's transcripts changed beyond case and punctuation."""

    rules: TextRules
    utterances: int = 0
    skipped: int = 0  # left out by the rules (digits="skip")
    changed: Counter = field(default_factory=Counter)  # change kind -> utterances
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> [(before, after)]

    def normalize(self, raw: str) -> str | None:
        """The normalised transcript, or None when the rules leave the utterance out (digits="skip");
        counted and remembered for the report."""
        text, changes = self.rules.normalize_report(raw)
        self.utterances += 1
        skip = "digits" in changes and self.rules.digits == "skip"
        self.skipped += skip
        for kind in changes:
            self.changed[kind] += 1
            shown = self.examples.setdefault(kind, [])
            if len(shown) < MAX_EXAMPLES:
                shown.append((raw.strip(), "(skipped)" if skip else text))
        return None if skip else text

    def merge(self, other: "TextReport") -> None:
        self.utterances += other.utterances
        self.skipped += other.skipped
        self.changed.update(other.changed)
        for kind, shown in other.examples.items():
            mine = self.examples.setdefault(kind, [])
            mine.extend(shown[: MAX_EXAMPLES - len(mine)])

    def log(self, name: str) -> None:
        """Warn about every kind of change, with counts and examples; silent when nothing changed."""
        for kind in sorted(self.changed):
            verb = "skipped: they " if kind == "digits" and self.rules.digits == "skip" else ""
            warn(f"{name}: {self.changed[kind]} of {self.utterances} transcripts {verb}{CHANGE_KINDS[kind]}"
                 + (" (kept as characters; --digits skip leaves such utterances out)"
                    if kind == "digits" and self.rules.digits == "keep" else ""))
            for before, after in self.examples.get(kind, []):
                warn(f"  {before!r} -> {after!r}")


def write_text_files(out: Path, subsets: dict[str, list[dict]], rules: TextRules,
                     train: list[str] | None = None) -> Vocabulary:  # fmt: skip
    """`vocab.json` + `dict.ltr.txt` (characters by falling frequency over every subset),
    `words.txt` ("WORD COUNT" over the training subsets: `train`, else names starting "train",
    else all) and `text_rules.json`. Warns about characters too rare in training to learn."""
    texts = [r["text"] for rows in subsets.values() for r in rows if r.get("text")]
    if not texts:
        raise W2VError(f"{out}: no transcripts to build a vocabulary from")
    counts = letter_counts(texts, rules)
    vocab = Vocabulary.from_counts(counts, word_boundary=rules.word_boundary)
    train = train or [n for n in subsets if n.startswith("train")] or list(subsets)
    train_texts = [r["text"] for n in train for r in subsets.get(n, []) if r.get("text")]
    _report_rare(letter_counts(train_texts, rules), counts, rules, ", ".join(train))
    rules.save(out / RULES_FILE)
    vocab.save(out / "vocab.json")
    vocab.save_fairseq_dict(out / "dict.ltr.txt", counts)
    words: Counter = Counter()
    for text in train_texts:
        words.update(text.split())
    with atomic_open(out / "words.txt", "w", encoding="utf-8") as f:
        for w, c in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
            f.write(f"{w} {c}\n")
    return vocab


def _report_rare(train_counts: Counter, all_counts: Counter, rules: TextRules, train_name: str) -> None:
    boundary = "|" if rules.word_boundary else None
    rare = sorted((c for c, n in train_counts.items() if n < RARE_CHARACTER and c != boundary),
                  key=lambda c: (train_counts[c], c))
    unseen = sorted(c for c in all_counts if c not in train_counts and c != boundary)
    if rare:
        shown = ", ".join(f"{c!r} ({train_counts[c]})" for c in rare[:20])
        warn(f"{len(rare)} character(s) occur fewer than {RARE_CHARACTER} times in the training transcripts "
             f"({train_name}) and are too rare to learn: {shown}{' ...' if len(rare) > 20 else ''}")
    if unseen:
        warn(f"{len(unseen)} character(s) occur only outside the training transcripts ({train_name}): "
             f"{', '.join(map(repr, unseen[:20]))}")
    if not rare and not unseen:
        log(f"vocabulary: {len(train_counts)} characters, each seen at least {RARE_CHARACTER} times in training")


def check_same_rules(out: Path, rules: TextRules, force: bool, redone: set[str] | None = None) -> None:
    """Refuse to add subsets normalised by other rules than those already prepared in `out`.

    With `force`, other rules are allowed when every finished subset (a `<name>.done` marker) is
    among `redone` (None: whatever is there is redone), so no manifest keeps the old rules."""
    path = out / RULES_FILE
    if not path.is_file():
        return
    before = TextRules.load(path)
    if before == rules:
        return
    kept = sorted(p.name[: -len(".done")] for p in out.glob("*.done") if p.name[: -len(".done")] not in (redone or ()))
    if force and (redone is None or not kept):
        return
    also = f" ({', '.join(kept)} would keep the old rules: redo them too)" if force else ""
    raise W2VError(f"{out} was prepared with other text rules ({path}: {before.to_dict()}); "
                   f"use the same options, another --out, or --force to redo every subset{also}")


def choose_rules(case: str, keep: str | None = None, digits: str = "keep", word_boundary: bool | None = None,
                 sample: list[str] | None = None, rules_file: str | None = None) -> TextRules:
    """The text rules of a `prepare` run: `rules_file` as it is, or the options; `word_boundary=None`
    decides from a `sample` of raw transcripts (no word boundary for scripts written without spaces)."""
    if rules_file:
        return TextRules.load(rules_file)
    if word_boundary is None:
        word_boundary = not is_unspaced(sample or [])
        if not word_boundary:
            log("transcripts are in a script written without spaces: character units, no word boundary "
                "(--word-boundary to override)")
    return TextRules(case=case, keep="'" if keep is None else keep, digits=digits, word_boundary=word_boundary)
