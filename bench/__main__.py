"""`python -m bench`: what there is, and how each part runs.

    bench/                 common.py: the helpers every benchmark shares (timing, reports, models, audio)
      run.sh, run.py       the suite: w2v against transformers and the deployment runtimes
      suite/               its benchmarks, one RATIO line each (bench/run.sh --only NAME)
      gpu/                 the GPU harness (bench/gpu/gpu.sh; --dry-run on a CPU)
      studies/             one-off studies (python -m bench.studies.NAME --help)
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def first_line(path: Path) -> str:
    """The first line of a module's docstring (read, not imported: no torch needed to list)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def plan() -> dict:
    """bench/run.py's PLAN, read from its source (importing run.py would load torch)."""
    tree = ast.parse((HERE / "run.py").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PLAN")
    return {k.value: None for k in node.value.keys}


def main() -> None:
    print("suite (bench/run.sh [--quick] [--only NAME ...]; appends RATIO tables to docs/benchmarks.md):")
    print("  " + " ".join(plan()))
    for folder, how in (("suite", "bench/run.sh --only NAME"), ("gpu", "bench/gpu/gpu.sh --out DIR [--dry-run]"),
                        ("studies", "python -m bench.studies.NAME")):
        print(f"\n{folder}/ ({how}):")
        for path in sorted((HERE / folder).glob("*.py")):
            if not path.name.startswith("__"):
                print(f"  {path.stem:22} {first_line(path)}")
        for path in sorted((HERE / folder).glob("*.sh")):
            print(f"  {path.name:22} {next((l[2:].strip() for l in path.read_text().splitlines()[1:] if l.startswith('# ')), '')}")
    print(f"\nshared helpers: bench/common.py ({first_line(HERE / 'common.py')})")


if __name__ == "__main__":
    main()
