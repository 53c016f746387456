"""`w2v prepare librispeech|fairseq|folder`: real and generated LibriSpeech trees, bad input, re-runs."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from w2vcli.audio import write_flac
from w2vcli.cli import app
from w2vcli.data.fairseq import prepare_fairseq
from w2vcli.data.folder import prepare_folder
from w2vcli.data.librispeech import prepare_librispeech
from w2vcli.data.manifest import read_manifest, subset_manifest, write_fairseq, write_manifest
from w2vcli.errors import W2VError
from w2vcli.text import Vocabulary

runner = CliRunner()
SENTENCES = ["HELLO WORLD", "THE CAT SAT ON THE MAT", "IT'S A FINE DAY", "GOOD MORNING TO YOU"]


def _espeak(text: str, path, voice: str) -> None:
    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text.lower()], check=True, capture_output=True)
    audio, sr = sf.read(wav, dtype="float32")
    wav.unlink()
    write_flac(path, audio, sr)  # espeak-ng speaks at 22050 Hz: the manifest must say so


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    """LibriSpeech/{train-mini,dev-mini}/SPK/CHAP with espeak-ng speech, 2 speakers x 2 utterances each."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("corpus") / "LibriSpeech"
    for subset, speakers in (("train-mini", ("11", "12")), ("dev-mini", ("21", "22"))):
        for spk in speakers:
            chap = root / subset / spk / "100"
            chap.mkdir(parents=True)
            lines = []
            for u, text in enumerate(SENTENCES[:2] if spk.endswith("1") else SENTENCES[2:]):
                uid = f"{spk}-100-{u:04d}"
                _espeak(text, chap / f"{uid}.flac", "en-us+m3" if subset == "train-mini" else "en-gb+f2")
                lines.append(f"{uid} {text}\n")
            (chap / f"{spk}-100.trans.txt").write_text("".join(lines))
    return root


def _rows(path):
    return [json.loads(line) for line in open(path)]


def test_real_mini_exact_sample_counts(real_mini, tmp_path):
    results = prepare_librispeech(real_mini, tmp_path, jobs=1)
    rows = _rows(tmp_path / "test-real.jsonl")
    assert list(results) == ["test-real"] and len(rows) == 10
    trans = {}
    for t in (real_mini / "test-real").glob("*/*/*.trans.txt"):
        trans.update(line.split(" ", 1) for line in t.read_text().splitlines())
    for r in rows:
        assert r["num_samples"] == sf.info(r["audio"]).frames and r["sample_rate"] == 16000
        assert r["audio"].startswith("/") and r["speaker"] == r["id"].split("-")[0]
        assert r["text"] == trans[r["id"]]
    assert (tmp_path / "test-real.txt").read_text().splitlines() == [r["text"] for r in rows]
    vocab = Vocabulary.load(tmp_path / "vocab.json")
    assert vocab.tokens[:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    assert Vocabulary.load(tmp_path / "dict.ltr.txt").tokens == vocab.tokens
    words = dict(line.split() for line in (tmp_path / "words.txt").read_text().splitlines())
    assert int(words["HE"]) == sum(r["text"].split().count("HE") for r in rows)


def test_root_may_be_one_subset_dir(real_mini, tmp_path):
    prepare_librispeech(real_mini / "test-real", tmp_path, jobs=1)
    assert len(_rows(tmp_path / "test-real.jsonl")) == 10


def test_generated_tree_parallel_and_rerun(libri, tmp_path, capsys):
    prepare_librispeech(libri, tmp_path, jobs=2)
    train, dev = _rows(tmp_path / "train-mini.jsonl"), _rows(tmp_path / "dev-mini.jsonl")
    assert len(train) == len(dev) == 4 and {r["sample_rate"] for r in train} == {22050}
    assert {r["speaker"] for r in train} == {"11", "12"}
    # words.txt counts the training subsets only
    assert set(w.split()[0] for w in (tmp_path / "words.txt").read_text().splitlines()) == \
        {w for s in SENTENCES for w in s.split()}
    before = (tmp_path / "train-mini.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    prepare_librispeech(libri, tmp_path, jobs=1)  # re-run: skipped, untouched
    assert "already prepared" in capsys.readouterr().err
    assert (tmp_path / "train-mini.jsonl").stat().st_mtime_ns == before
    prepare_librispeech(libri, tmp_path, subsets=["train-mini"], force=True, jobs=1)
    assert (tmp_path / "train-mini.jsonl").stat().st_mtime_ns != before
    assert _rows(tmp_path / "train-mini.jsonl") == train
    assert len(Vocabulary.load(tmp_path / "vocab.json")) > 20  # still built over both subsets
    with pytest.raises(W2VError, match="no subset nope"):
        prepare_librispeech(libri, tmp_path, subsets=["nope"])


def test_bad_files_are_named_and_left_out(libri, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(libri / "train-mini", tree / "train-mini")
    chap = tree / "train-mini" / "11" / "100"
    full = (chap / "11-100-0000.flac").read_bytes()
    (chap / "11-100-0000.flac").write_bytes(full[: len(full) // 2])  # truncated
    (chap / "11-100-0001.flac").write_bytes(b"")  # empty
    (chap / "11-100-0002.flac").write_bytes(b"not audio at all" * 100)  # corrupt, and no transcript line
    with open(chap / "11-100.trans.txt", "a") as f:
        f.write("11-100-0003 A LINE WITHOUT AUDIO\n")
    shutil.copy(libri / "train-mini" / "12" / "100" / "12-100-0000.flac", chap / "11-100-0004.flac")
    result = runner.invoke(app, ["prepare", "librispeech", str(tree), "--out", str(tmp_path / "out"), "-j", "1"])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "out" / "train-mini.jsonl")
    assert [r["id"] for r in rows] == ["12-100-0000", "12-100-0001"]
    err = " ".join(result.stderr.split())  # rich may wrap long lines
    for name, why in (("11-100-0000.flac", "truncated"), ("11-100-0001.flac", "empty"),
                      ("11-100-0002.flac", "without a transcript"), ("11-100-0003", "without audio"),
                      ("11-100-0004.flac", "without a transcript")):
        assert name in err and why in err
    problems = (tmp_path / "out" / "train-mini.problems.txt").read_text().splitlines()
    assert len(problems) == 5


def test_corrupt_flac_in_real_mini_copy(real_mini, tmp_path):
    tree = tmp_path / "real-mini"
    shutil.copytree(real_mini, tree)
    bad = tree / "test-real" / "8004" / "1" / "8004-1-0002.flac"
    bad.write_bytes(np.random.default_rng(1).bytes(10000))
    with open(bad.parent / "8004-1.trans.txt", "a") as f:
        f.write("8004-1-0002 THIS FILE IS BROKEN\n")
    result = runner.invoke(app, ["prepare", "librispeech", str(tree), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0
    assert str(bad) in result.stderr
    assert len(_rows(tmp_path / "out" / "test-real.jsonl")) == 10


def test_cli_missing_root_is_one_error_line(tmp_path):
    result = runner.invoke(app, ["prepare", "librispeech", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and lines[0].startswith("error:")


def test_fairseq_round_trip(real_mini, tmp_path):
    prepare_librispeech(real_mini, tmp_path, jobs=1)
    rows = read_manifest(tmp_path / "test-real.jsonl")
    write_fairseq(tmp_path / "fs" / "test.tsv", rows)
    assert (tmp_path / "fs" / "test.tsv").read_text().splitlines()[1].startswith("8001/1/8001-1-0000.flac\t")
    assert (tmp_path / "fs" / "test.ltr").read_text().startswith("A N D | M I S T E R |")
    back = read_manifest(tmp_path / "fs" / "test.tsv")
    assert back == [{k: r[k] for k in ("id", "audio", "num_samples", "sample_rate", "text")} for r in rows]
    (tmp_path / "fs" / "test.wrd").unlink()  # text from the letters file alone
    assert [r["text"] for r in read_manifest(tmp_path / "fs" / "test.tsv")] == [r["text"] for r in rows]
    result = runner.invoke(app, ["prepare", "fairseq", str(tmp_path / "fs" / "test.tsv"), "--out", str(tmp_path / "j")])
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "j" / "test.jsonl") == back
    assert (tmp_path / "j" / "vocab.json").exists()


def test_manifest_errors_name_file_and_line(tmp_path):
    good = {"id": "a", "audio": "/x.flac", "num_samples": 5, "sample_rate": 16000}
    cases = {"notjson": "{oops", "missing": json.dumps({"id": "b", "audio": "/y"}),
             "badcount": json.dumps(good | {"id": "c", "num_samples": -1}), "dup": json.dumps(good)}
    for name, line in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(W2VError, match=rf"{name}.jsonl:2: "):
            read_manifest(path)
    (tmp_path / "bad.tsv").write_text("/root\nfile.flac\tmany\n")
    with pytest.raises(W2VError, match=r"bad.tsv:2: "):
        read_manifest(tmp_path / "bad.tsv")
    (tmp_path / "short.tsv").write_text("/root\na.flac\t10\nb.flac\t20\n")
    (tmp_path / "short.wrd").write_text("ONE LINE\n")
    with pytest.raises(W2VError, match=r"short.wrd: 1 lines but short.tsv lists 2"):
        read_manifest(tmp_path / "short.tsv")


def test_subset_manifest_picks_whole_utterances():
    rng = np.random.default_rng(0)
    rows = [{"id": f"u{i}", "audio": f"/a/{i}.flac", "num_samples": int(rng.integers(16000, 160000)),
             "sample_rate": 16000, "speaker": str(i % 7)} for i in range(300)]
    sub = subset_manifest(rows, minutes=10, seed=3)
    total = sum(r["num_samples"] for r in sub) / 16000
    assert 590 <= total <= 600 and len({r["speaker"] for r in sub}) == 7
    assert sub == subset_manifest(rows, minutes=10, seed=3) != subset_manifest(rows, minutes=10, seed=4)
    assert [r["id"] for r in sub] == sorted((r["id"] for r in sub), key=lambda s: int(s[1:]))


def test_prepare_folder(libri, tmp_path):
    folder = tmp_path / "audio"
    shutil.copytree(libri / "dev-mini", folder / "flac")
    tone = np.sin(np.arange(44100) / 10).astype(np.float32)
    sf.write(folder / "stereo.wav", np.stack([tone, tone], 1), 44100)
    (folder / "broken.ogg").write_bytes(b"OggS" + b"\0" * 50)
    (folder / "notes.txt").write_text("not audio")
    result = runner.invoke(app, ["prepare", "folder", str(folder), "--out", str(tmp_path / "m.jsonl"), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "broken.ogg" in result.stderr
    rows = read_manifest(tmp_path / "m.jsonl")
    assert len(rows) == 5 and "text" not in rows[0]
    assert {r["id"]: r["num_samples"] for r in rows}["stereo"] == 44100
    write_manifest(tmp_path / "again.jsonl", rows)
    assert read_manifest(tmp_path / "again.jsonl") == rows
    with pytest.raises(W2VError, match="no audio files"):
        prepare_folder(_empty(tmp_path), tmp_path / "x.jsonl")
    with pytest.raises(W2VError, match="expected a fairseq .tsv"):
        prepare_fairseq([tmp_path / "m.jsonl"], tmp_path / "o")


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"
