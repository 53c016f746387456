import json
from collections import Counter

import pytest

from w2vcli.errors import W2VError
from w2vcli.text import SPECIALS, Vocabulary, letter_counts, normalize_text


def test_normalize_text():
    assert normalize_text("  Hello, world -- it\u2019s me! ") == "HELLO WORLD IT'S ME"
    assert normalize_text("") == ""


def test_letter_vocabulary_round_trip(tmp_path):
    texts = ["HELLO WORLD", "IT'S ME"]
    vocab = Vocabulary.letters_from_texts(texts)
    assert vocab.tokens[: len(SPECIALS)] == list(SPECIALS)
    assert vocab.blank == 0
    ids = vocab.encode("HELLO WORLD")
    assert vocab.decode(ids) == "HELLO WORLD"
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocab.tokens
    vocab.save_fairseq_dict(tmp_path / "dict.ltr.txt", letter_counts(texts))
    assert Vocabulary.load(tmp_path / "dict.ltr.txt").tokens == vocab.tokens


def test_frequency_order():
    vocab = Vocabulary.from_counts(Counter({"A": 1, "B": 5, "|": 3}))
    assert vocab.tokens[4:] == ["B", "|", "A"]


def test_bad_vocab_files(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text(json.dumps({"<pad>": 0, "A": 2}))
    with pytest.raises(W2VError, match="without gaps"):
        Vocabulary.load(bad)
    bad_dict = tmp_path / "dict.ltr.txt"
    bad_dict.write_text("A 3\nB\n")
    with pytest.raises(W2VError, match="dict.ltr.txt:2"):
        Vocabulary.load(bad_dict)
    with pytest.raises(W2VError, match="blank"):
        Vocabulary(["A", "B"])
