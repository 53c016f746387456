"""`w2v prepare commonvoice` on small Common Voice folders spoken by espeak-ng (German, Russian,
Mandarin; 48 kHz MP3), and prepare -> finetune -> transcribe -> score on each."""

from __future__ import annotations

import json
import os
import shutil
import unicodedata

import pytest
import soundfile as sf
from cv_data import SENTENCES, espeak_available, make_commonvoice
from typer.testing import CliRunner

from w2vcli.audio import load_audio
from w2vcli.cli import app
from w2vcli.data.manifest import read_manifest
from w2vcli.text import TextRules, Vocabulary

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
LANGS = ("de", "ru", "cmn")
TINY = ["--preset", "tiny", "--max-tokens", "640000", "--num-workers", "0", "--seed", "3"]


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"w2v {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}") from result.exception
    return result.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{lang: Common Voice folder}, made once for this module."""
    root = tmp_path_factory.mktemp("cv")
    return {lang: make_commonvoice(root, lang) for lang in LANGS}


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    """{lang: OUT of `w2v prepare commonvoice`} with the default options."""
    out = tmp_path_factory.mktemp("cv-prepared")
    for lang, folder in corpus.items():
        w2v("prepare", "commonvoice", folder, "--out", out / lang, "--jobs", 2)
    return {lang: out / lang for lang in LANGS}


def word_chars(text: str, rules: TextRules) -> list[str]:
    """The letters, marks and digits of a raw sentence, in the rules' normal form and case."""
    text = unicodedata.normalize(rules.form, text)
    folded = [c.lower() if rules.case == "lower" and len(c.lower()) == 1 else c for c in text]
    return [c for c in folded if unicodedata.category(c)[0] in "LMN"]


@pytest.mark.parametrize("lang", LANGS)
def test_every_letter_of_every_sentence_is_kept(prepared, lang):
    rules = TextRules.load(prepared[lang])
    assert rules.case == "lower"
    rows = {s: read_manifest(prepared[lang] / f"{s}.jsonl") for s in ("train", "dev", "test")}
    assert [len(rows[s]) for s in ("train", "dev", "test")] == [5, 1, 1]
    texts = [r["text"] for s in ("train", "dev", "test") for r in rows[s]]
    for sentence, text in zip(SENTENCES[lang], texts):
        assert [c for c in text if not c.isspace()] == word_chars(sentence, rules), (sentence, text)
    first = rows["train"][0]
    assert first["id"] == f"common_voice_{lang}_1000" and first["speaker"].startswith(f"{lang}speaker0")
    assert os.path.isabs(first["audio"]) and first["audio"].endswith(".mp3") and first["sample_rate"] == 48000
    vocab = Vocabulary.load(prepared[lang] / "vocab.json")
    assert set("".join(texts).replace(" ", "")) <= set(vocab.tokens)
    assert (prepared[lang] / "words.txt").is_file() and (prepared[lang] / "train.txt").read_text(encoding="utf-8")


def test_mandarin_gets_characters_without_word_boundary(prepared):
    assert TextRules.load(prepared["cmn"]).word_boundary is False
    assert "|" not in Vocabulary.load(prepared["cmn"] / "vocab.json").tokens
    assert read_manifest(prepared["cmn"] / "train.jsonl")[1]["text"] == "你好世界"
    for lang in ("de", "ru"):
        assert TextRules.load(prepared[lang]).word_boundary is True
        assert "|" in Vocabulary.load(prepared[lang] / "vocab.json").tokens


def test_mp3_sample_counts_are_exact(prepared):
    for lang in LANGS:
        for row in read_manifest(prepared[lang] / "test.jsonl") + read_manifest(prepared[lang] / "dev.jsonl"):
            assert len(load_audio(row["audio"], row["sample_rate"])) == row["num_samples"]


def test_convert_writes_16k_flac_copies_and_reuses_them(corpus, tmp_path):
    flac = tmp_path / "flac"
    w2v("prepare", "commonvoice", corpus["ru"], "--out", tmp_path / "ru", "--convert", flac, "--jobs", 2)
    rows = read_manifest(tmp_path / "ru" / "train.jsonl")
    assert sorted(p.name for p in flac.iterdir()) == [f"common_voice_ru_{1000 + i}.flac" for i in range(7)]
    for row in rows:
        info = sf.info(row["audio"])
        assert row["audio"] == str(flac.resolve() / f"{row['id']}.flac") and row["sample_rate"] == 16000
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, row["num_samples"])
        assert row["num_samples"] == len(load_audio(corpus["ru"] / "clips" / f"{row['id']}.mp3"))
    stamps = {p.name: p.stat().st_mtime_ns for p in flac.iterdir()}
    w2v("prepare", "commonvoice", corpus["ru"], "--out", tmp_path / "ru", "--convert", flac, "--jobs", 1)
    assert {p.name: p.stat().st_mtime_ns for p in flac.iterdir()} == stamps  # reused, not converted again
    assert read_manifest(tmp_path / "ru" / "train.jsonl") == rows


def _copy(folder, dest):
    """A copy of a Common Voice folder whose clips are hard links (or copies)."""
    shutil.copytree(folder, dest, copy_function=_link)
    return dest


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def test_bad_rows_and_clips_are_named_counted_and_left_out(corpus, tmp_path):
    folder = _copy(corpus["de"], tmp_path / "de")
    (folder / "clips" / "broken.mp3").write_bytes(bytes(3000))
    lines = (folder / "train.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    good = lines[1].split("\t")

    def row(**values):
        fields = dict(zip(header, good)) | values
        return "\t".join(fields[c] for c in header)

    lines += [
        "too\tfew\tfields",
        row(path="common_voice_de_1006.mp3", sentence="  "),
        row(path="common_voice_de_9999.mp3", sentence="Fehlt"),
        row(path="broken.mp3", sentence="Kaputt"),
        row(path=good[1]),  # listed twice
        row(path="common_voice_de_1005.mp3", sentence="Nichts", down_votes="3"),
    ]
    (folder / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["prepare", "commonvoice", str(folder), "--out", str(out),
                                      "--max-down-votes", "2", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    problems = (out / "train.problems.txt").read_text(encoding="utf-8").splitlines()
    assert len(problems) == 5, problems
    expected = ["train.tsv:7: 3 fields, the header has 13", "train.tsv:8: empty sentence",
                "train.tsv:9: no clip common_voice_de_9999.mp3", "broken.mp3: not readable audio",
                "train.tsv:11: common_voice_de_1000.mp3 is listed twice"]
    for text in expected:
        assert any(text in p for p in problems), text
        assert text in result.output.replace("\n", "")
    assert "5 problem(s), 1 left out by the vote filter" in result.output
    assert [r["id"] for r in read_manifest(out / "train.jsonl")] == [f"common_voice_de_{1000 + i}" for i in range(5)]


def test_interrupted_run_leaves_the_old_manifests(corpus, tmp_path, monkeypatch):
    import w2vcli.data.commonvoice as cv

    out = tmp_path / "out"
    w2v("prepare", "commonvoice", corpus["de"], "--out", out, "--jobs", 1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cv, "read_clips", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cv.prepare_commonvoice(corpus["de"], out, TextRules(case="lower"), splits=["validated", "train"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp file, nothing changed


def test_splits_votes_and_header_errors(corpus, tmp_path):
    out = tmp_path / "out"
    output = w2v("prepare", "commonvoice", corpus["de"], "--out", out, "--splits", "validated",
                 "--max-down-votes", "0", "--jobs", 1)
    rows = read_manifest(out / "validated.jsonl")
    assert [r["id"][-4:] for r in rows] == ["1000", "1002", "1004", "1006"]  # odd clips have a down-vote
    assert "3 left out by the vote filter" in output and "word counts (validated)" in output
    result = CliRunner().invoke(app, ["prepare", "commonvoice", str(corpus["de"]), "--out", str(out),
                                      "--splits", "train,other"])
    assert result.exit_code == 1 and "no other.tsv" in result.output and "validated" in result.output
    folder = _copy(corpus["ru"], tmp_path / "ru")
    tsv = folder / "dev.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8").replace("sentence", "text", 1), encoding="utf-8")
    result = CliRunner().invoke(app, ["prepare", "commonvoice", str(folder), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 1 and "dev.tsv:1: no column sentence" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    tsv.write_bytes(b"client_id\tpath\tsentence\nx\tcommon_voice_ru_1005.mp3\t\xff\xfe\n")
    result = CliRunner().invoke(app, ["prepare", "commonvoice", str(folder), "--out", str(tmp_path / "o2")])
    assert result.exit_code == 1 and "dev.tsv: not UTF-8 text" in result.output.replace("\n", "")
    # other text rules than those OUT was prepared with are refused
    result = CliRunner().invoke(app, ["prepare", "commonvoice", str(corpus["de"]), "--out", str(out),
                                      "--splits", "validated", "--case", "upper"])
    assert result.exit_code == 1 and "other text rules" in result.output


@pytest.mark.parametrize("lang", LANGS)
def test_prepare_finetune_transcribe_score(prepared, tmp_path, lang):
    data, exp = prepared[lang], tmp_path / "exp"
    w2v("finetune", "--init", "none", "--train", data / "train.jsonl", "--valid", data / "dev.jsonl",
        "--out", exp, *TINY, "--max-updates", 3, "--log-interval", 1)
    w2v("transcribe", exp / "last.pt", "--manifest", data / "test.jsonl", "--out", exp / "hyp.jsonl")
    hyp = json.loads((exp / "hyp.jsonl").read_text(encoding="utf-8"))
    vocab = Vocabulary.load(exp / "vocab.json")
    print(f"{lang}: {hyp['text']}")
    assert hyp["id"] == f"common_voice_{lang}_1006" and hyp["text"]
    assert set(hyp["text"].replace(" ", "")) <= set(vocab.tokens)
    assert any(ord(c) > 127 for c in hyp["text"])  # the junk of a tiny model, in the language's script
    report = json.loads(w2v("score", "--ref", data / "test.jsonl", "--hyp", exp / "hyp.jsonl", "--json"))
    assert report["utterances"] == 1 and report["cer"] > 0
    assert report["headline"] == ("cer" if lang == "cmn" else "wer")
