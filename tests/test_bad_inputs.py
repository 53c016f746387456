"""Bad input gives one clear line and exit code 1, never a traceback or a misleading message;
what w2v prints reads well in a pipe or a log file (issue 14, cases 5, 6, 7, 10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.text import SPECIALS, Vocabulary


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(res) -> str:
    """The one `error:` line of a failed command (exit 1, no traceback)."""
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny CTC checkpoint with random weights."""
    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    torch.manual_seed(0)
    model = build_model("ctc", tiny(), Vocabulary(list(SPECIALS) + list("|ABCDE")))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def flac(real_mini):
    return real_mini / "test-real" / "8002" / "1" / "8002-1-0000.flac"


# --- case 5: tracebacks that are now one line ---------------------------------------------------


def test_prepare_out_naming_a_file_or_a_folder(tmp_path, real_mini):
    a_file = tmp_path / "taken"
    a_file.write_text("keep me")
    assert error_line(cli("prepare", "librispeech", real_mini, "--out", a_file)) == (
        f"error: --out {a_file}: a file, not a folder (give a folder for the outputs)")
    assert a_file.read_text() == "keep me"
    a_dir = tmp_path / "folder"
    a_dir.mkdir()
    assert error_line(cli("prepare", "folder", real_mini, "--out", a_dir)) == (
        f"error: --out {a_dir}: a folder, not a file (give the manifest's name, e.g. {a_dir / 'train.jsonl'})")


def test_atomic_open_onto_a_folder_is_a_w2v_error(tmp_path):
    from w2vcli.errors import W2VError
    from w2vcli.utils import atomic_open

    with pytest.raises(W2VError, match="is a directory"):
        with atomic_open(tmp_path):
            pass


def test_model_table_of_the_wrong_type_names_file_and_field(tmp_path):
    toml = tmp_path / "big.toml"
    toml.write_text('[model]\nhidden_size = "big"\n')
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "/x.wav", "num_samples": 16000, "sample_rate": 16000}) + "\n")
    res = cli("pretrain", "--train", manifest, "--out", tmp_path / "pt", "--config", toml)
    assert error_line(res) == f"error: {toml}: [model]: hidden_size must be int, got 'big'"


# --- case 6: messages that no longer mislead ----------------------------------------------------


def test_things_given_as_the_model(ckpt, flac, tmp_path):
    # whisper's order: audio first
    assert error_line(cli("transcribe", flac, ckpt)) == (
        f"error: {flac}: a FLAC audio file, not a model checkpoint (`w2v transcribe` takes the model first: "
        "MODEL AUDIO...)")
    zero = tmp_path / "zero.pt"
    zero.write_bytes(b"")
    assert error_line(cli("transcribe", zero, flac)) == f"error: {zero}: empty file (0 bytes), not a checkpoint"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(1000).replace(b"\x80", b"\x81").replace(b"PK", b"QK"))
    assert error_line(cli("transcribe", junk, flac)) == (
        f"error: {junk}: not a checkpoint (neither a torch zip archive nor a pickle)")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    assert error_line(cli("transcribe", cut, flac)).startswith(f"error: {cut}: a truncated or damaged checkpoint (")


def test_a_folder_or_a_pipe_given_as_audio(ckpt, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # what /dev/stdin is in `cat x.flac | w2v transcribe MODEL /dev/stdin`
    res = cli("transcribe", ckpt, tmp_path, fifo)
    assert res.exit_code == 1
    assert f"warning: {tmp_path}: a folder, not an audio file" in res.stderr
    assert (f"warning: {fifo}: not a regular file (a pipe or device such as /dev/stdin cannot be read: "
            "save the audio to a file first)") in res.stderr.replace("\n", "")


NOISY_MP3 = """
import numpy as np, soundfile as sf, sys
with sf.SoundFile(sys.argv[1]) as f:
    f.seek(f.frames - 4096)
    f.read(4096)
"""


def test_no_libmpg123_noise_for_an_mp3_that_is_accepted(tmp_path, capfd):
    folder = tmp_path / "mp3"
    folder.mkdir()
    noise = 0.3 * np.random.default_rng(0).standard_normal(4 * 16000).astype(np.float32)
    sf.write(folder / "clip.mp3", noise, 16000, format="MP3", compression_level=0.5, bitrate_mode="VARIABLE")
    raw = subprocess.run([sys.executable, "-c", NOISY_MP3, str(folder / "clip.mp3")], capture_output=True, text=True)
    if "[src/libmpg123" not in raw.stderr:
        pytest.skip("this libmpg123 decodes the file's end without complaint")
    res = cli("prepare", "folder", folder, "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 0, res.output
    assert "[src/libmpg123" not in capfd.readouterr().err + res.stderr
    assert json.loads((tmp_path / "m.jsonl").read_text())["id"] == "clip"


def test_kenlm_banner_does_not_come_before_an_lm_error(ckpt, flac, tmp_path, capfd):
    pytest.importorskip("kenlm")
    arpa = tmp_path / "unigram.arpa"  # valid ARPA, but KenLM needs at least a bigram model
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n-1.0\tA\t-0.3\n-1.0\t</s>\t-0.3\n\n\\end\\\n")
    res = cli("transcribe", ckpt, flac, "--lm", arpa)
    line = error_line(res)
    assert line == f"error: cannot set up beam search with {arpa}: This ngram implementation assumes at least a bigram model. Byte: 18"
    err = capfd.readouterr().err + res.stderr
    assert "Loading the LM" not in err and "****" not in err and "--5---10" not in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01" * 500)
    assert error_line(cli("transcribe", ckpt, flac, "--lm", junk)) == (
        f"error: {junk}: not a KenLM language model (neither an ARPA file nor a KenLM binary; `w2v lm build` makes one)")


# --- case 7: silent surprises -------------------------------------------------------------------


def test_score_with_nothing_to_score_is_an_error(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("u1 HELLO WORLD\nu2 GOOD BYE\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert error_line(cli("score", "--ref", ref, "--hyp", empty)) == f"error: {empty}: no hypotheses (empty file)"
    other = tmp_path / "other.txt"
    other.write_text("x1 HELLO WORLD\n")
    assert error_line(cli("score", "--ref", ref, "--hyp", other)) == (
        f"error: {other} and {ref} have no utterance id in common (e.g. 'x1' and 'u1'): hypotheses of another set?")


def test_a_malformed_jsonl_line_is_an_error_naming_it(tmp_path):
    ref = tmp_path / "ref.jsonl"
    ref.write_text('"id": "u1", "text": "HELLO"}\n' + json.dumps({"id": "u2", "text": "BYE"}) + "\n")
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("u1 HELLO\nu2 BYE\n")
    assert error_line(cli("score", "--ref", ref, "--hyp", hyp)).startswith(f"error: {ref}:1: not a JSON object (")
    kaldi = tmp_path / "ref.txt"  # no suffix to go by: the first line decides, a later JSON line is named
    kaldi.write_text("u1 HELLO\n" + json.dumps({"id": "u2", "text": "BYE"}) + "\n")
    assert error_line(cli("score", "--ref", kaldi, "--hyp", hyp)) == (
        f"error: {kaldi}:2: a JSON object in a Kaldi-style 'ID TEXT' file (line 1 is not JSON; name the file "
        ".jsonl if it is JSONL)")


def test_transcribe_files_out_writes_the_file(ckpt, flac, tmp_path):
    out = tmp_path / "x.txt"
    res = cli("transcribe", ckpt, flac, flac, "--out", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{flac}\t") for line in lines)
    assert f"wrote 2 transcript(s) to {out}" in res.stderr.replace("\n", "")


# --- case 10: in a pipe or a log file -----------------------------------------------------------


def test_help_in_a_pipe_is_plain_and_reflowed():
    res = cli("score", "--help")
    assert res.exit_code == 0
    assert "<bool>" not in res.output
    assert re.search(r"^  --json +Print one JSON object", res.output, re.M)
    # the docstring's own line breaks are not kept: a paragraph is re-wrapped as a whole
    assert not re.search(r"all deletions *\n", res.output)
    assert "(with a warning naming it)" in " ".join(res.output.split())


def test_training_log_lines_are_whole_and_no_bar_is_left_in_a_log(tmp_path):
    from train_data import make_corpus

    train = make_corpus(tmp_path, "train", 6, seed=0)
    res = cli("pretrain", "--train", train, "--out", tmp_path / "pt", "--preset", "tiny", "--max-tokens", "64000",
              "--max-updates", 2, "--log-interval", 1, "--num-workers", 0)
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stderr.splitlines() if line.startswith("update ")]
    assert len(rows) == 2 and all(" | step_time " in r and r.endswith(" | skipped 0") for r in rows), res.stderr
    assert "━" not in res.stderr and "…" not in res.stderr


def test_tune_shows_progress_in_a_pipe(ckpt, real_mini, tmp_path, tiny_lm, monkeypatch):
    import w2vcli.utils

    monkeypatch.setattr(w2vcli.utils, "PROGRESS_LOG_SECONDS", 0.0)  # a line per step, not per 30 s
    files = sorted(real_mini.rglob("*.flac"))[:2]
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"d{i}", "audio": str(f), "num_samples": 1, "sample_rate": 16000,
                                            "text": "THE WHITE WHALE"}) + "\n" for i, f in enumerate(files)))
    res = cli("transcribe", ckpt, "--manifest", manifest, "--lm", tiny_lm, "--beam", "2", "--tune",
              "--tune-alpha", "0,1", "--tune-beta", "0")
    assert res.exit_code == 0, res.output
    assert re.search(r"^emissions: 2/2 files, \d+s elapsed$", res.stderr, re.M), res.stderr
    assert re.search(r"^tuning: 1/2 \(α, β\) pairs, \d+s elapsed, about \d+s left$", res.stderr, re.M), res.stderr


def test_synth_shows_progress_in_a_pipe(tmp_path, monkeypatch):
    import shutil

    import w2vcli.utils

    if not all(shutil.which(p) for p in ("espeak-ng", "flite", "festival")):
        pytest.skip("the speech synthesizers are not installed (make setup)")
    monkeypatch.setattr(w2vcli.utils, "PROGRESS_LOG_SECONDS", 0.0)
    res = cli("prepare", "synth", "--out", tmp_path / "corpus", "--hours", "0.002", "--dev-minutes", "0.05",
              "--test-minutes", "0.05", "--speakers", "1", "--heldout-speakers", "1", "--jobs", "1")
    assert res.exit_code == 0, res.output
    assert re.search(r"^synthesizing: \d+/\d+ s of audio, \d+s elapsed", res.stderr, re.M), res.stderr
