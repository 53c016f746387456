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
