"""The quickstart's commands: they decode what the demo decodes, and leave nothing untracked."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("#")[0] for block in blocks for line in block.replace("\\\n", " ").splitlines()]


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
