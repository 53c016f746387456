"""Transcripts and vocabularies, in any script.

Text rules. Every transcript goes through one normaliser, `TextRules.normalize`, whose rules
are recorded: `w2v prepare` writes them to `text_rules.json` beside the manifests and the
vocabulary, every checkpoint stores them, and fine-tuning validation, `transcribe`,
`lm build` and `score` apply the same rules. In order:

1. Unicode normal form NFKC (compatibility characters become their plain equivalents:
   the ligature "ﬁ" -> "fi", full-width "Ａ" -> "A", "²" -> "2"); typographic apostrophes
   (’ ‘ ʼ ＇) become "'".
2. Case: `upper` (LibriSpeech, the default for English), `lower` (XLS-R, Common Voice) or `keep`.
3. Letters (Unicode category L*) and combining marks (M*) of every script are kept. Digits
   (N*) are kept as characters, or the utterance is skipped (`digits="skip"`): never deleted.
   The zero-width (non-)joiners U+200C/U+200D are kept between letters (Persian, Indic scripts).
   Characters named in `keep` (default the apostrophe) are kept. Punctuation (P*), symbols (S*)
   and everything else become word breaks; whitespace collapses to single spaces.
4. Scripts written without spaces (Chinese, Japanese, Thai, ...; `word_boundary=False`): the
   spaces are removed too, and the units are the characters with no word-boundary token.

`normalize_report` says what changed beyond case and punctuation (digits, symbols removed,
compatibility forms, control or private-use characters), so `prepare` can count and show it.

Vocabulary. The letter vocabulary follows fairseq's letter dictionary (`dict.ltr.txt`: one
"TOKEN COUNT" line per letter, most frequent first, `|` the word boundary) with four special
symbols in front, laid out like the `vocab.json` of Hugging Face's converted wav2vec 2.0 models:

    index 0 "<pad>"  the CTC blank (fairseq's bos `<s>` at index 0 plays the same role)
    index 1 "<s>", 2 "</s>", 3 "<unk>", then "|" and the letters.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
BLANK = "<pad>"
WORD_BOUNDARY = "|"
RULES_FILE = "text_rules.json"  # the text rules of a prepared corpus, beside its manifests

CASES = ("upper", "lower", "keep")
DIGIT_POLICIES = ("keep", "skip")
NORMAL_FORMS = ("NFKC", "NFC")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
_JOINERS = "\u200c\u200d"  # zero-width non-joiner / joiner: part of words in Persian, Indic scripts
# scripts written without spaces between words (unicodedata name prefixes of their letters)
_UNSPACED_SCRIPTS = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "THAI",
                     "LAO", "KHMER", "MYANMAR", "TIBETAN")  # fmt: skip

# what `normalize_report` can say changed, beyond case and punctuation
CHANGE_KINDS = {
    "digits": "contain digits",
    "symbols": "had symbols removed",
    "compat": "had compatibility characters replaced (NFKC)",
    "control": "had control, format or private-use characters removed",
}


_SPOKEN_PUNCTUATION = "%&@#*\u2030\u2031\u00a7\u00b6"  # category P*, but read out loud: reported like symbols


def _fold(c: str, case: str) -> str:
    """One character in the rules' case; case mappings that change the length (ß -> SS) are not applied."""
    folded = c.upper() if case == "upper" else c.lower() if case == "lower" else c
    return folded if len(folded) == 1 else c


def _is_word_char(c: str) -> bool:
    """Letters, combining marks and digits of any script."""
    return unicodedata.category(c)[0] in "LMN"


@dataclass(frozen=True)
class TextRules:
    """How transcripts are normalised; validates itself. Stored as `text_rules.json` and in checkpoints."""

    case: str = "upper"  # upper | lower | keep
    keep: str = "'"  # punctuation or symbols kept as characters (e.g. "'-" for apostrophes and hyphens)
    digits: str = "keep"  # keep: digits are characters; skip: an utterance with digits is left out
    form: str = "NFKC"  # Unicode normal form applied first (NFKC or NFC)
    word_boundary: bool = True  # False for scripts written without spaces: character units, no "|"

    def __post_init__(self) -> None:
        if self.case not in CASES:
            raise W2VError(f"text rules: case must be one of {', '.join(CASES)}, got {self.case!r}")
        if self.digits not in DIGIT_POLICIES:
            raise W2VError(f"text rules: digits must be one of {', '.join(DIGIT_POLICIES)}, got {self.digits!r}")
        if self.form not in NORMAL_FORMS:
            raise W2VError(f"text rules: form must be one of {', '.join(NORMAL_FORMS)}, got {self.form!r}")
        if not isinstance(self.keep, str) or not isinstance(self.word_boundary, bool):
            raise W2VError("text rules: keep must be a string of characters and word_boundary true or false")
        bad = [c for c in self.keep if c.isspace() or c == WORD_BOUNDARY or _is_word_char(c)]
        if bad:
            raise W2VError(f"text rules: keep names characters that are kept anyway or cannot be kept: {bad}")

    # --- normalising --------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        """The normalised transcript; "" when the utterance is to be skipped (digits="skip").

        >>> TextRules().normalize("  Hello, world -- it’s me! ")
        "HELLO WORLD IT'S ME"
        """
        return self.normalize_report(text)[0]

    def normalize_report(self, text: str) -> tuple[str, set[str]]:
        """(normalised text, the CHANGE_KINDS that apply). The text is "" when digits skip it."""
        composed = unicodedata.normalize("NFC", text)
        text = unicodedata.normalize(self.form, composed)
        result, changes = self._clean(text)
        if text != composed and result != self._clean(composed)[0]:  # NFKC changed a kept character
            changes.add("compat")
        if "digits" in changes and self.digits == "skip":
            return "", changes
        return result, changes

    def _clean(self, text: str) -> tuple[str, set[str]]:
        """Steps 2-4 of the module docstring on normal-form text."""
        changes: set[str] = set()
        text = "".join(_fold(c, self.case) for c in text.translate(_APOSTROPHES))
        out: list[str] = []
        for i, c in enumerate(text):
            cat = unicodedata.category(c)
            if _is_word_char(c) or c in self.keep:
                out.append(c)
                if cat[0] == "N":
                    changes.add("digits")
            elif c in _JOINERS and 0 < i < len(text) - 1 and _is_word_char(text[i - 1]) and _is_word_char(text[i + 1]):
                out.append(c)
            else:
                out.append(" ")
                if cat[0] == "S" or c in _SPOKEN_PUNCTUATION:
                    changes.add("symbols")
                elif cat[0] == "C" and not c.isspace():
                    changes.add("control")
        words = "".join(out).split()
        return (" " if self.word_boundary else "").join(words), changes

    def units(self, text: str) -> list[str]:
        """The character tokens of a normalised transcript: words joined by `|` (none at the ends)."""
        return letters(text, self.word_boundary)

    # --- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "text rules") -> "TextRules":
        if not isinstance(d, dict):
            raise W2VError(f"{where}: text rules must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise W2VError(f"{where}: unknown text rule(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        try:
            return cls(**d)
        except W2VError as exc:
            raise W2VError(f"{where}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        _save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextRules":
        """Read `text_rules.json`, or the one in a directory (a prepared corpus)."""
        path = Path(path)
        if path.is_dir():
            path = path / RULES_FILE
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise W2VError(f"cannot read text rules {path}: {exc.strerror}") from None
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested too deep
            raise W2VError(f"{path}: not JSON ({exc})") from None
        return cls.from_dict(d, str(path))

    @classmethod
    def beside(cls, manifest: str | os.PathLike) -> "TextRules | None":
        """The rules recorded for a prepared manifest (`text_rules.json` in its folder), if any."""
        path = Path(manifest).parent / RULES_FILE
        return cls.load(path) if path.is_file() else None

    @classmethod
    def for_vocabulary(cls, tokens: Iterable[str]) -> "TextRules":
        """Rules that fit a vocabulary found without recorded rules (a Hugging Face or fairseq model):
        the case its letters are written in, its non-letter tokens kept, a word boundary if it has one."""
        chars = [t for t in tokens if len(t) == 1 and t != WORD_BOUNDARY]
        cased = [c for c in chars if c.lower() != c.upper()]
        case = "upper" if cased and all(c.isupper() for c in cased) else "lower" if cased and all(c.islower() for c in cased) else "keep"
        keep = "".join(sorted(c for c in chars if not _is_word_char(c) and not c.isspace() and c not in _JOINERS))
        return cls(case=case, keep=keep, word_boundary=WORD_BOUNDARY in tokens)


ENGLISH = TextRules()  # LibriSpeech: upper case, letters and apostrophes


def normalize_text(text: str, rules: TextRules = ENGLISH) -> str:
    """`rules.normalize(text)`; LibriSpeech's rules by default."""
    return rules.normalize(text)


def is_unspaced(texts: Iterable[str]) -> bool:
    """True when most letters of `texts` belong to scripts written without spaces (Han, kana, Thai, ...)."""
    unspaced = total = 0
    for text in texts:
        for c in text:
            if unicodedata.category(c)[0] == "L":
                total += 1
                unspaced += unicodedata.name(c, "").startswith(_UNSPACED_SCRIPTS)
    return total > 0 and unspaced > total / 2


def letters(text: str, word_boundary: bool = True) -> list[str]:
    """The letter tokens of a normalised transcript: words joined by `|` (no boundary at the ends),
    or, without a word boundary, the characters with the spaces left out."""
    return list((WORD_BOUNDARY if word_boundary else "").join(text.split()))


@dataclass
class Vocabulary:
    """An ordered list of output tokens for CTC; index 0 is the blank.

    Three kinds of units: characters with `|` between words (`word_boundary="|"`), characters
    of a script written without spaces (`word_boundary=None`), or sentencepiece pieces
    (`pieces=True`, "▁" starts a word).
    """

    tokens: list[str]
    word_boundary: str | None = WORD_BOUNDARY  # the token between words; None when there is none
    pieces: bool | None = None  # sentencepiece units (None: when there is no word boundary, as w2v 0.1 had it)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != BLANK:
            raise W2VError(f"vocabulary must start with the blank {BLANK!r}, got {self.tokens[:1]}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = [t for t, c in Counter(self.tokens).items() if c > 1]
            raise W2VError(f"vocabulary has duplicate tokens: {dup}")
        if self.pieces is None:
            self.pieces = self.word_boundary is None
        if self.pieces:
            self.word_boundary = None
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def units(self) -> str:
        """"letters" (with a word boundary), "chars" (no word boundary) or "pieces" (sentencepiece)."""
        return "pieces" if self.pieces else "letters" if self.word_boundary else "chars"

    @property
    def blank(self) -> int:
        return 0

    @property
    def unk(self) -> int:
        return self.index.get("<unk>", 0)

    @classmethod
    def letters_from_texts(cls, texts: Iterable[str], rules: TextRules = ENGLISH) -> "Vocabulary":
        """A character vocabulary from normalised transcripts: specials, `|` (if the rules have word
        boundaries), then the characters by falling frequency."""
        return cls.from_counts(letter_counts(texts, rules), word_boundary=rules.word_boundary)

    @classmethod
    def from_counts(cls, counts: Counter, word_boundary: bool = True) -> "Vocabulary":
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        tokens = list(SPECIALS) + [t for t, _ in ordered if t not in SPECIALS]
        if word_boundary and WORD_BOUNDARY not in tokens:
            tokens.insert(len(SPECIALS), WORD_BOUNDARY)
        return cls(tokens, word_boundary=WORD_BOUNDARY if word_boundary else None, pieces=False)

    def encode(self, text: str) -> list[int]:
        """Token ids of a normalised transcript (characters; unknown ones map to `<unk>`)."""
        if self.pieces:
            raise W2VError("this vocabulary holds sentencepiece units: encode with its sentencepiece model")
        return [self.index.get(t, self.unk) for t in letters(text, self.word_boundary is not None)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids that are already CTC-collapsed and blank-free."""
        pieces = [self.tokens[i] for i in ids if self.tokens[i] not in SPECIALS]
        if self.pieces:
            return "".join(pieces).replace("\u2581", " ").strip()
        if self.word_boundary is None:
            return "".join(pieces)
        return " ".join("".join(pieces).replace(self.word_boundary, " ").split())

    def unknown(self, texts: Iterable[str]) -> Counter:
        """Characters of normalised `texts` that this (character) vocabulary lacks, with counts."""
        missing: Counter = Counter()
        for text in texts:
            missing.update(c for c in "".join(text.split()) if c not in self.index)
        return missing

    # --- files -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, int]:
        """`vocab.json` layout (token -> index), as Hugging Face's CTC tokenizer reads it."""
        return {t: i for i, t in enumerate(self.tokens)}

    def save(self, path: str | os.PathLike) -> None:
        _save_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a `vocab.json` (token -> index) or a fairseq `dict.ltr.txt` ("TOKEN COUNT" lines)."""
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise W2VError(f"cannot read vocabulary {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise W2VError(f"{path}: not a vocabulary (not UTF-8 text)") from None
        if path.suffix == ".json":
            try:
                mapping = json.loads(raw)
                tokens = [t for t, _ in sorted(mapping.items(), key=lambda kv: int(kv[1]))]
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:
                raise W2VError(f"{path}: not a token -> index JSON object ({exc})") from None
            if sorted(int(i) for i in mapping.values()) != list(range(len(tokens))):
                raise W2VError(f"{path}: token indices must be 0..{len(tokens) - 1} without gaps")
            return cls.with_boundary(_standard_specials(tokens, path))
        tokens = list(SPECIALS)
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise W2VError(f"{path}:{n}: expected 'TOKEN COUNT', got {line!r}")
            if parts[0] not in tokens:
                tokens.append(parts[0])
        return cls.with_boundary(tokens)

    @classmethod
    def with_boundary(cls, tokens: list[str]) -> "Vocabulary":
        """A character vocabulary whose word boundary is `|` if it holds one (else none)."""
        return cls(tokens, word_boundary=WORD_BOUNDARY if WORD_BOUNDARY in tokens else None, pieces=False)

    def save_fairseq_dict(self, path: str | os.PathLike, counts: Counter | None = None) -> None:
        """Write fairseq's `dict.ltr.txt` (specials left out, as fairseq adds them itself)."""
        counts = counts or Counter()
        with atomic_open(path, "w", encoding="utf-8") as f:
            for t in self.tokens:
                if t not in SPECIALS:
                    f.write(f"{t} {counts.get(t, 0)}\n")


def _save_json(path: str | os.PathLike, obj: dict) -> None:
    """UTF-8 JSON (letters of every script as they are, not \\u-escaped), written atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def _standard_specials(tokens: list[str], where: object) -> list[str]:
    """Hugging Face's spellings of the specials (`[PAD]`, `[UNK]`) as w2v's, the blank moved to index 0.

    Hugging Face's fine-tuning tutorial writes `[UNK]` and `[PAD]` last; the CTC blank is the pad
    token wherever it stands. (For a trained model's head, `load_model` permutes its rows alike.)
    """
    tokens = ["<pad>" if t == "[PAD]" else "<unk>" if t == "[UNK]" else t for t in tokens]
    if BLANK not in tokens:
        raise W2VError(f"{where}: no blank token (<pad> or [PAD]) in the vocabulary")
    return [BLANK] + [t for t in tokens if t != BLANK]


def letter_counts(texts: Iterable[str], rules: TextRules = ENGLISH) -> Counter:
    """Counts of character tokens (including `|` where the rules have word boundaries) over
    normalised transcripts."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(rules.units(text))
    return counts
