"""Text rules in every script: the normaliser, what prepare reports, and the rules travelling with
the corpus (text_rules.json) into finetune checkpoints, lm build and score."""

import json
import unicodedata

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from w2vcli.audio import write_flac
from w2vcli.cli import app
from w2vcli.data.librispeech import prepare_librispeech
from w2vcli.errors import W2VError
from w2vcli.score import score_texts
from w2vcli.text import ENGLISH, RULES_FILE, TextRules, Vocabulary, is_unspaced

runner = CliRunner()
LOWER = TextRules(case="lower")


# --- the normaliser --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["CAFÉ NAÏVE ÜBER", "ЁЛКА", "ΚΑΛΗΜΕΡΑ", "שלום עולם", "नमस्ते दुनिया", "مرحبا",
                                  "TIẾNG VIỆT", "ÅR ØL ÆBLE", "ĞÜŞİÖÇ"])  # fmt: skip
def test_letters_and_marks_of_every_script_are_kept(text):
    for rules in (ENGLISH, LOWER, TextRules(case="keep")):
        out = rules.normalize(text)
        letters = lambda s: [c for c in unicodedata.normalize("NFC", s) if unicodedata.category(c)[0] in "LM"]  # noqa: E731
        assert len(letters(out)) == len(letters(text)), (rules.case, text, out)
        assert " ".join(out.split()) == out  # single spaces, none at the ends
    assert ENGLISH.normalize("café naïve über") == "CAFÉ NAÏVE ÜBER"
    assert LOWER.normalize("ЁЛКА") == "ёлка"


def test_decomposed_input_is_composed():
    assert ENGLISH.normalize("CAFE\u0301") == "CAF\u00c9"  # NFC/NFKC: one code point, one CTC unit


def test_case_folding_never_changes_length():
    assert ENGLISH.normalize("Straße") == "STRAßE"  # not STRASSE: a case mapping that adds letters is not applied
    assert TextRules(case="keep").normalize("Hello World") == "Hello World"


def test_punctuation_removed_kept_characters_kept():
    assert ENGLISH.normalize("  Hello, world -- it\u2019s me! ") == "HELLO WORLD IT'S ME"
    assert TextRules(keep="'-").normalize("a well-known «fact»") == "A WELL-KNOWN FACT"
    assert LOWER.normalize("¿Qué tal? ¡Bien!") == "qué tal bien"
    with pytest.raises(W2VError, match="keep"):
        TextRules(keep="a")


def test_digits_are_never_deleted_silently():
    text, changes = ENGLISH.normalize_report("DISPOSED 42 AND 1999")
    assert text == "DISPOSED 42 AND 1999" and changes == {"digits"}
    skip = TextRules(digits="skip")
    assert skip.normalize_report("DISPOSED 42 AND 1999") == ("", {"digits"})
    assert skip.normalize("NO DIGITS HERE") == "NO DIGITS HERE"


def test_changes_beyond_case_and_punctuation_are_reported():
    assert ENGLISH.normalize_report("Hello, World!")[1] == set()
    assert ENGLISH.normalize_report("50 % off")[1] == {"digits", "symbols"}
    assert ENGLISH.normalize_report("the \ufb01ne print")[0] == "THE FINE PRINT"
    assert "compat" in ENGLISH.normalize_report("the \ufb01ne print")[1]
    assert ENGLISH.normalize_report("full\uff0cwidth comma")[1] == set()  # NFKC of punctuation is not news
    assert ENGLISH.normalize_report("a\u0007b")[1] == {"control"}


def test_joiners_kept_inside_words():
    persian = "می\u200cخواهم"
    assert LOWER.normalize(persian) == persian
    assert LOWER.normalize("\u200cabc\u200c") == "abc"


def test_unspaced_scripts():
    zh = TextRules(case="keep", word_boundary=False)
    assert zh.normalize("你好，世界！ 再见。") == "你好世界再见"
    assert zh.units("你好世界") == list("你好世界")
    assert is_unspaced(["你好世界", "今天天气很好"]) and is_unspaced(["こんにちは"]) and is_unspaced(["สวัสดีครับ"])
    assert not is_unspaced(["hello world", "ёлка"]) and not is_unspaced([])
    vocab = Vocabulary.letters_from_texts(["你好世界", "世界"], zh)
    assert "|" not in vocab.tokens and vocab.units == "chars"
    assert vocab.decode(vocab.encode("你好世界")) == "你好世界"


def test_rules_files_round_trip_and_refuse_bad_fields(tmp_path):
    rules = TextRules(case="lower", keep="'-", digits="skip", word_boundary=False)
    rules.save(tmp_path / RULES_FILE)
    assert TextRules.load(tmp_path) == rules and TextRules.beside(tmp_path / "train.jsonl") == rules
    (tmp_path / RULES_FILE).write_text(json.dumps({"case": "title"}))
    with pytest.raises(W2VError, match="case must be one of"):
        TextRules.load(tmp_path / RULES_FILE)
    (tmp_path / RULES_FILE).write_text(json.dumps({"casing": "upper"}))
    with pytest.raises(W2VError, match="unknown text rule"):
        TextRules.load(tmp_path / RULES_FILE)


def test_rules_for_a_vocabulary_without_recorded_rules():
    assert TextRules.for_vocabulary(["<pad>", "|", "A", "B", "'"]) == ENGLISH
    assert TextRules.for_vocabulary(["<pad>", "|", "а", "б", "ё"]) == TextRules(case="lower", keep="")
    assert not TextRules.for_vocabulary(["<pad>", "你", "好"]).word_boundary


def test_vocabulary_files_in_any_script(tmp_path):
    texts = [LOWER.normalize(t) for t in ("Ёлка и ель", "über café")]
    vocab = Vocabulary.letters_from_texts(texts, LOWER)
    vocab.save(tmp_path / "vocab.json")
    assert "ё" in json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))  # not \\u-escaped
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocab.tokens
    vocab.save_fairseq_dict(tmp_path / "dict.ltr.txt")
    assert Vocabulary.load(tmp_path / "dict.ltr.txt").tokens == vocab.tokens
    # Hugging Face's fine-tuning tutorial: lower-case letters, "|", then [UNK] and [PAD] last
    hf = {c: i for i, c in enumerate(["ё", "л", "к", "а", "|", "[UNK]", "[PAD]"])}
    (tmp_path / "hf.json").write_text(json.dumps(hf, ensure_ascii=False), encoding="utf-8")
    loaded = Vocabulary.load(tmp_path / "hf.json")
    assert loaded.tokens[0] == "<pad>" and "<unk>" in loaded.tokens and loaded.word_boundary == "|"
    assert loaded.decode(loaded.encode("ёлка ёлка")) == "ёлка ёлка"


# --- prepare: the report and the recorded rules ------------------------------------------------------


def _corpus(root, lines: dict[str, str]):
    chap = root / "train-x" / "1" / "2"
    chap.mkdir(parents=True)
    tone = np.sin(np.arange(8000) / 10).astype(np.float32) * 0.1
    for uid in lines:
        write_flac(chap / f"{uid}.flac", tone, 16000)
    (chap / "1-2.trans.txt").write_text("".join(f"{k} {v}\n" for k, v in lines.items()), encoding="utf-8")
    return root


def test_prepare_keeps_unicode_and_reports_digits(tmp_path, capsys):
    root = _corpus(tmp_path / "c", {"1-2-0001": "CAFÉ NAÏVE ÜBER", "1-2-0002": "DISPOSED 42 AND 1999",
                                    "1-2-0003": "ЁЛКА"})  # fmt: skip
    prepare_librispeech(root, tmp_path / "out", jobs=1)
    rows = {r["id"]: r["text"] for r in map(json.loads, open(tmp_path / "out" / "train-x.jsonl", encoding="utf-8"))}
    assert rows == {"1-2-0001": "CAFÉ NAÏVE ÜBER", "1-2-0002": "DISPOSED 42 AND 1999", "1-2-0003": "ЁЛКА"}
    err = capsys.readouterr().err
    assert "1 of 3 transcripts contain digits" in err and "DISPOSED 42 AND 1999" in err
    assert TextRules.load(tmp_path / "out") == ENGLISH
    vocab = Vocabulary.load(tmp_path / "out" / "vocab.json")
    assert {"É", "Ï", "Ü", "Ё", "4", "9"} <= set(vocab.tokens)
    assert "too rare to learn" in err and "'Ё' (1)" in err


def test_prepare_digits_skip_counts_and_rules_must_match_on_rerun(tmp_path, capsys):
    root = _corpus(tmp_path / "c", {"1-2-0001": "HELLO THERE", "1-2-0002": "ROOM 101"})
    prepare_librispeech(root, tmp_path / "out", jobs=1, rules=TextRules(digits="skip"))
    rows = [json.loads(line) for line in open(tmp_path / "out" / "train-x.jsonl")]
    assert [r["id"] for r in rows] == ["1-2-0001"]
    err = capsys.readouterr().err
    assert "1 of 2 transcripts skipped" in err and "1 left out by the text rules" in err
    assert "audio without a transcript" not in err
    with pytest.raises(W2VError, match="other text rules"):
        prepare_librispeech(root, tmp_path / "out", jobs=1, rules=ENGLISH)
    # --force with other rules redoes the subsets it names; one left with the old rules is refused
    (tmp_path / "out" / "dev-x.done").write_text("1 utterances\n")
    with pytest.raises(W2VError, match="dev-x would keep the old rules"):
        prepare_librispeech(root, tmp_path / "out", jobs=1, rules=ENGLISH, force=True)
    (tmp_path / "out" / "dev-x.done").unlink()
    prepare_librispeech(root, tmp_path / "out", jobs=1, rules=ENGLISH, force=True)
    assert TextRules.load(tmp_path / "out") == ENGLISH
    assert [json.loads(line)["id"] for line in open(tmp_path / "out" / "train-x.jsonl")] == ["1-2-0001", "1-2-0002"]


def test_prepare_cli_text_options(tmp_path):
    root = _corpus(tmp_path / "c", {"1-2-0001": "Ёлка, well-known!"})
    res = runner.invoke(app, ["prepare", "librispeech", str(root), "--out", str(tmp_path / "o"), "--case", "lower",
                              "--keep", "'-", "-j", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "o" / "train-x.jsonl").read_text(encoding="utf-8"))
    assert row["text"] == "ёлка well-known"
    assert TextRules.load(tmp_path / "o") == TextRules(case="lower", keep="'-")
    res = runner.invoke(app, ["prepare", "librispeech", str(root), "--out", str(tmp_path / "o2"), "--case", "title"])
    assert res.exit_code == 1 and "case must be one of" in res.output


def test_prepare_detects_unspaced_script(tmp_path):
    root = _corpus(tmp_path / "c", {"1-2-0001": "你好，世界！", "1-2-0002": "今天 天气 很好"})
    prepare_librispeech(root, tmp_path / "o", jobs=1, rules=TextRules(word_boundary=False))
    texts = [json.loads(line)["text"] for line in open(tmp_path / "o" / "train-x.jsonl", encoding="utf-8")]
    assert texts == ["你好世界", "今天天气很好"]
    assert "|" not in Vocabulary.load(tmp_path / "o" / "vocab.json").tokens
    res = runner.invoke(app, ["prepare", "librispeech", str(root), "--out", str(tmp_path / "o2"), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert TextRules.load(tmp_path / "o2").word_boundary is False


# --- the rules downstream: score, lm build, checkpoints ------------------------------------------------


def test_score_uses_the_rules_beside_the_references(tmp_path):
    (tmp_path / "ref.jsonl").write_text(json.dumps({"id": "a", "text": "ёлка и ель"}, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    (tmp_path / "hyp.jsonl").write_text(json.dumps({"id": "a", "text": "Ёлка, и ЕЛЬ!"}, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    LOWER.save(tmp_path / RULES_FILE)
    res = runner.invoke(app, ["score", "--ref", str(tmp_path / "ref.jsonl"), "--hyp", str(tmp_path / "hyp.jsonl"),
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["wer"] == 0.0


def test_score_unspaced_headline_is_cer():
    zh = TextRules(case="keep", word_boundary=False)
    report = score_texts({"a": "你好，世界"}, {"a": "你好世戒"}, rules=zh)
    assert report.headline == "cer" and report.cer == pytest.approx(0.25) and report.wer == 1.0
    assert "sentence error rate" in report.note
    assert score_texts({"a": "A B"}, {"a": "A B"}).headline == "wer"


def test_lm_build_refuses_unspaced_rules_and_records_rules(tmp_path):
    from w2vcli.decode.lm import LMBuildConfig

    text = tmp_path / "t.txt"
    text.write_text("你好世界\n")
    with pytest.raises(W2VError, match="no word boundaries"):
        LMBuildConfig(texts=(text,), out=tmp_path / "lm.bin", rules=TextRules(word_boundary=False))


def test_lm_build_with_the_corpus_rules(tmp_path):
    pytest.importorskip("kenlm")
    from w2vcli.decode.lm import find_kenlm_program, rules_path

    try:
        find_kenlm_program("lmplz")
    except W2VError as exc:
        pytest.skip(str(exc))
    (tmp_path / "data").mkdir()
    LOWER.save(tmp_path / "data" / RULES_FILE)
    manifest = tmp_path / "data" / "train.jsonl"
    manifest.write_text("".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n"
                                for i, t in enumerate(["Ёлка и Ель", "ЁЛКА зелёная"])), encoding="utf-8")  # fmt: skip
    out = tmp_path / "lm.arpa"
    res = runner.invoke(app, ["lm", "build", str(manifest), "--order", "2", "--arpa", "--out", str(out),
                              "--memory", "50M"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert set((tmp_path / "lm.arpa.unigrams.txt").read_text(encoding="utf-8").split()) == {"ёлка", "и", "ель", "зелёная"}
    assert TextRules.load(rules_path(out)) == LOWER


def test_finetune_records_the_corpus_rules_in_its_checkpoint(tmp_path, monkeypatch):
    from train_data import make_corpus

    train = make_corpus(tmp_path / "data", "train", n=4)
    rows = [json.loads(line) for line in open(train)]
    texts = ["ёлка и ель", "ЁЛКА зелёная", "Über café", "naïve"]
    with open(train, "w", encoding="utf-8") as f:
        for r, t in zip(rows, texts):
            f.write(json.dumps({**r, "text": t}, ensure_ascii=False) + "\n")
    LOWER.save(train.parent / RULES_FILE)
    out = tmp_path / "ft"
    res = runner.invoke(app, ["finetune", "--init", "none", "--preset", "tiny", "--train", str(train), "--out", str(out),
                              "--max-updates", "1", "--num-workers", "0", "--max-tokens", "100000"])  # fmt: skip
    assert res.exit_code == 0, res.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["text_rules"] == LOWER.to_dict() and ckpt["vocab_units"] == "letters"
    assert {"ё", "ü", "é", "ï"} <= set(ckpt["vocab"]) and not any(c.isupper() for c in ckpt["vocab"] if len(c) == 1)
    assert TextRules.load(out / RULES_FILE) == LOWER
    from w2vcli import load_model

    model = load_model(out / "last.pt")
    assert model.text_rules == LOWER and model.vocab.decode(model.vocab.encode("ёлка ель")) == "ёлка ель"
    # hotwords are normalised by the model's rules (lower case here), not upper-cased
    import w2vcli.decode.transcribe as tr

    captured, real = {}, tr.make_decoder
    monkeypatch.setattr(tr, "make_decoder", lambda vocab, options: captured.setdefault("o", options) and real(vocab, options))
    res = runner.invoke(app, ["transcribe", str(out / "last.pt"), rows[0]["audio"], "--hotwords", "Ёлка, ЕЛЬ!",
                              "--beam", "4"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert captured["o"].hotwords == ("ёлка", "ель")
