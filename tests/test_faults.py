"""Faults in a training run, injected: each ends the run within seconds with one line and a
non-zero exit (or, for one Ctrl-C, a checkpoint and exit 0), DataLoader workers included, and
nothing already written is lost.

Every run is a subprocess under a hard timeout, so a regression that hangs fails here instead
of hanging the test suite. Faults are injected by a few lines of Python run before the CLI
(`inject`): DataLoader workers are forked, so they inherit the patch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_data import make_corpus, read_metrics

ARGS = ["--preset", "tiny", "--max-tokens", "64000", "--log-interval", "1"]
BOUND = 60.0  # seconds a failing run may take to exit, start-up (torch import) included

DRIVER = """
import sys
exec(sys.argv[1])
sys.argv = ["w2v", *sys.argv[2:]]
from w2vcli.cli import main
main()
"""


def start(*args, inject: str = "") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("W2V_DEBUG", None)
    return subprocess.Popen([sys.executable, "-c", DRIVER, inject, *map(str, args)], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = BOUND) -> tuple[int, str, float]:
    """(exit code, stderr, seconds) of a run; a run still going after `timeout` is killed and fails the test."""
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"still running after {timeout:.0f} s (hung?); stderr:\n{err[-2000:]}")
    return proc.returncode, err, time.monotonic() - t0


def run(*args, inject: str = "", timeout: float = BOUND) -> tuple[int, str]:
    code, err, _ = finish(start(*args, inject=inject), timeout)
    return code, err


def one_error_line(err: str) -> str:
    """The run's error: exactly one `error:` line and no traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}):\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("timed out waiting for training to start")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("tones"), "train", 12, seed=0)


def test_missing_audio_is_found_before_training_and_named(corpus, tmp_path):
    rows = corpus.read_text().splitlines()
    ghost = tmp_path / "ghost.wav"
    rows[5] = rows[5].replace(rows[5].split('"audio": "')[1].split('"')[0], str(ghost))
    manifest = tmp_path / "ghost.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    code, err = run("pretrain", "--train", manifest, "--out", tmp_path / "pt", *ARGS, "--max-updates", 50,
                    "--num-workers", 2)
    assert code == 1
    assert one_error_line(err) == f"error: {manifest}: row 'train-005': {ghost}: no such file"
    assert not (tmp_path / "pt" / "last.pt").exists()
    # skipped and counted instead
    code, err = run("pretrain", "--train", manifest, "--out", tmp_path / "pt", *ARGS, "--max-updates", 2,
                    "--num-workers", 1, "--skip-bad-audio")
    assert code == 0, err
    assert f"{manifest}: skipping 1 of 12 rows whose audio is missing or unreadable" in err.replace("\n", "")
    assert torch.load(tmp_path / "pt" / "last.pt", weights_only=True)["update"] == 2


WORKER_RAISES = """
import w2vcli.data.dataset as dataset
get = dataset.AudioDataset.__getitem__
def getitem(self, key):
    if key[1] == 3:
        raise ValueError("injected fault")
    return get(self, key)
dataset.AudioDataset.__getitem__ = getitem
"""


def test_worker_that_raises_ends_the_run_at_once(corpus, tmp_path):
    code, err = run("pretrain", "--train", corpus, "--out", tmp_path / "pt", *ARGS, "--max-updates", 100,
                    "--num-workers", 2, inject=WORKER_RAISES)
    assert code == 1
    assert one_error_line(err) == ("error: a data loading worker failed: ValueError: injected fault "
                                   "(W2V_DEBUG=1 shows where)")


FILE_VANISHES = """
import w2vcli.data.dataset as dataset
from w2vcli.errors import W2VError
load = dataset.load_audio
def load_audio(path):
    if path.endswith("train-003.wav"):
        raise W2VError(f"{path}: no such file")
    return load(path)
dataset.load_audio = load_audio
"""


def test_audio_gone_during_training_is_one_line_and_exit_1(corpus, tmp_path):
    code, err = run("finetune", "--init", "none", "--train", corpus, "--out", tmp_path / "ft", *ARGS,
                    "--max-updates", 100, "--num-workers", 2, inject=FILE_VANISHES)
    assert code == 1
    assert one_error_line(err) == f"error: {corpus.parent / 'train' / 'train-003.wav'}: no such file"


DISK_FULL_ON_SECOND_CHECKPOINT = """
import contextlib, errno, os
import w2vcli.model.checkpoint as state
real_open, saves = state.atomic_open, []
class Full:
    def __init__(self, f):
        self.f = f
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __getattr__(self, name):
        return getattr(self.f, name)
@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    saves.append(path)
    with real_open(path, mode, **kwargs) as f:
        yield Full(f) if len(saves) >= 2 else f
state.atomic_open = atomic_open
"""


def test_full_disk_at_a_checkpoint_keeps_the_previous_one(corpus, tmp_path):
    out = tmp_path / "pt"
    code, err = run("pretrain", "--train", corpus, "--out", out, *ARGS, "--max-updates", 100,
                    "--valid-interval", 2, "--num-workers", 1, inject=DISK_FULL_ON_SECOND_CHECKPOINT)
    assert code == 1
    assert one_error_line(err) == (f"error: {out / 'last.pt'}: cannot write the checkpoint (No space left on "
                                   "device); the previous last.pt, if any, is unchanged")
    assert torch.load(out / "last.pt", weights_only=True)["update"] == 2  # the first checkpoint, intact
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert [r["update"] for r in read_metrics(out)] == [1, 2, 3, 4]


def test_ctrl_c_with_workers_writes_a_checkpoint_and_exits_0(corpus, tmp_path):
    out = tmp_path / "pt"
    proc = start("pretrain", "--train", corpus, "--out", out, *ARGS, "--max-updates", 100000, "--num-workers", 2)
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(read_metrics(out)) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    code, err, seconds = finish(proc, timeout=20)
    assert code == 0, err
    assert "SIGINT: stopped at update" in err
    assert torch.load(out / "last.pt", weights_only=True)["update"] >= 2


SLOW_STEPS = """
import time
import w2vcli.train.engine as engine
step = engine.Trainer.train_step
def slow_step(self):
    time.sleep(2.0)
    return step(self)
engine.Trainer.train_step = slow_step
"""


def test_second_ctrl_c_aborts_at_once_workers_included(corpus, tmp_path):
    out = tmp_path / "pt"
    proc = start("pretrain", "--train", corpus, "--out", out, *ARGS, "--max-updates", 100000, "--num-workers", 2,
                 inject=SLOW_STEPS)
    wait_for(lambda: (out / "metrics.jsonl").exists(), proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)  # inside the 2 s step: the first asked for a stop after it, the second aborts
    os.killpg(proc.pid, signal.SIGINT)
    code, err, seconds = finish(proc, timeout=20)
    assert code != 0 and "Traceback" not in err, err
    assert seconds < 15


# --- no workers, no hang possible: in-process -----------------------------------------------


def cli(*args) -> tuple[int, str]:
    from typer.testing import CliRunner

    from w2vcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def test_out_holding_a_run_is_refused_without_resume(corpus, tmp_path):
    out = tmp_path / "pt"
    code, err = cli("pretrain", "--train", corpus, "--out", out, *ARGS, "--max-updates", 2, "--num-workers", 0)
    assert code == 0, err
    before = (out / "last.pt").read_bytes(), (out / "metrics.jsonl").read_text()
    code, err = cli("pretrain", "--train", corpus, "--out", out, *ARGS, "--max-updates", 3, "--num-workers", 0)
    assert code == 1
    assert one_error_line(err) == (f"error: {out} already holds a run (last.pt): continue it with --resume, "
                                   f"or start over with another --out (or after deleting {out})")
    assert ((out / "last.pt").read_bytes(), (out / "metrics.jsonl").read_text()) == before
    # refused before an --init checkpoint is even looked at (a large one would take long to load)
    code, err = cli("pretrain", "--init", tmp_path / "not-there", "--train", corpus, "--out", out, *ARGS)
    assert code == 1 and "already holds a run" in one_error_line(err)


def test_resume_with_nothing_to_resume_starts_fresh(corpus, tmp_path):
    out = tmp_path / "ft"
    code, err = cli("finetune", "--init", "none", "--train", corpus, "--out", out, *ARGS, "--max-updates", 2,
                    "--num-workers", 0, "--resume")
    assert code == 0, err
    assert f"--resume: no checkpoint in {out} yet, starting a fresh run" in err.replace("\n", "")
    assert torch.load(out / "last.pt", weights_only=True)["update"] == 2
    code, err = cli("finetune", "--init", "none", "--train", corpus, "--out", out, *ARGS, "--max-updates", 3,
                    "--num-workers", 0, "--resume")
    assert code == 0, err
    assert f"resuming from {out / 'last.pt'}: update 2" in err.replace("\n", "")
    # --train may be left out when resuming: the run's config.toml names it
    code, err = cli("finetune", "--out", out, "--max-updates", 4, "--resume")
    assert code == 0, err
    assert torch.load(out / "last.pt", weights_only=True)["update"] == 4
    # but not when there is nothing to resume
    code, err = cli("finetune", "--init", "none", "--out", tmp_path / "new", *ARGS, "--resume")
    assert code == 2 and one_error_line(err) == "error: missing option '--train' (see w2v finetune --help)"


def test_empty_manifest_is_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = cli("pretrain", "--train", empty, "--out", tmp_path / "pt", *ARGS, "--num-workers", 0)
    assert code == 1
    assert one_error_line(err) == f"error: {empty}: the manifest has no rows"
