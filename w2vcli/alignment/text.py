"""The user's text as the model's units, with a way back to the words and characters as written.

    "Hello, wörld -- it’s me!"  -> words "Hello,"  "wörld"  "--"  "it’s"  "me!"
                                   units  H E L L O | W Ö R L D | I T ' S | M E

Each whitespace-separated word of the text is normalised by the model's text rules
(`w2vcli.text.TextRules`) on its own; punctuation-only words ("--") have no units and travel
with the word before them (or after, at the start), so the output keeps every character of
the text. A word's characters are matched to its units cluster by cluster (a letter and its
combining marks), so "wörld" gives the times of "w", "ö", ... as written. Characters the
model's vocabulary lacks (digits for a letters-only model) are aligned by the garbage unit.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass

from w2vcli.errors import W2VError
from w2vcli.text import TextRules, Vocabulary

STAR = -1  # the unit id of the garbage unit (the caller appends its emission column)


@dataclass
class TextWord:
    """One word of the text: its spelling as written and its units."""

    text: str  # as written, with any punctuation-only words that travel with it
    units: list[int]  # vocabulary ids (STAR for characters the vocabulary lacks)
    chars: list[str]  # per unit, the characters of the text it came from ("" for a "|" inside)


def _clusters(word: str) -> list[str]:
    """A word's characters, each with the combining marks that follow it."""
    out: list[str] = []
    for c in unicodedata.normalize("NFC", word):
        if out and unicodedata.category(c)[0] == "M":
            out[-1] += c
        else:
            out.append(c)
    return out


def text_words(text: str, rules: TextRules, vocab: Vocabulary) -> list[TextWord]:
    """The words of `text` with their units (see the module docstring)."""
    if vocab.pieces:
        raise W2VError("align: this model's units are sentencepiece pieces; w2v aligns character vocabularies only")
    rules = dataclasses.replace(rules, digits="keep")  # a digit is aligned (by the garbage unit), never dropped
    boundary = vocab.word_boundary
    words: list[TextWord] = []
    pending = ""  # punctuation-only words before the first spoken one
    for token in text.split():
        norm = rules.normalize(token)
        if not norm:
            if words:
                words[-1].text += " " + token
            else:
                pending += token + " "
            continue
        letters = "".join(norm.split()) if not boundary else norm
        units, chars = [], []
        # match characters to units cluster by cluster; otherwise the units stand for themselves
        pieces = [(c, rules.normalize(c).replace(" ", "")) for c in _clusters(token)]
        mapped = "".join(p for _, p in pieces) == "".join(norm.split())
        if mapped:
            pos = 0
            for c, p in pieces:
                for k, u in enumerate(p):
                    if boundary and pos > 0 and norm[pos] == " ":  # a word break inside ("rock-and-roll")
                        units.append(vocab.index[boundary])
                        chars.append("")
                        pos += 1
                    units.append(vocab.index.get(u, STAR))
                    chars.append(c if k == 0 else "")  # a character that gives several units ("ﬁ") times from the first
                    pos += 1
        else:
            for u in letters:
                units.append(vocab.index[boundary] if u == " " else vocab.index.get(u, STAR))
                chars.append("" if u == " " else u)
        words.append(TextWord(pending + token, units, chars))
        pending = ""
    if not words:
        raise W2VError("align: the text has no words the model could speak (empty after normalising)")
    return words
