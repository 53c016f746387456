"""`lm build` reads the text rules beside a plain-text corpus and refuses a word-count list;
`transcribe --lm` refuses an LM in the other case than the model's output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.decode.transcribe import check_lm_rules
from w2vcli.errors import W2VError
from w2vcli.text import TextRules


def _need_kenlm():
    from w2vcli.decode.lm import find_kenlm_program

    try:
        find_kenlm_program("lmplz")
    except W2VError as exc:
        pytest.skip(str(exc))


def test_rules_beside_a_plain_text_corpus_are_used(tmp_path):
    _need_kenlm()
    data = tmp_path / "de"
    data.mkdir()
    TextRules(case="lower").save(data / "text_rules.json")
    (data / "train.txt").write_text("Über den Fluß fährt ein Schiff\nein schiff fährt\n", encoding="utf-8")
    out = tmp_path / "lm.arpa"
    res = CliRunner().invoke(app, ["lm", "build", str(data / "train.txt"), "--order", "2", "--arpa", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"normalising with {data / 'text_rules.json'}" in res.output
    arpa = out.read_text(encoding="utf-8")
    assert "über" in arpa and "ÜBER" not in arpa
    assert TextRules.load(f"{out}.text_rules.json").case == "lower"


def test_texts_with_different_rules_are_refused(tmp_path):
    for name, case in (("a", "lower"), ("b", "upper")):
        (tmp_path / name).mkdir()
        TextRules(case=case).save(tmp_path / name / "text_rules.json")
        (tmp_path / name / "train.txt").write_text("some words\n")
    res = CliRunner().invoke(app, ["lm", "build", str(tmp_path / "a" / "train.txt"), str(tmp_path / "b" / "train.txt"),
                                   "--out", str(tmp_path / "lm.bin")])
    assert res.exit_code == 1 and "different text rules" in res.output


def test_a_word_count_list_is_refused(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("der 120\ndie 98\nund 40\nschiff 4\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["lm", "build", str(words), "--out", str(tmp_path / "lm.bin")])
    assert res.exit_code == 1 and "'WORD COUNT' lines" in res.output and "train.txt" in res.output
    assert not (tmp_path / "lm.bin").exists()


def test_an_lm_in_the_other_case_is_refused_a_milder_difference_warns(capsys):
    with pytest.raises(W2VError, match="holds upper-case words and the model writes lower case.*--rules"):
        check_lm_rules(TextRules(case="upper"), TextRules(case="lower"), "lm.bin")
    check_lm_rules(TextRules(case="lower", keep="'-"), TextRules(case="lower"), "lm.bin")
    assert "keep \"'-\" (model: \"'\")" in capsys.readouterr().err
    check_lm_rules(TextRules(case="lower"), TextRules(case="lower"), "lm.bin")
    assert capsys.readouterr().err == ""


def test_finetune_and_score_say_which_rules_they_use(tmp_path, capsys):
    """docs/languages.md: `finetune`, `lm build` and `score` each say in a log line which rules they use."""
    from types import SimpleNamespace

    from w2vcli.train.vocab import resolve_text_rules

    data = tmp_path / "de"
    data.mkdir()
    TextRules(case="lower").save(data / "text_rules.json")
    manifest = data / "test.jsonl"
    manifest.write_text('{"id": "a", "audio": "a.flac", "text": "über den fluß"}\n', encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("a über den fluss\n", encoding="utf-8")
    rules = resolve_text_rules(SimpleNamespace(text_rules="", train=str(manifest), init="none"))
    assert rules.case == "lower"
    assert f"text rules: {data / 'text_rules.json'} (case lower), beside --train" in capsys.readouterr().err
    res = CliRunner().invoke(app, ["score", "--ref", str(manifest), "--hyp", str(tmp_path / "hyp.txt")])
    assert res.exit_code == 0, res.output
    assert f"score: normalising with {data / 'text_rules.json'} (case lower)" in res.output
    res = CliRunner().invoke(app, ["score", "--ref", str(manifest), "--hyp", str(tmp_path / "hyp.txt"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["utterances"] == 1, res.output  # --json: only the JSON
    _need_kenlm()
    (tmp_path / "text.txt").write_text("über den fluß\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["lm", "build", str(tmp_path / "text.txt"), "--order", "2", "--arpa",
                                   "--rules", str(data / "text_rules.json"), "--out", str(tmp_path / "lm.arpa")])
    assert res.exit_code == 0, res.output
    assert f"lm: normalising with {data / 'text_rules.json'} (case lower)" in res.output
