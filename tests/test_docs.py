"""The quickstart's commands: they run as written (on small sizes), decode what the demo decodes,
and leave nothing untracked."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands(section: str = "") -> list[str]:
    """The commands of the quickstart's bash blocks (of the section whose heading starts with
    `section`, or all), comments dropped, continuation lines joined."""
    text = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    if section:
        text = re.search(rf"^## {re.escape(section)}.*?(?=^## |\Z)", text, re.S | re.M)[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("#")[0] for block in blocks for line in block.replace("\\\n", " ").splitlines()]


# section 3 on small sizes: the same commands, with these options changed or added
SMALL = [
    (r"--hours 2\b", "--hours 0.01 --dev-minutes 0.4 --test-minutes 0.4 --speakers 2 --heldout-speakers 1 --jobs 1"),
    (r"--minutes 10\b", "--minutes 0.3"),
    (r"^(w2v (pretrain|finetune) .*)$", r"\1 --max-updates 2 --valid-interval 2 --num-workers 0"),
]


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path):
    """Section 3 run command by command in a fresh folder, as a user pastes it: each exits 0, the
    --tune line's best (α, β) goes into the next command where the text says A and B, the score
    comes out of the test hypotheses, and the pretraining command that makes the shipped model runs."""
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    best = score = None
    commands = [c.strip() for c in quickstart_commands("3.") if c.strip()]
    assert [c.split()[1] for c in commands if c.startswith("w2v ")] == [
        "prepare", "prepare", "prepare", "finetune", "lm", "transcribe", "transcribe", "score", "pretrain"]
    for command in commands:
        for pattern, small in SMALL:
            command = re.sub(pattern, small, command)
        if best is not None:
            command = command.replace("--alpha A --beta B", f"--alpha {best[0]} --beta {best[1]}")
        args = shlex.split(command)
        args = [sys.executable, "-m", "w2vcli", *args[1:]] if args[0] == "w2v" else [sys.executable, *args[1:]]
        run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
        if "--tune" in args:
            best = re.search(r"best: --alpha (\S+) --beta (\S+)", run.stdout + run.stderr).groups()
        if args[1:4] == ["-m", "w2vcli", "score"]:
            score = run.stdout
    assert best is not None and "--alpha A" not in command
    hyps = (tmp_path / "exp" / "test.hyp.jsonl").read_text().splitlines()
    refs = (tmp_path / "data" / "test-clean.jsonl").read_text().splitlines()
    assert len(hyps) == len(refs) > 0
    assert score is not None and re.search(r"WER\s", score), score  # the score table


def test_quickstart_decodes_last_pt_like_the_demo():
    decoded = [m for line in quickstart_commands() for m in re.findall(r"w2v transcribe (exp/\S+)", line)]
    assert decoded and all(path.endswith("/last.pt") for path in decoded), decoded
    demo = (REPO / "recipes" / "demo" / "run.sh").read_text(encoding="utf-8")
    assert "ckpt=$out/seed-$1/ft-$row-$2/last.pt" in demo


def test_what_the_quickstart_writes_is_git_ignored():
    ignored = {line.strip().strip("/") for line in (REPO / ".gitignore").read_text().splitlines()}
    written = {m.split("/")[0] for line in quickstart_commands() for m in re.findall(r"--out[ =](\S+)", line)}
    assert written >= {"corpus", "data", "exp"}, written
    assert written <= ignored, written - ignored


def test_quickstart_steps_follow_the_demos_default_task():
    """Section 3 does by hand what `recipes/demo/run.sh` does by default (--task commands): the grammar's
    sentences, the same hours of speech, the same configs, the LM from those sentences with the data's
    rules, and the same tuning grid and beams."""
    commands = " ".join(quickstart_commands())
    demo = (REPO / "recipes" / "demo" / "run.sh").read_text(encoding="utf-8")
    assert "task=commands" in demo and 'train_hours=2 ' in demo
    assert "recipes/demo/local/domain.py --out exp/sentences.txt" in commands
    assert re.search(r"w2v prepare synth --hours 2 --sentences exp/sentences\.txt", commands), commands
    for conf in ("recipes/demo/conf/pretrain.toml", "recipes/demo/conf/finetune.toml"):
        assert f"--config {conf}" in commands, conf
    assert re.search(r"w2v lm build exp/sentences\.txt --order 4 --rules data/text_rules\.json", commands), commands
    alpha, beta, beam = (re.search(rf'^{name}="?([^"\s]+)', demo, re.M)[1] for name in ("tune_alpha", "tune_beta", "tune_beam"))
    assert f"--beam {beam} --tune --tune-alpha {alpha} --tune-beta {beta}" in commands, commands
