"""Text in any script, end to end: `CAFÉ NAÏVE ÜBER` and `ЁЛКА` through prepare (LibriSpeech layout
and table) -> manifest -> vocabulary -> checkpoint -> `export --to hf` -> load back -> tokens
-> transcribe -> score; and `w2v prepare table` on .csv and .tsv files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from w2vcli.audio import write_flac
from w2vcli.cli import app
from w2vcli.data.manifest import read_manifest
from w2vcli.text import TextRules, Vocabulary

TINY = ["--preset", "tiny", "--max-tokens", "64000", "--num-workers", "0", "--seed", "3"]
TEXTS = ["CAFÉ NAÏVE ÜBER", "ЁЛКА", "CAFÉ ÜBER ЁЛКА", "NAÏVE ЁЛКА CAFÉ"]
NEW_LETTERS = set("ÉÏÜЁЛКА")


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"w2v {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}") from result.exception
    return result.output


def fails(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


def noise(path, seconds: float = 0.8, seed: int = 0) -> None:
    write_flac(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000)))


def librispeech_tree(root):
    """ROOT/train-x/7/1/7-1-000i.flac with TEXTS as the transcripts."""
    chap = root / "train-x" / "7" / "1"
    chap.mkdir(parents=True)
    lines = []
    for i, text in enumerate(TEXTS):
        noise(chap / f"7-1-{i:04d}.flac", seed=i)
        lines.append(f"7-1-{i:04d} {text}\n")
    (chap / "7-1.trans.txt").write_text("".join(lines), encoding="utf-8")
    return root


def table_csv(folder):
    """folder/list.csv: relative audio paths; the first transcript is quoted and holds a comma."""
    (folder / "wav").mkdir(parents=True)
    rows = ["audio,text,speaker"]
    for i, text in enumerate(TEXTS):
        noise(folder / "wav" / f"u{i}.flac", seed=i)
        rows.append(f'wav/u{i}.flac,"{text.replace(" ", ", ", 1)}",s{i % 2}')
    (folder / "list.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "list.csv"


@pytest.mark.parametrize("source", ["librispeech", "table"])
def test_letters_of_any_script_survive_every_step(tmp_path, source):
    transformers = pytest.importorskip("transformers")
    data = tmp_path / "data"
    if source == "librispeech":
        w2v("prepare", "librispeech", librispeech_tree(tmp_path / "ls"), "--out", data)
        manifest, expected = data / "train-x.jsonl", TEXTS  # LibriSpeech's convention: upper case
    else:
        w2v("prepare", "table", table_csv(tmp_path / "tbl"), "--out", data / "list.jsonl")
        manifest, expected = data / "list.jsonl", [t.lower() for t in TEXTS]  # tables: lower case
    rules = TextRules.load(data)
    # manifest and vocabulary
    assert [r["text"] for r in read_manifest(manifest)] == expected
    letters = {c if rules.case == "upper" else c.lower() for c in NEW_LETTERS}
    assert letters <= set(Vocabulary.load(data / "vocab.json").tokens)
    # checkpoint
    exp = tmp_path / "exp"
    w2v("finetune", "--init", "none", "--train", manifest, "--out", exp, *TINY, "--max-updates", 2)
    from w2vcli import load_model

    model = load_model(exp / "last.pt")
    assert letters <= set(model.vocab.tokens) and model.text_rules == rules
    # Hugging Face export, loaded back by w2v and by transformers' own tokenizer
    hf = tmp_path / "hf"
    w2v("export", exp / "last.pt", "--to", "hf", "--out", hf)
    back = load_model(hf)
    assert back.vocab.tokens == model.vocab.tokens and back.text_rules == rules
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(hf)
    for text in expected:
        ids = back.vocab.encode(text)
        assert back.vocab.unk not in ids
        assert tokenizer(text).input_ids == ids
        assert back.vocab.decode(ids) == tokenizer.decode(ids, group_tokens=False) == text
    # transcribe with the exported model, then score
    w2v("transcribe", hf, "--manifest", manifest, "--out", tmp_path / "hyp.jsonl")
    hyps = [json.loads(line) for line in (tmp_path / "hyp.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [h["id"] for h in hyps] == [r["id"] for r in read_manifest(manifest)]
    assert all(set(h["text"].replace(" ", "")) <= set(back.vocab.tokens) for h in hyps)
    report = json.loads(w2v("score", "--ref", manifest, "--hyp", tmp_path / "hyp.jsonl", "--json"))
    assert report["utterances"] == len(TEXTS)
    ids = [r["id"] for r in read_manifest(manifest)]
    perfect = [f"{i} {t.lower().replace(' ', ', ')}!\n" for i, t in zip(ids, TEXTS)]  # normalised away
    (tmp_path / "perfect.txt").write_text("".join(perfect), encoding="utf-8")
    report = json.loads(w2v("score", "--ref", manifest, "--hyp", tmp_path / "perfect.txt", "--json"))
    assert (report["wer"], report["cer"], report["char_hits"]) == (0, 0, len(" ".join(TEXTS)) - 3)
    (tmp_path / "plain.txt").write_text(f"{ids[0]} CAFE NAIVE UBER\n" + "".join(perfect[1:]), encoding="utf-8")
    report = json.loads(w2v("score", "--ref", manifest, "--hyp", tmp_path / "plain.txt", "--json"))
    assert (report["char_substitutions"], report["substitutions"]) == (3, 3)


# --- prepare table ------------------------------------------------------------------------------


def test_table_csv_and_tsv(tmp_path):
    csv_file = table_csv(tmp_path / "a")
    out = tmp_path / "data"
    w2v("prepare", "table", csv_file, "--out", out / "train.jsonl", "--jobs", 1)
    rows = read_manifest(out / "train.jsonl")
    assert [r["id"] for r in rows] == [f"wav/u{i}" for i in range(4)]
    assert rows[0]["text"] == "café naïve über" and rows[1]["speaker"] == "s1"
    assert rows[0]["audio"] == str((tmp_path / "a" / "wav" / "u0.flac").resolve())
    assert (rows[0]["num_samples"], rows[0]["sample_rate"]) == (12800, 16000)
    assert TextRules.load(out).case == "lower" and not (out / "train.problems.txt").exists()
    # a .tsv (tab-separated, other column names, no speaker) into the same folder: one vocabulary for both
    (tmp_path / "b").mkdir()
    noise(tmp_path / "b" / "x.flac")
    (tmp_path / "b" / "dev.tsv").write_text('file\tsentence\nx.flac\t"Ölkanne, 2 Stück"\n', encoding="utf-8")
    w2v("prepare", "table", tmp_path / "b" / "dev.tsv", "--out", out / "dev.jsonl",
        "--audio-column", "file", "--text-column", "sentence")
    dev = read_manifest(out / "dev.jsonl")
    assert dev[0]["text"] == "ölkanne 2 stück" and "speaker" not in dev[0] and dev[0]["id"] == "x"
    vocab = Vocabulary.load(out / "vocab.json")
    assert {"ö", "2", "ü", "é", "ё"} <= set(vocab.tokens)
    assert "ölkanne" not in (out / "words.txt").read_text(encoding="utf-8")  # word counts: the training table
    # other text rules than the folder's are refused
    message = fails("prepare", "table", csv_file, "--out", out / "again.jsonl", "--case", "upper")
    assert "other text rules" in message and not (out / "again.jsonl").exists()


def test_table_bad_rows_are_named_counted_and_left_out(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    for name in ("a", "b"):
        noise(folder / f"{name}.flac")
    (folder / "broken.wav").write_bytes(bytes(500))
    (folder / "list.csv").write_text(
        "audio,text\n"
        "a.flac,hello\n"
        "b.flac\n"  # 3: one field
        "b.flac,\n"  # 4: empty text
        "gone.flac,missing\n"  # 5: no such file
        "broken.wav,broken\n"  # 6: not audio
        '"a.flac","again, twice"\n'  # 7: listed twice
        ",no audio\n"  # 8
        "b.flac,\"quoted\nover two lines\"\n",  # 9-10: fine
        encoding="utf-8")
    result = CliRunner().invoke(app, ["prepare", "table", str(folder / "list.csv"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    problems = (tmp_path / "o.problems.txt").read_text(encoding="utf-8").splitlines()
    expected = ["list.csv:3: 1 fields, the header has 2", "list.csv:4: empty transcript (b.flac)",
                "gone.flac: no such file", "broken.wav: not readable audio",
                "list.csv:7: a.flac is listed twice (first on line 2)", "list.csv:8: empty audio path"]
    assert len(problems) == len(expected), problems
    for text in expected:
        assert any(text in p for p in problems) and text in output, text
    assert "2 utterances" in output and "6 problem(s)" in output
    assert [r["text"] for r in read_manifest(tmp_path / "o.jsonl")] == ["hello", "quoted over two lines"]


def test_table_errors_are_one_line(tmp_path):
    (tmp_path / "x.flac").write_bytes(b"")
    (tmp_path / "no_header.csv").write_text("x.flac,hello\n", encoding="utf-8")
    message = fails("prepare", "table", tmp_path / "no_header.csv", "--out", tmp_path / "o.jsonl")
    assert "no column 'audio' (--audio-column), 'text' (--text-column)" in message and "'x.flac', 'hello'" in message
    (tmp_path / "list.txt").write_text("audio\ttext\n", encoding="utf-8")
    message = fails("prepare", "table", tmp_path / "list.txt", "--out", tmp_path / "o.jsonl")
    assert "expected a .tsv or .csv table" in message
    (tmp_path / "bad.csv").write_text("audio,text\nx.flac,hello\n", encoding="utf-8")
    message = fails("prepare", "table", tmp_path / "bad.csv", "--out", tmp_path / "o.jsonl")
    assert "no usable rows" in message and "x.flac: empty file" in message
    assert not (tmp_path / "o.jsonl").exists()
