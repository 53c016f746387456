#!/usr/bin/env python3
"""Lines of code written more than once in w2vcli/ (stripped, longer than 45 characters; imports,
comments, docstrings, error messages and returns left out): where repeated code is left.

    python scripts/repeats.py [--min 2]
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = ("#", '"""', "from ", "import ", 'raise W2VError(f"', "return ")


def repeats(root: Path = ROOT, least: int = 2) -> list[tuple[str, list[str]]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in sorted((root / "w2vcli").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.strip()
            if len(text) > 45 and not text.startswith(SKIP) and not text.endswith('"""'):
                seen[text].append(f"{path.relative_to(root)}:{n}")
    return sorted(((t, w) for t, w in seen.items() if len(w) >= least), key=lambda tw: -len(tw[1]))


if __name__ == "__main__":
    least = int(sys.argv[sys.argv.index("--min") + 1]) if "--min" in sys.argv else 2
    found = repeats(least=least)
    for text, where in found:
        print(f"{len(where)}x {text[:90]}\n    {' '.join(where)}")
    print(f"{len(found)} lines written {least} or more times")
