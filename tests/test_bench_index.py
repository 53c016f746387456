"""bench/ in three parts (the suite, the GPU harness, studies) with one module of shared helpers:
`python -m bench` lists every part, and no benchmark imports another as a library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def bench_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench"):
            names.add(node.module if node.module != "bench" else f"bench.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("bench")}
    return names


def test_python_dash_m_bench_lists_every_part():
    out = subprocess.run([sys.executable, "-m", "bench"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for folder in ("suite", "gpu", "studies"):
        for path in (BENCH / folder).iterdir():
            if path.suffix in (".py", ".sh") and not path.name.startswith("__"):
                assert f"  {path.stem if path.suffix == '.py' else path.name} " in out, (folder, path.name)
    assert "cpu_anchors_base_layer" in out and "pretrain_step_small" in out  # the suite's names, from bench/run.py
    assert sorted(p.name for p in BENCH.glob("*.py")) == ["__init__.py", "__main__.py", "common.py", "run.py"]


def test_benchmarks_share_helpers_through_common_only():
    for path in sorted(BENCH.glob("*/*.py")):
        allowed = {"bench.common"} | ({f"bench.gpu.{p.stem}" for p in (BENCH / "gpu").glob("*.py")}
                                      if path.parent.name == "gpu" else set())
        assert bench_imports(path) <= allowed, (path.relative_to(REPO), bench_imports(path) - allowed)
