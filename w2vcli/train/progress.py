"""What a run shows and records: the rich progress bar, metric lines above it, metrics.jsonl
(and TensorBoard when it is installed). Only rank 0 shows or writes anything."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open, console

if TYPE_CHECKING:
    from w2vcli.train.tasks import StepStats

# the engine's own fields of a training row, printed after the task's (`Task.shown`)
ENGINE_SHOWN = {"lr": ".2e", "grad_norm": ".2f", "samples_per_s": ".1f", "audio_per_s": ".1f", "data_time": ".3f",
                "step_time": ".3f", "skipped": "d"}


def format_row(row: dict, shown: dict[str, str]) -> str:
    """One metric line: the update, then the `shown` fields the row holds (name: format)."""
    parts = [f"update {row['update']}"]
    for key, fmt in shown.items():
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{key} {value:{fmt}}")
    if row.get("valid_best"):
        parts.append("[green]best[/green]")
    return " | ".join(parts)


@dataclass
class UpdateOutput:
    """What one optimizer update (taken or skipped) reports."""

    stats: StepStats  # the task's sums over the update's micro-batches and all processes
    stepped: bool  # False: a non-finite loss or gradient, the step was skipped
    grad_norm: float  # before clipping (0 when not finite)
    data_time: float  # seconds waiting for batches
    step_time: float  # seconds computing

    def bar(self) -> list[str]:
        """What the progress bar shows of this update: the task's `BAR` fields, then utterances/s."""
        values = self.stats.summary() if self.stepped else {}
        shown = [template.format(values[k]) for k, template in self.stats.BAR.items() if k in values]
        return shown + [f"{self.stats.nsentences / max(self.data_time + self.step_time, 1e-9):.1f} utt/s"]


class MetricsWindow:
    """Sums over the updates since the last metrics row, and the row they make."""

    def __init__(self):
        self.stats: StepStats | None = None
        self.updates = self.skipped = 0
        self.grad_norm = self.data_time = self.step_time = 0.0
        self.start = time.perf_counter()

    def add(self, out: UpdateOutput) -> None:
        self.stats = out.stats if self.stats is None else self.stats + out.stats
        self.updates += out.stepped
        self.skipped += not out.stepped
        self.grad_norm += out.grad_norm
        self.data_time += out.data_time
        self.step_time += out.step_time

    def row(self, update: int, lr: float, skipped_total: int, epoch: int, task_fields: dict) -> dict:
        """A metrics.jsonl row: the task's metrics, then means per update and rates per second."""
        seconds = time.perf_counter() - self.start
        n = max(self.updates + self.skipped, 1)
        return {"update": update, **self.stats.summary(), **self.stats.totals(), "lr": lr, "grad_norm": self.grad_norm / n,
                "samples_per_s": self.stats.nsentences / seconds,
                "audio_per_s": self.stats.nsamples / 16000 / seconds,  # seconds of 16 kHz audio
                "data_time": self.data_time / n, "step_time": self.step_time / n,
                "skipped": self.skipped, "skipped_total": skipped_total, "epoch": epoch, **task_fields}


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl; on resume, rows past the checkpoint's
    update (written after it by a run that was then killed) are dropped first."""

    def __init__(self, path: Path, enabled: bool, truncate_after: int = 0):
        self.path, self.enabled = path, enabled
        self.tb = None
        self.previous: list[dict] = []  # the rows kept
        self.recorded: set[str] = set()  # diagnostics among them (w2vcli/train/diagnostics.py)
        if not enabled:
            return
        if path.exists():
            with open(path, encoding="utf-8") as f:
                rows = [line for line in f if line.strip()]
            keep = [line for line in rows if _update_of(line) <= truncate_after]
            if len(keep) != len(rows):
                with atomic_open(path, "w", encoding="utf-8") as f:
                    f.writelines(keep)
            self.previous = [json.loads(line) for line in keep]
            self.recorded = {r["diagnostic"] for r in self.previous if "diagnostic" in r}
        try:
            # lazy: optional: tensorboard, where installed
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:
            raise W2VError(f"{self.path}: cannot write metrics ({exc.strerror or exc})") from exc
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "update":
                    self.tb.add_scalar(k, v, row["update"])
            self.tb.flush()


def _update_of(line: str) -> int:
    try:
        return int(json.loads(line).get("update", 0))
    except ValueError:
        return 1 << 62  # a torn last line: drop it


class TrainProgress:
    """Progress bar: update, the task's `BAR` fields, lr, utterances/s, ETA."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled = enabled
        # a bar only on a terminal: in a log file its last state would be one truncated line;
        # the metric lines (every --log-interval updates and at the end) say the same there
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=console, disable=not (enabled and console.is_terminal), transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, stats="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, update: int, shown: list[str], lr: float) -> None:
        """`shown`: `UpdateOutput.bar()`, with the learning rate put before the rate of utterances."""
        stats = [*shown[:-1], f"lr {lr:.1e}", *shown[-1:]]
        self.progress.update(self.task, completed=update, stats=" ".join(stats))

    def print_row(self, row: dict, shown: dict[str, str]) -> None:
        if self.enabled:  # one line per record, however narrow the terminal or log
            self.progress.console.print(format_row(row, shown), highlight=False, soft_wrap=True)
