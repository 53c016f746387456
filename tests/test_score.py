"""`w2v score` and w2vcli.score against jiwer: WER, CER and S/D/I counts, not only totals."""

from __future__ import annotations

import json

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.score import align, read_transcripts, score_texts, tokenize

# small alphabets and vocabularies so that equal-cost alignments (ties) are frequent
WORDS = st.sampled_from(["A", "B", "AB", "BA", "THE", "CAT", "IT'S", "C"])
SENTENCE = st.lists(WORDS, min_size=0, max_size=12).map(" ".join)


def _jiwer_counts(out) -> tuple[int, int, int, int]:
    return out.hits, out.substitutions, out.deletions, out.insertions


def _counts(c) -> tuple[int, int, int, int]:
    return c.hits, c.substitutions, c.deletions, c.insertions


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=6))
def test_matches_jiwer_on_random_sentences(pairs):
    refs = {str(i): r for i, (r, _) in enumerate(pairs)}
    hyps = {str(i): h for i, (_, h) in enumerate(pairs)}
    report = score_texts(refs, hyps)
    ref_list = [r for r, _ in pairs]
    hyp_list = [h for _, h in pairs]
    words = jiwer.process_words(ref_list, hyp_list)
    chars = jiwer.process_characters(ref_list, hyp_list)
    assert _counts(report.words) == _jiwer_counts(words)
    assert _counts(report.chars) == _jiwer_counts(chars)
    assert report.wer == pytest.approx(words.wer, abs=0, rel=1e-15)
    assert report.cer == pytest.approx(chars.cer, abs=0, rel=1e-15)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc ", max_size=40), st.text(alphabet="abc ", max_size=40))
def test_character_alignment_counts_match_jiwer(ref, hyp):
    ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
    pairs = align(ref, hyp)
    out = jiwer.process_characters(ref, hyp)
    ops = [op for op, _, _ in pairs]
    assert (ops.count("="), ops.count("S"), ops.count("D"), ops.count("I")) == _jiwer_counts(out)


def test_empty_reference_and_empty_hypothesis():
    # empty hypothesis: everything deleted
    r = score_texts({"a": "THE CAT"}, {"a": ""})
    assert (r.words.deletions, r.words.ref_len, r.wer) == (2, 2, 1.0)
    assert r.cer == jiwer.cer("THE CAT", "")
    # empty reference: jiwer reports the number of insertions as the "rate"
    r = score_texts({"a": ""}, {"a": "X Y"})
    assert r.words.insertions == 2 and r.wer == jiwer.wer("", "X Y") == 2
    r = score_texts({"a": "", "b": "A B"}, {"a": "X Y", "b": "A C"})
    assert r.wer == jiwer.wer(["", "A B"], ["X Y", "A C"])
    assert score_texts({"a": ""}, {"a": ""}).wer == 0.0


def test_normalisation_and_missing_ids():
    warnings = []
    r = score_texts(
        {"u1": "Hello, world!", "u2": "it's fine"}, {"u1": "HELLO WORLD", "u3": "X"}, on_missing=warnings.append
    )
    assert r.missing == ["u2"] and r.extra == ["u3"]
    assert any("u2" in w for w in warnings) and any("u3" in w for w in warnings)
    assert (r.words.hits, r.words.deletions, r.words.ref_len) == (2, 2, 4)
    assert tokenize("Hello, world!", normalize=False) == ["Hello,", "world!"]


def test_cli_json_table_and_details(tmp_path):
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        "\n".join(json.dumps(r) for r in [{"id": "a", "text": "the cat sat"}, {"id": "b", "text": "hello world"}]) + "\n"
    )
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("a THE HAT SAT ON\nb hello world\n")
    runner = CliRunner()
    res = runner.invoke(app, ["score", "--ref", str(ref), "--hyp", str(hyp), "--json", "--details", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    expected = jiwer.process_words(["THE CAT SAT", "HELLO WORLD"], ["THE HAT SAT ON", "HELLO WORLD"])
    assert out["wer"] == expected.wer
    assert (out["substitutions"], out["deletions"], out["insertions"], out["hits"]) == (1, 0, 1, 4)
    assert out["cer"] == jiwer.cer(["THE CAT SAT", "HELLO WORLD"], ["THE HAT SAT ON", "HELLO WORLD"])
    text = (tmp_path / "d" / "alignments.txt").read_text()
    assert "REF: the CAT sat ***" in text and "HYP: the HAT sat ON" in text
    errs = (tmp_path / "d" / "errs.txt").read_text()
    assert "1\tCAT -> HAT" in errs and "1\tON" in errs
    res = runner.invoke(app, ["score", "--ref", str(ref), "--hyp", str(hyp)])
    assert res.exit_code == 0 and "WER" in res.stdout and "CER" in res.stdout


def test_bad_inputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    with pytest.raises(Exception, match="bad.jsonl:1"):
        read_transcripts(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("a X\na Y\n")
    res = CliRunner().invoke(app, ["score", "--ref", str(dup), "--hyp", str(dup)])
    assert res.exit_code == 1 and "duplicate id 'a'" in res.output
