"""`w2v transcribe` end to end: output formats, manifests -> `w2v score`, failures, `--tune`."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.decode.formats import cues, render, timestamp

from tiny_models import tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A w2v CTC checkpoint of the tiny preset with random weights (varied output)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def files(real_mini):
    return sorted(str(p) for p in real_mini.rglob("*.flac"))[:4]


def run(*args):
    return CliRunner().invoke(app, ["transcribe", *map(str, args), "--device", "cpu"])


def test_jsonl_output_one_object_per_file(ckpt, files):
    res = run(ckpt, *files, "--format", "jsonl", "--batch-size", "3")
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]
    assert [r["audio"] for r in rows] == files
    for r in rows:
        assert set(r) == {"audio", "text", "words", "duration"}
        assert r["text"] == " ".join(w["word"] for w in r["words"])
        assert all(0 <= w["start"] < w["end"] <= r["duration"] + 0.03 for w in r["words"])
        starts = [w["start"] for w in r["words"]]
        assert starts == sorted(starts)
    assert "audio s per wall s" in res.stderr


def test_missing_and_unreadable_files_are_named_and_others_transcribed(ckpt, files, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not audio at all")
    res = run(ckpt, files[0], tmp_path / "missing.flac", bad, files[1])
    assert res.exit_code == 1
    lines = [l for l in res.stdout.splitlines() if l.strip()]
    assert [l.split("\t")[0] for l in lines] == [files[0], files[1]]
    assert "missing.flac" in res.stderr and "broken.wav" in res.stderr
    assert "2 of 4 file(s) could not be transcribed" in res.stderr


def test_manifest_out_then_score(ckpt, files, tmp_path):
    manifest = tmp_path / "dev.jsonl"
    rows = [{"id": f"u{i}", "audio": f, "num_samples": 16000, "sample_rate": 16000, "text": "HELLO WORLD"}
            for i, f in enumerate(files)]  # fmt: skip
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hyp = tmp_path / "hyp.jsonl"
    res = run(ckpt, "--manifest", manifest, "--out", hyp, "--batch-size", "2")
    assert res.exit_code == 0, res.output
    out = [json.loads(l) for l in hyp.read_text().splitlines()]
    assert [o["id"] for o in out] == ["u0", "u1", "u2", "u3"]
    # the manifest path writes what transcribing the files one by one prints
    alone = [json.loads(run(ckpt, f, "--format", "jsonl").stdout.strip()) for f in files]
    assert [(o["audio"], o["text"], o["words"]) for o in out] == [(a["audio"], a["text"], a["words"]) for a in alone]
    assert any(o["text"] for o in out)  # the random head says something
    res = CliRunner().invoke(app, ["score", "--ref", str(manifest), "--hyp", str(hyp), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["words"] == 8


def test_subtitles_are_well_formed(ckpt, files, tmp_path):
    res = run(ckpt, *files[:2], "--format", "srt", "--out-dir", tmp_path / "subs")
    assert res.exit_code == 0, res.output
    srt_time = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
    for f in files[:2]:
        text = (tmp_path / "subs" / (f.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".srt")).read_text()
        blocks = [b for b in text.strip().split("\n\n") if b]
        assert blocks
        for n, block in enumerate(blocks, 1):
            idx, times, *body = block.split("\n")
            assert idx == str(n) and re.fullmatch(srt_time, times) and body and all(body)
    res = run(ckpt, files[0], "--format", "vtt")
    assert res.exit_code == 0
    assert res.stdout.startswith("WEBVTT\n\n")
    for block in res.stdout.split("\n\n")[1:]:
        if block.strip():
            times = block.split("\n")[0]
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d", times)
    assert run(ckpt, *files[:2], "--format", "vtt").exit_code == 1  # several files need --out-dir


def test_output_writes_per_file_targets_one_file_or_stdout(tmp_path, capsys):
    """decode/output.py: a stem that comes back is numbered (and warned about); --out gets every
    transcript in one file; with neither, standard output."""
    from w2vcli.decode.output import Output, transcript_writer
    from w2vcli.errors import W2VError

    ts = [{"audio": f"{d}/x.flac", "text": f"HELLO {d}", "words": [], "duration": 1.0} for d in ("a", "b", "c")]
    with transcript_writer(Output("txt", out_dir=tmp_path / "dir"), with_path=True) as write:
        for t in ts:
            write(t)
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["x-2.txt", "x-3.txt", "x.txt"]
    assert (tmp_path / "dir" / "x-3.txt").read_text() == "c/x.flac\tHELLO c\n"
    assert "x.txt is taken" in capsys.readouterr().err
    with transcript_writer(Output("jsonl", out=tmp_path / "all.jsonl")) as write:
        for t in ts:
            write(t)
        assert not (tmp_path / "all.jsonl").exists()  # complete when it appears
    assert [json.loads(l)["text"] for l in (tmp_path / "all.jsonl").read_text().splitlines()] == ["HELLO a", "HELLO b", "HELLO c"]
    with transcript_writer(Output()) as write:
        write(ts[0])
    assert capsys.readouterr().out == "HELLO a\n"
    with pytest.raises(W2VError, match="--format must be one of"):
        Output("doc")
    with pytest.raises(W2VError, match="not both"):
        Output(out=tmp_path / "a.txt", out_dir=tmp_path)


def test_same_stem_in_two_folders_gets_two_files(ckpt, files, tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(files[0], tmp_path / d / "same.flac")
    res = run(ckpt, tmp_path / "a" / "same.flac", tmp_path / "b" / "same.flac", "--out-dir", tmp_path / "out")
    assert res.exit_code == 0, res.output
    a, b = (tmp_path / "out" / "same.txt").read_text(), (tmp_path / "out" / "same-2.txt").read_text()
    assert a.startswith(f"{tmp_path / 'a' / 'same.flac'}\t") and b.startswith(f"{tmp_path / 'b' / 'same.flac'}\t")
    assert a.split("\t")[1] == b.split("\t")[1] and "same.txt is taken" in res.stderr


def test_cues_and_timestamps():
    words = [{"word": "A", "start": 0.0, "end": 0.5}, {"word": "B", "start": 0.6, "end": 1.0},
             {"word": "C", "start": 3.0, "end": 3.5}, {"word": "D" * 90, "start": 3.6, "end": 4.0}]  # fmt: skip
    assert [c[2] for c in cues(words)] == ["A B", "C", "D" * 90]  # pause, then too long
    assert timestamp(3723.4567, ",") == "01:02:03,457" and timestamp(-1, ".") == "00:00:00.000"
    t = {"audio": "x.wav", "text": "A B", "words": words[:2], "duration": 1.0}
    assert render(t, "srt") == "1\n00:00:00,000 --> 00:00:01,000\nA B\n"
    assert render(t, "txt", with_path=True) == "x.wav\tA B\n"


def test_usage_errors(ckpt, files, tmp_path):
    assert "either AUDIO files or --manifest" in run(ckpt).output
    assert "--tune needs" in run(ckpt, "--manifest", tmp_path / "m.jsonl", "--tune").output
    assert "--lm needs beam search" in run(ckpt, files[0], "--lm", ckpt, "--beam", "0").output
    if not torch.cuda.is_available():
        res = CliRunner().invoke(app, ["transcribe", str(ckpt), files[0], "--device", "cuda"])
        assert res.exit_code == 1 and "CUDA is not available" in res.output


def test_models_without_a_head_are_named_not_transcribed(files, tmp_path):
    """`load_ctc_model` says what the file holds when it is not a CTC model; `transcribe` prints that line."""
    import w2vcli
    from w2vcli.errors import W2VError
    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    pt = tmp_path / "pt.pt"
    save_checkpoint(pt, build_model("pretrain", tiny()))
    with pytest.raises(W2VError, match=r"pt\.pt: a pretraining model \(Wav2Vec2ForPreTraining\), not a CTC model"):
        w2vcli.load_ctc_model(pt)
    res = run(pt, files[0])
    assert res.exit_code == 1 and "a pretraining model (Wav2Vec2ForPreTraining), not a CTC model" in res.output


def test_context_seconds_and_its_old_name(ckpt, files):
    """--context-seconds is the context on each side of a window; --stride-seconds still works,
    hidden from --help and warned about, and gives the same transcripts."""
    new = run(ckpt, *files[:2], "--chunk-seconds", "2", "--context-seconds", "0.5", "--format", "jsonl")
    old = run(ckpt, *files[:2], "--chunk-seconds", "2", "--stride-seconds", "0.5", "--format", "jsonl")
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    assert old.stdout == new.stdout and [json.loads(l)["audio"] for l in new.stdout.splitlines()] == files[:2]
    assert "--stride-seconds is renamed --context-seconds" in old.stderr and "renamed" not in new.stderr
    short = run(ckpt, files[0], "--chunk-seconds", "2", "--context-seconds", "0.01")
    assert short.exit_code == 1 and "--context-seconds 0.01 is shorter" in short.output
    help_text = CliRunner().invoke(app, ["transcribe", "--help"], env={"COLUMNS": "200"}).output
    assert "--context-seconds" in help_text and "--stride-seconds" not in help_text


@pytest.mark.slow
def test_lm_beam_and_tune(ckpt, files, tmp_path, tiny_lm):
    res = run(ckpt, *files[:3], "--lm", tiny_lm, "--beam", "8", "--format", "jsonl")
    assert res.exit_code == 0, res.output
    assert [json.loads(l)["audio"] for l in res.stdout.splitlines()] == files[:3]
    parallel = run(ckpt, *files[:3], "--lm", tiny_lm, "--beam", "8", "--format", "jsonl", "--jobs", "2")
    assert parallel.exit_code == 0 and parallel.stdout == res.stdout  # same results, same order
    assert "in 2 processes" in parallel.stderr
    shutil.copy(tiny_lm, tmp_path / "lm.bin")  # no unigram list beside it: warned, still decodes
    res = run(ckpt, files[0], "--lm", tmp_path / "lm.bin", "--beam", "4")
    assert res.exit_code == 0 and "no unigram list" in res.stderr

    manifest = tmp_path / "dev.jsonl"
    texts = ["THE WHITE WHALE", "CALL ME ISHMAEL"]
    manifest.write_text("".join(
        json.dumps({"id": f"d{i}", "audio": f, "num_samples": 1, "sample_rate": 16000, "text": t}) + "\n"
        for i, (f, t) in enumerate(zip(files, texts))
    ))  # fmt: skip
    table = tmp_path / "tune.jsonl"
    res = run(ckpt, "--manifest", manifest, "--lm", tiny_lm, "--beam", "4", "--tune", "--tune-alpha", "0,1",
              "--tune-beta", "0,2", "--out", table)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert re.search(r"best: --alpha \S+ --beta \S+ +\(WER [\d.]+%\)", res.stdout)
    rows = [json.loads(l) for l in table.read_text().splitlines()]
    assert len(rows) == 5 and {(r["alpha"], r["beta"]) for r in rows} == {(None, None), (0, 0), (0, 2), (1, 0), (1, 2)}
    table2 = tmp_path / "tune2.jsonl"
    res = run(ckpt, "--manifest", manifest, "--lm", tiny_lm, "--tune", "--tune-trials", "3", "--beam", "4", "-j", "2",
              "--out", table2)  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in table2.read_text().splitlines()]
    assert len(rows) == 4 and sum(r["alpha"] is None for r in rows) == 1  # greedy + 3 random trials
    assert len({(r["alpha"], r["beta"]) for r in rows if r["alpha"] is not None}) == 3
    tuned = [r for r in rows if r["alpha"] is not None]
    assert [(r["wer"], r["cer"]) for r in tuned] == sorted((r["wer"], r["cer"]) for r in tuned)  # best first
    best = re.search(r"best: --alpha (\S+) --beta (\S+)", res.stdout)
    assert best and (float(best[1]), float(best[2])) == (tuned[0]["alpha"], tuned[0]["beta"])
