"""Shared helpers for the benchmarks: interleaved timing, machine description, result lines.

Every benchmark prints `RATIO <name> <w2v speed / reference speed>` (what docs/benchmarks.md
collects) and `ABS <name> <impl> <value> <unit>` lines with the absolute medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"  # git-ignored: synthetic trees, the 4-gram
SHARED = REPO.parent / "shared" / "data"
REAL_MINI = REPO / "tests" / "data" / "real-mini"  # shipped with the repository
TEXT = SHARED / "text"


def set_threads(n: int) -> None:
    """The same intra-op thread count for both implementations, and the malloc setting the `w2v`
    command makes (w2vcli/cpu.py keep_freed_memory; W2V_KEEP_MEMORY=0 to measure without): both
    implementations in a process share it, so the ratios compare code, not allocators."""
    import torch

    from w2vcli.cpu import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(n)


def interleaved(fns: dict[str, Callable[[], float]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each fn `warmup` times, then A B A B ... `reps` rounds; each call returns a speed.

    The order inside a round alternates (A B, B A, ...) so a drift in machine load hits both.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(fns[n]())
    return out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs: list[float]) -> float:
    return statistics.median(xs)


LINES: list[str] = []  # every RATIO/ABS line printed so far (bench.run writes them to docs/benchmarks.md)


def emit(line: str) -> None:
    """Print a result line and keep it for the docs table."""
    LINES.append(line)
    print(line, flush=True)


def report(name: str, speeds: dict[str, list[float]], unit: str, ours: str = "w2v", ref: str = "transformers") -> float:
    """Print ABS lines (median, min, max of each implementation) and the RATIO line; return the ratio."""
    for impl, xs in speeds.items():
        emit(f"ABS {name} {impl} {median(xs):.4g} {unit} (min {min(xs):.4g}, max {max(xs):.4g}, n={len(xs)})")
    ratio = median(speeds[ours]) / median(speeds[ref])
    emit(f"RATIO {name} {ratio:.2f}")
    return ratio


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import torch
    import transformers

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": torch.get_num_threads(),
        "load": load_average(),
    }  # fmt: skip
