"""Transcripts and vocabularies.

Text is normalised LibriSpeech-style: upper-case letters, apostrophes and single spaces.
The letter vocabulary follows fairseq's letter dictionary (`dict.ltr.txt`: one "TOKEN COUNT"
line per letter, most frequent first, `|` the word boundary) with four special symbols in
front, laid out like the `vocab.json` of Hugging Face's converted wav2vec 2.0 models:

    index 0 "<pad>"  the CTC blank (fairseq's bos `<s>` at index 0 plays the same role)
    index 1 "<s>", 2 "</s>", 3 "<unk>", then "|" and the letters.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
BLANK = "<pad>"
WORD_BOUNDARY = "|"
_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")


def normalize_text(text: str) -> str:
    """Upper-case, map anything but letters and apostrophes to spaces, collapse whitespace.

    >>> normalize_text("  Hello, world -- it's me! ")
    "HELLO WORLD IT'S ME"
    """
    text = text.upper().replace("\u2019", "'")
    return " ".join(_NOT_ALLOWED.sub(" ", text).split())


def letters(text: str) -> list[str]:
    """The letter tokens of a normalised transcript: words joined by `|` (no boundary at the ends)."""
    return list(WORD_BOUNDARY.join(text.split()))


@dataclass
class Vocabulary:
    """An ordered list of output tokens for CTC; index 0 is the blank."""

    tokens: list[str]
    word_boundary: str | None = WORD_BOUNDARY  # None for sentencepiece units ("▁" marks words)
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != BLANK:
            raise W2VError(f"vocabulary must start with the blank {BLANK!r}, got {self.tokens[:1]}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = [t for t, c in Counter(self.tokens).items() if c > 1]
            raise W2VError(f"vocabulary has duplicate tokens: {dup}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank(self) -> int:
        return 0

    @property
    def unk(self) -> int:
        return self.index.get("<unk>", 0)

    @classmethod
    def letters_from_texts(cls, texts: Iterable[str]) -> "Vocabulary":
        """A letter vocabulary from transcripts: specials, `|`, then letters by falling frequency."""
        return cls.from_counts(letter_counts(texts))

    @classmethod
    def from_counts(cls, counts: Counter) -> "Vocabulary":
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        tokens = list(SPECIALS) + [t for t, _ in ordered if t not in SPECIALS]
        if WORD_BOUNDARY not in tokens:
            tokens.insert(len(SPECIALS), WORD_BOUNDARY)
        return cls(tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids of a normalised transcript (letters; unknown letters map to `<unk>`)."""
        if self.word_boundary is None:
            raise W2VError("this vocabulary holds sentencepiece units: encode with its sentencepiece model")
        return [self.index.get(t, self.unk) for t in letters(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text from token ids that are already CTC-collapsed and blank-free."""
        pieces = [self.tokens[i] for i in ids if self.tokens[i] not in SPECIALS]
        if self.word_boundary is None:
            return "".join(pieces).replace("\u2581", " ").strip()
        return " ".join("".join(pieces).replace(self.word_boundary, " ").split())

    # --- files -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, int]:
        """`vocab.json` layout (token -> index), as Hugging Face's CTC tokenizer reads it."""
        return {t: i for i, t in enumerate(self.tokens)}

    def save(self, path: str | os.PathLike) -> None:
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")

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
            except (ValueError, TypeError, AttributeError) as exc:
                raise W2VError(f"{path}: not a token -> index JSON object ({exc})") from None
            if sorted(int(i) for i in mapping.values()) != list(range(len(tokens))):
                raise W2VError(f"{path}: token indices must be 0..{len(tokens) - 1} without gaps")
            return cls(tokens)
        tokens = list(SPECIALS)
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise W2VError(f"{path}:{n}: expected 'TOKEN COUNT', got {line!r}")
            if parts[0] not in tokens:
                tokens.append(parts[0])
        return cls(tokens)

    def save_fairseq_dict(self, path: str | os.PathLike, counts: Counter | None = None) -> None:
        """Write fairseq's `dict.ltr.txt` (specials left out, as fairseq adds them itself)."""
        counts = counts or Counter()
        with atomic_open(path, "w", encoding="utf-8") as f:
            for t in self.tokens:
                if t not in SPECIALS:
                    f.write(f"{t} {counts.get(t, 0)}\n")


def letter_counts(texts: Iterable[str]) -> Counter:
    """Counts of letter tokens (including `|`) over normalised transcripts."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(letters(text))
    return counts
