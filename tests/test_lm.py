"""`w2v lm build`: normalised text -> KenLM model + unigram list; exclusion; clear errors."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.decode import lm as lm_mod
from w2vcli.decode.lm import LMBuildConfig, read_sentences, read_unigrams, unigrams_path
from w2vcli.errors import W2VError

kenlm = pytest.importorskip("kenlm")


@pytest.fixture
def lmplz() -> None:
    """Skip where KenLM's programs are not built (the Python module alone cannot build an LM)."""
    try:
        lm_mod.find_kenlm_program("lmplz")
    except W2VError as exc:
        pytest.skip(str(exc))


def test_tiny_lm_loads_and_prefers_corpus_word_order(tiny_lm):
    model = kenlm.Model(str(tiny_lm))
    assert model.order == 3
    assert model.score("THE WHITE WHALE", bos=True, eos=True) > model.score("WHALE WHITE THE", bos=True, eos=True)
    words = read_unigrams(unigrams_path(tiny_lm))
    assert words[0] == "THE" and "WHALE" in words and all(w == w.upper() for w in words)


def test_cli_build_arpa_with_exclusion_and_normalisation(tmp_path, lmplz):
    text = tmp_path / "corpus.txt.gz"
    lines = ["The cat sat on the mat.", "A dog, barking!", "the cat sat on the mat", "Keep me out", ""]
    with gzip.open(text, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    exclude = tmp_path / "dev.jsonl"
    exclude.write_text(json.dumps({"id": "d1", "audio": "/x.flac", "text": "KEEP ME OUT"}) + "\n")
    out = tmp_path / "lm" / "2gram.arpa"
    res = CliRunner().invoke(
        app, ["lm", "build", str(text), "--order", "2", "--out", str(out), "--arpa", "--exclude", str(exclude),
              "--memory", "50M"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    arpa = out.read_text()
    assert arpa.lstrip().startswith("\\data\\") and "ngram 2=" in arpa
    assert "KEEP" not in arpa and "\tCAT\t" in arpa and "BARKING" in arpa  # excluded / normalised
    assert read_unigrams(unigrams_path(out)) == ["THE", "CAT", "MAT", "ON", "SAT", "A", "BARKING", "DOG"]
    assert kenlm.Model(str(out)).order == 2


def test_prune_is_passed_and_validated(tmp_path, lm_text, lmplz):
    out = tmp_path / "p.bin"
    res = CliRunner().invoke(
        app, ["lm", "build", str(lm_text), "-n", "3", "-o", str(out), "--prune", "0 0 1", "--memory", "50M"]
    )
    assert res.exit_code == 0, res.output
    full = tmp_path / "full.arpa"
    pruned = tmp_path / "pruned.arpa"
    for path, prune in ((full, ()), (pruned, (0, 0, 1))):
        lm_mod.build_lm(LMBuildConfig(texts=(lm_text,), out=path, order=3, prune=prune, arpa=True, memory="50M"))

    def trigrams(p):
        return int(next(l for l in p.read_text().splitlines() if l.startswith("ngram 3=")).split("=")[1])

    assert trigrams(pruned) < trigrams(full)
    with pytest.raises(W2VError, match="first threshold must be 0"):
        LMBuildConfig(texts=(lm_text,), out=out, order=3, prune=(1, 1))
    with pytest.raises(W2VError, match="at most 2"):
        LMBuildConfig(texts=(lm_text,), out=out, order=2, prune=(0, 0, 1))
    res = CliRunner().invoke(app, ["lm", "build", str(lm_text), "-o", str(out), "--prune", "0 x"])
    assert res.exit_code == 1 and "--prune" in res.output


def test_missing_programs_name_the_install_script(tmp_path, lm_text, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KENLM_BIN", raising=False)
    monkeypatch.setattr(lm_mod, "REPO_KENLM_BIN", tmp_path / "nothing")
    res = CliRunner().invoke(app, ["lm", "build", str(lm_text), "--out", str(tmp_path / "x.bin")])
    assert res.exit_code == 1
    assert "lmplz" in res.output and "scripts/install_kenlm.sh" in res.output
    assert not (tmp_path / "x.bin").exists()


def test_missing_text_and_empty_corpus(tmp_path, lmplz):
    with pytest.raises(W2VError, match="nope.txt: text file not found"):
        LMBuildConfig(texts=(tmp_path / "nope.txt",), out=tmp_path / "x.bin")
    empty = tmp_path / "empty.txt"
    empty.write_text("!!!\n\n")
    assert list(read_sentences(empty)) == []
    with pytest.raises(W2VError, match="no sentences"):
        lm_mod.build_lm(LMBuildConfig(texts=(empty,), out=tmp_path / "x.bin", order=2))
