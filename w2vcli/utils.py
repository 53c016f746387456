"""Small helpers shared across the package: atomic writes, logging to the console."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

from rich.console import Console
from rich.markup import escape

from w2vcli.errors import W2VError

console = Console(stderr=True)


def log(message: str) -> None:
    """Print a status line on stderr (above any progress bar)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)  # never break a path across lines


PROGRESS_LOG_SECONDS = 30.0  # off a terminal: one progress line this often


class ProgressBar:
    """Progress of a long loop, shown the way the output can take it.

    On a terminal: a transient rich bar (cleared at the end). Elsewhere (a pipe, a log file,
    a batch job): a plain line "DESCRIPTION: DONE/TOTAL UNIT, ELAPSED elapsed, about LEFT left"
    every `PROGRESS_LOG_SECONDS`, and one at the end if any was printed, so a long run shows
    that it is alive without filling the log.

        with ProgressBar("tuning", total=len(pairs), unit="pairs") as bar:
            for ...:
                bar.advance()
    """

    def __init__(self, description: str, total: float, unit: str = ""):
        self.description, self.total, self.unit = description, total, unit
        self.done, self.logged_done = 0.0, None  # progress at the last line logged
        self.rich = None

    def __enter__(self) -> "ProgressBar":
        self.t0 = self.last = time.monotonic()
        if console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn(f"{{task.completed:.0f}}/{{task.total:.0f}} {self.unit}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
            self.rich.__enter__()
            self.task = self.rich.add_task(self.description, total=self.total)
        return self

    def advance(self, n: float = 1.0) -> None:
        self.done += n
        if self.rich is not None:
            self.rich.advance(self.task, n)
        elif time.monotonic() - self.last >= PROGRESS_LOG_SECONDS:
            self._log()

    def add_total(self, n: float) -> None:
        """More to do than announced (a search that decides its next steps as it goes)."""
        self.total += n
        if self.rich is not None:
            self.rich.update(self.task, total=self.total)

    def _log(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.t0
        left = elapsed * (self.total - self.done) / self.done if 0 < self.done < self.total else 0.0
        log(f"{self.description}: {self.done:.0f}/{self.total:.0f} {self.unit}, {_duration(elapsed)} elapsed"
            + (f", about {_duration(left)} left" if left else ""))
        self.logged_done = self.done

    def __exit__(self, *exc) -> None:
        if self.rich is not None:
            self.rich.__exit__(*exc)
        elif self.logged_done not in (None, self.done) and exc[0] is None:  # the end, when it was followed
            self._log()


class NoProgress:
    """`ProgressBar`'s interface drawing nothing: what library loops get unless a command passes
    `ProgressBar` (`progress=ProgressBar`), so a library caller (a server) sees no bars."""

    def __init__(self, description: str = "", total: float = 0, unit: str = ""):
        pass

    def __enter__(self) -> "NoProgress":
        return self

    def advance(self, n: float = 1.0) -> None:
        pass

    def add_total(self, n: float) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


def count_text(n: int) -> str:
    """A count people read at a glance, never rounded to zero: 94.4 M, 23.6 k, 812 (parameters, bytes)."""
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def warn(message: str) -> None:
    """Print a yellow warning line on stderr."""
    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file next to `path`; on success fsync and rename it onto `path`.

    If the block raises, the temporary file is removed and `path` is left untouched, so a
    crash or Ctrl-C never leaves a half-written manifest or checkpoint behind.
    """
    path = Path(path)
    if path.is_dir():
        raise W2VError(f"{path} is a directory: give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise W2VError(f"cannot write {path}: a part of {path.parent} is a file, not a folder") from None
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


_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_stderr(noise: str) -> Iterator[None]:
    """Drop the lines matching the regex `noise` that C libraries write straight to file
    descriptor 2 while the block runs (libmpg123's decoder complaints, KenLM's loading banner).

    Everything else written to descriptor 2 meanwhile, by any thread, is written again after
    the block, in order. Python-level redirections of sys.stderr are left alone.
    """
    pattern = re.compile(noise)
    with _FD2_LOCK, tempfile.TemporaryFile() as caught:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no descriptor 2: nothing to quiet
            yield
            return
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not pattern.search(line))
            if kept:
                os.write(2, kept.encode("utf-8"))


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
