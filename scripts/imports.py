#!/usr/bin/env python3
"""The import graph of w2vcli/, read from the source (nothing is imported): prints each module
with the w2vcli modules it imports, counts the imports made inside functions, and exits 1 when
the graph has a circle.

    python scripts/imports.py            # the graph, the count, "no import circle" (exit 0)
    python scripts/imports.py --inner    # also every in-function import, file:line, and which lack a
                                         # `# lazy:` comment saying why (the import cost it saves)

An arrow is any `import` / `from ... import` of a w2vcli module, at module level or inside a
function (a lazy import still ties the two modules together); imports under `if TYPE_CHECKING:`
are left out (they never run). `from w2vcli.model import masking` points at the submodule when
one has that name. The parents a Python import loads implicitly (`w2vcli`, `w2vcli.model`) are
not arrows: the package `__init__` files import nothing of their own at module level.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "w2vcli"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file under w2vcli/."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module):
    """(node, inside a function) for every import statement, skipping TYPE_CHECKING blocks."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, here: str, known: dict[str, Path]) -> list[str]:
    """The w2vcli modules one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from . import x
            package = here.split(".")[: len(here.split(".")) - node.level + (known[here].name == "__init__.py")]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return sorted({n for n in names if n in known})


def has_reason(lines: list[str], lineno: int) -> bool:
    """Whether the import at `lineno` (1-based) says why it is inside a function: a `# lazy:`
    comment on its line or above its group of imports."""
    if "# lazy" in lines[lineno - 1]:
        return True
    k = lineno - 2
    while k >= 0 and lines[k].lstrip().startswith(("from ", "import ")):
        k -= 1
    return k >= 0 and lines[k].lstrip().startswith("# lazy:")


def graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """(module -> the w2vcli modules it imports, [(file, line, what) of in-function imports]);
    `what` is the module imported, with " (no reason)" when no `# lazy:` comment says why."""
    known = modules(root)
    edges: dict[str, set[str]] = {m: set() for m in known}
    inner = []
    for name, path in known.items():
        text = path.read_text(encoding="utf-8")
        tree, lines = ast.parse(text, str(path)), text.splitlines()
        for node, in_function in _imports(tree):
            targets = _targets(node, name, known)
            edges[name].update(t for t in targets if t != name)
            if in_function:
                what = targets[0] if targets else (node.module if isinstance(node, ast.ImportFrom)
                                                   else node.names[0].name)
                why = "" if has_reason(lines, node.lineno) else " (no reason)"
                inner.append((str(path.relative_to(root)), node.lineno, (what or "?") + why))
    return edges, inner


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def main(argv: list[str]) -> int:
    edges, inner = graph()
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m])) or '-'}")
    if "--inner" in argv:
        print()
        for path, line, what in inner:
            print(f"{path}:{line}: {what}")
    silent = sum(what.endswith("(no reason)") for _, _, what in inner)
    print(f"\n{len(edges)} modules, {sum(map(len, edges.values()))} arrows, {len(inner)} in-function imports "
          f"({silent} without a reason)")
    cycle = find_cycle(edges)
    if cycle:
        print("import circle: " + " -> ".join(cycle))
        return 1
    print("no import circle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
