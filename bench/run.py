"""Run every benchmark in one process and append the results to docs/benchmarks.md.

    bench/run.sh [--quick] [--threads N] [--only NAME ...] [--no-docs]

Full: about 20 minutes on two cores once the cpu_anchors exports are cached; --quick: every
RATIO line with smaller batches and fewer repetitions. Each benchmark prints ABS lines (medians
of interleaved repetitions, with min/max) and one `RATIO <name> <w2v / reference>` line; the
cpu_anchors comparisons print one RATIO line per runtime against the fastest deployment runtime.
The first cpu_anchors run exports ONNX and CTranslate2 models (minutes for BASE) into bench/.cache.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import traceback

from bench import common

# name -> (full settings, quick settings)
PLAN = {
    "pretrain_step_small": (dict(preset="small", batch=8, seconds=3.0, reps=7), dict(preset="small", batch=4, seconds=3.0, reps=3)),
    "pretrain_step_base": (dict(preset="base", batch=4, seconds=4.0, reps=5), dict(preset="base", batch=1, seconds=4.0, reps=3)),
    # w2v in its `--precision auto` mode (bf16 on native-bf16 CPUs; skipped where auto is fp32)
    "pretrain_step_small_auto": (dict(preset="small", batch=8, seconds=3.0, reps=7, precision="auto"),
                                 dict(preset="small", batch=4, seconds=3.0, reps=3, precision="auto")),
    "pretrain_step_base_auto": (dict(preset="base", batch=4, seconds=4.0, reps=5, precision="auto"),
                                dict(preset="base", batch=1, seconds=4.0, reps=3, precision="auto")),
    "ctc_inference_small": (dict(preset="small", seconds=[10.0, 12.0, 13.0, 15.0], reps=7),
                            dict(preset="small", seconds=[10.0, 12.0, 13.0, 15.0], reps=3)),
    "ctc_inference_base": (dict(preset="base", seconds=[10.0, 12.0, 13.0, 15.0], reps=5),
                           dict(preset="base", seconds=[10.0, 15.0], reps=3)),
    "lm_decode": (dict(beam=50, repeat=2, reps=5, preset="base"), dict(beam=50, repeat=1, reps=3, preset="small")),
    "dataloader": (dict(batches=60, workers=2, steps=7, reps=3), dict(batches=20, workers=2, steps=3, reps=2)),
    "prepare": (dict(n=10_000, reps=3), dict(n=10_000, reps=1)),
    # w2v's CPU modes against the deployment runtimes (bench/suite/cpu_anchors.py); exports cached in bench/.cache
    "cpu_anchors_small": (dict(preset="small", norm="group", reps=5, files=10), dict(preset="small", norm="group", reps=2, files=3)),
    "cpu_anchors_base": (dict(preset="base", norm="group", reps=5, files=10), dict(preset="base", norm="group", reps=2, files=3)),
    "cpu_anchors_base_layer": (dict(preset="base", norm="layer", reps=5, files=10), dict(preset="base", norm="layer", reps=2, files=3)),
    # the `w2v` command's malloc setting against glibc's default, in child processes (bench/suite/allocator.py)
    "cpu_memory": (dict(preset="base", rounds=2, steps=4), dict(preset="small", rounds=1, steps=3)),
}


def run_one(name: str, kw: dict, threads: int) -> None:
    if name.startswith("pretrain_step"):
        from bench.suite.pretrain_step import run
    elif name.startswith("ctc_inference"):
        from bench.suite.ctc_inference import run
    elif name == "lm_decode":
        from bench.suite.lm_decode import run
    elif name == "dataloader":
        from bench.suite.dataloader import run
    elif name.startswith("cpu_anchors"):
        from bench.suite.cpu_anchors import run
    elif name == "cpu_memory":
        from bench.suite.allocator import run
    else:
        from bench.suite.prepare import run
        return run(**kw)
    return run(**kw, threads=threads)


def write_docs(args, argv: list[str], machine: dict, started: str, seconds: float, failed: list[str]) -> None:
    path = common.REPO / "docs" / "benchmarks.md"
    ratios = [l.split() for l in common.LINES if l.startswith("RATIO ")]
    rows = [f"| {r[1]} | {r[2]} |" for r in ratios]
    lines = [
        "", f"### {started} — `{' '.join(['bench/run.sh', *argv])}`", "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; torch {machine['torch']}, transformers "
        f"{machine['transformers']}; {args.threads} threads for both; load average at start {machine['load']}; "
        f"{seconds / 60:.1f} min.", "",
        "| comparison | w2v / reference |", "|---|---|", *rows, "",
        "<details><summary>absolute figures</summary>", "", "```", *[l for l in common.LINES if l.startswith("ABS ")],
        "```", "</details>", "",
    ]  # fmt: skip
    if failed:
        lines[-1:-1] = [f"Failed: {', '.join(failed)} (see the console output)."]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"appended to {path}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batches, few repetitions (< 5 min)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, the same for both implementations")
    ap.add_argument("--only", nargs="+", choices=list(PLAN), help="run only these comparisons")
    ap.add_argument("--no-docs", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args()
    common.set_threads(args.threads)
    machine = common.machine()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"w2v benchmarks {'(quick) ' if args.quick else ''}{started}: {machine}", flush=True)
    t0 = time.perf_counter()
    failed = []
    for name, (full, quick) in PLAN.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        try:
            run_one(name, quick if args.quick else full, args.threads)
        except Exception:  # keep going: one broken comparison must not hide the others
            traceback.print_exc()
            failed.append(name)
            common.emit(f"RATIO {name} failed")
    seconds = time.perf_counter() - t0
    print(f"done in {seconds / 60:.1f} min; load average now {common.load_average()}", flush=True)
    if not args.no_docs:
        write_docs(args, sys.argv[1:], machine, started, seconds, failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
