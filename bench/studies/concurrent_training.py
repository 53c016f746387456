"""concurrent_training: seconds per update when trainings share a machine, with and without
w2v's thread choice (w2vcli/cpu.py).

    python -m bench.studies.concurrent_training                 # tiny preset: a few minutes
    python -m bench.studies.concurrent_training --preset small --updates 40

Scenarios, each timed alone and then as two runs at once (or as one `--nproc 2` run):
  torch-default   `--threads 0`: every process takes torch's default (one thread per core)
  w2v-default     no option: w2v's choice (usable cores / processes, OMP_NUM_THREADS if set)
  split           `--threads cores/2` for each of the two runs (what docs/train.md advises)
  nproc2-torch    one `--nproc 2` run with `--threads 0` (its two processes each take every core)
  nproc2-w2v      one `--nproc 2` run with w2v's choice (the cores divided between the processes)
Seconds per update are the per-update data + step time from metrics.jsonl, the first logged
interval (warm-up) left out. OMP_NUM_THREADS / MKL_NUM_THREADS are removed from the runs'
environment so that the defaults are the real ones. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CACHE, REAL_MINI, emit


def manifest() -> Path:
    """The real-mini utterances as a JSONL manifest (prepared once into bench/.cache)."""
    out = CACHE / "real-mini"
    if not (out / "test-real.jsonl").is_file():
        subprocess.run([sys.executable, "-m", "w2vcli", "prepare", "librispeech", str(REAL_MINI), "--out", str(out)],
                       check=True)
    return out / "test-real.jsonl"


def start(out: Path, args: argparse.Namespace, extra: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "w2vcli", "pretrain", "--train", str(manifest()), "--out", str(out),
           "--preset", args.preset, "--max-updates", str(args.updates), "--log-interval", str(args.log_interval),
           "--valid-interval", str(args.updates), "--max-tokens", str(args.max_tokens),
           "--num-workers", str(args.num_workers), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def seconds_per_update(out: Path) -> float:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "step_time" in r][1:]  # leave out the warm-up interval
    return sum(r["data_time"] + r["step_time"] for r in rows) / max(1, len(rows))


def run_together(runs: list[list[str]], args: argparse.Namespace, tmp: Path, name: str) -> list[float]:
    outs = [tmp / f"{name}-{i}-{time.monotonic_ns()}" for i in range(len(runs))]
    procs = [start(out, args, extra) for out, extra in zip(outs, runs)]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{name}: training failed:\n{err[-2000:]}")
    return [seconds_per_update(out) for out in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--log-interval", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=200_000)
    ap.add_argument("--num-workers", type=int, default=1)
    args = ap.parse_args()

    from w2vcli.cpu import usable_cores

    cores = usable_cores()
    half = str(max(1, cores // 2))
    scenarios = {
        "torch-default": ["--threads", "0"],
        "w2v-default": [],
        "split": ["--threads", half],
    }
    print(f"{cores} usable cores; {args.preset} preset, {args.updates} updates per run", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="w2v-concurrent-") as tmp:
        for name, extra in scenarios.items():
            alone = run_together([extra], args, Path(tmp), f"{name}-alone")[0]
            pair = run_together([extra, extra], args, Path(tmp), f"{name}-pair")
            results[name] = {"alone": alone, "together": pair}
            print(f"{name:14s} alone {alone:.3f} s/update; two at once {pair[0]:.3f} and {pair[1]:.3f} s/update "
                  f"({max(pair) / alone:.1f}x slower)", flush=True)
            emit(f"ABS concurrent_training {name} alone {alone:.4g} s/update, together {max(pair):.4g} s/update")
        for name, extra in (("nproc2-torch", ["--threads", "0"]), ("nproc2-w2v", [])):
            together = run_together([[*extra, "--nproc", "2"]], args, Path(tmp), name)[0]
            results[name] = {"nproc2": together}
            print(f"{name:14s} one --nproc 2 run: {together:.3f} s/update", flush=True)
            emit(f"ABS concurrent_training {name} {together:.4g} s/update")
    print(json.dumps({"cores": cores, "preset": args.preset, **results}))


if __name__ == "__main__":
    main()
