"""docs/architecture.md stays true: every `w2vcli/FILE.py: NAME` it names exists, and each of its
two walks (a pretraining step, a transcribe call) names every file the run calls a function in,
as scripts/call_path.py traces it."""

from __future__ import annotations

import ast
import re
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
REFERENCE = re.compile(r"(w2vcli/[\w/]+\.py): ([A-Za-z_][\w.]*)")


def section(heading: str) -> str:
    return re.search(rf"^## {re.escape(heading)}.*?(?=^## |\Z)", DOC, re.S | re.M)[0]


def names_in(path: Path) -> set[str]:
    """Top-level functions, classes and assignments, and `Class.member` for their members."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out |= {t.id for t in targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.add(f"{node.name}.{member.name}")
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    out.add(f"{node.name}.{member.target.id}")
    return out


def test_every_named_function_exists():
    refs = REFERENCE.findall(DOC)
    assert len(refs) > 40, refs
    missing = [f"{path}: {name}" for path, name in refs
               if not (REPO / path).is_file() or name not in names_in(REPO / path)]
    assert not missing, missing


@pytest.mark.parametrize("heading, run", [("The path of one training step", "pretrain_path"),
                                          ("One transcribe call", "transcribe_path")])
def test_each_walk_names_every_file_on_its_path(heading, run):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import call_path
    finally:
        sys.path.pop(0)
    with tempfile.TemporaryDirectory() as tmp:
        ran = getattr(call_path, run)(Path(tmp)).ran
    text = section(heading)
    assert len(ran) > 15, ran
    unnamed = sorted(f for f in ran if f not in text)
    assert not unnamed, f"{heading}: {unnamed}"
