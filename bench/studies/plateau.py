"""Does pretraining leave the chance plateau, every time? Seeds × thread counts, one short run each.

    python -m bench.studies.plateau --train exp/data/train-clean.jsonl --valid exp/data/dev-clean.jsonl \
        --config recipes/demo/conf/pretrain.toml [--seeds 0 1 2 3 4] [--threads 1 2] [--updates 300] \
        [--out /tmp/plateau]

Runs `w2v pretrain` for the first `--updates` updates of the config's schedule (the learning
rate and temperature follow the full run's: `--schedule-updates` = the config's max_updates)
with each seed and thread count (one run at a time, so the thread counts are real), validating
at the end, and prints one line per run with the dev
contrastive accuracy against chance: the mean over masked frames of 1/(1 + distractors left),
which is 1/(K+1) unless distractors equal to the target drop out (w2v's `chance` metric).
A run has left the plateau when its dev accuracy is at least 1.5x chance (the threshold of
the `accuracy_at_chance` diagnostic, docs/train.md). Ends with `PLATEAU left N of M`.
Thread counts change the rounding of every reduction, and so the trajectory: that is why both
are tried (docs/demo-results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from w2vcli.train.config import PretrainConfig, read_toml


def last_row(path: Path, key: str) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if key in r][-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--out", type=Path, default=Path("/tmp/w2v-plateau"))
    args = p.parse_args()
    schedule = read_toml(args.config, PretrainConfig).get("max_updates", args.updates)
    left = total = 0
    for threads in args.threads:
        for seed in args.seeds:
            out = args.out / f"t{threads}-s{seed}"
            if not (out / "metrics.jsonl").is_file() or "valid_accuracy" not in (out / "metrics.jsonl").read_text():
                subprocess.run(["rm", "-rf", str(out)], check=True)
                cmd = [sys.executable, "-m", "w2vcli", "pretrain", "--config", args.config, "--train", args.train,
                       "--valid", args.valid, "--seed", str(seed), "--threads", str(threads),
                       "--max-updates", str(args.updates), "--schedule-updates", str(max(schedule, args.updates)),
                       "--valid-interval", str(args.updates), "--out", str(out)]
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                args.out.mkdir(parents=True, exist_ok=True)
                with open(args.out / f"t{threads}-s{seed}.log", "w") as log:
                    subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
            train = last_row(out / "metrics.jsonl", "accuracy")
            valid = last_row(out / "metrics.jsonl", "valid_accuracy")
            chance = valid.get("valid_chance", train.get("chance"))
            ratio = valid["valid_accuracy"] / chance
            ok = ratio >= 1.5
            left += ok
            total += 1
            print(f"threads {threads} seed {seed}: update {valid['update']} dev accuracy {valid['valid_accuracy']:.3f} "
                  f"chance {chance:.3f} ({ratio:.2f}x) train contrastive {train['contrastive']:.3f} "
                  f"{'left' if ok else 'AT CHANCE'}", flush=True)
    print(f"PLATEAU left {left} of {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
