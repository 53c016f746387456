"""Runs stopped from outside: SIGTERM writes a checkpoint of the update it stopped at and exits 0;
after SIGKILL at a seeded random moment, last.pt is complete and `--resume` carries on."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_data import make_corpus

KILL_SEED = 20261203  # the SIGKILL moment is random but the same on every run (said in a failure)
ARGS = ["--preset", "tiny", "--max-tokens", "64000", "--num-workers", "0", "--log-interval", "1"]


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "w2vcli", *map(str, args)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for training to start")
        time.sleep(0.1)


def updates_logged(out) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tones"), "train", 16, seed=0)


def test_sigterm_writes_checkpoint_and_exits_cleanly(train, tmp_path):
    out = tmp_path / "pt"
    # with a DataLoader worker, and the signal sent to the whole process group (as `timeout`,
    # Slurm or a terminal do): the worker must not die before the checkpoint is written
    proc = start("pretrain", "--train", train, "--out", out, *ARGS, "--max-updates", 100000, "--num-workers", 1)
    wait_for(lambda: updates_logged(out) >= 2, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    stopped = int(re.search(r"SIGTERM: stopped at update (\d+)", output)[1])
    assert stopped >= 2
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # the state of the update it says it stopped at, and all of it
    assert ckpt["update"] == ckpt["scheduler"]["update"] == stopped
    assert ckpt["skipped"] == 0 and len(ckpt["rng"]) == 1 and set(ckpt["data"]) == {"epoch", "batch"}
    steps = {float(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert steps == {float(stopped)}, steps  # AdamW stepped once per update, every parameter
    rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert rows[-1]["update"] == stopped  # the metrics end where the checkpoint does


def test_sigkill_then_resume(train, tmp_path):
    out = tmp_path / "pt"
    # a checkpoint every 2 updates, so the kill often lands during a write
    proc = start("pretrain", "--train", train, "--out", out, *ARGS, "--max-updates", 100000,
                 "--valid-interval", 2)
    wait_for(lambda: (out / "last.pt").exists(), proc)
    delay = random.Random(KILL_SEED).uniform(0.0, 1.5)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=30)
    ckpt = torch.load(out / "last.pt", weights_only=True)  # complete, whatever the moment
    done = ckpt["update"]
    proc = start("pretrain", "--train", train, "--out", out, *ARGS, "--max-updates", done + 3,
                 "--valid-interval", 2, "--resume")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"killed {delay:.3f} s after the first last.pt:\n{output}"
    assert f"resuming from {out / 'last.pt'}: update {done}" in output.replace("\n", "")
    assert torch.load(out / "last.pt", weights_only=True)["update"] == done + 3
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
