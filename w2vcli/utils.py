"""Small helpers shared across the package: atomic writes, logging to the console."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from rich.console import Console

console = Console(stderr=True)


def log(message: str) -> None:
    """Print a status line on stderr (above any progress bar)."""
    console.print(message, highlight=False, soft_wrap=True)  # never break a path across lines


def warn(message: str) -> None:
    """Print a yellow warning line on stderr."""
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file next to `path`; on success fsync and rename it onto `path`.

    If the block raises, the temporary file is removed and `path` is left untouched, so a
    crash or Ctrl-C never leaves a half-written manifest or checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write one JSON object per line, atomically. Returns the number of rows written."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
