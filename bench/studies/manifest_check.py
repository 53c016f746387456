"""manifest_check: how long the up-front audio check of `w2v pretrain/finetune` takes on 100k rows.

    python -m bench.studies.manifest_check                  # 100k rows, 1 and 16 threads: about a minute
    python -m bench.studies.manifest_check --rows 20000 --threads 16 --dir /data/tmp

Before training, every manifest row's audio file must exist and its header must read
(`w2vcli.data.manifest.check_audio`). The rows here point at 100k distinct paths: hard links
(same file system, no extra disk space) to the ten real-mini FLAC files, so every check opens
a file and parses a real FLAC header, as on a corpus. The file cache is warm (the same ten
inodes): a cold network file system is slower per file and gains more from threads.
Prints `ABS manifest_check <threads> <rows/s> rows/s` per thread count, and the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import REAL_MINI, emit


def make_rows(root: Path, n: int) -> list[dict]:
    """n manifest rows over n hard links to the real-mini FLAC files (made in `root`)."""
    from w2vcli.audio import audio_info

    sources = []
    for i, flac in enumerate(sorted(REAL_MINI.rglob("*.flac"))):
        local = root / f"src-{i}.flac"
        shutil.copyfile(flac, local)  # hard links need the same file system as the links
        sources.append((local, audio_info(local, check_end=False)))
    rows = []
    for i in range(n):
        src, info = sources[i % len(sources)]
        sub = root / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"utt-{i:06d}.flac"
        os.link(src, path)
        rows.append({"id": f"utt-{i:06d}", "audio": str(path), "num_samples": info.num_samples,
                     "sample_rate": info.sample_rate})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--threads", default="1,16", help="comma-separated thread counts to time")
    ap.add_argument("--dir", default=None, help="where to make the links (default: a temporary folder)")
    args = ap.parse_args()

    from w2vcli.data.manifest import check_audio

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="w2v-manifest-check-") as tmp:
        t0 = time.perf_counter()
        rows = make_rows(Path(tmp), args.rows)
        print(f"made {len(rows)} rows (hard links) in {time.perf_counter() - t0:.1f} s", flush=True)
        results = {}
        for threads in (int(t) for t in args.threads.split(",")):
            t0 = time.perf_counter()
            kept = check_audio(rows, "bench", threads=threads)
            seconds = time.perf_counter() - t0
            assert len(kept) == len(rows)
            results[threads] = seconds
            print(f"{len(rows)} rows, {threads} thread(s): {seconds:.1f} s ({len(rows) / seconds:,.0f} rows/s)",
                  flush=True)
            emit(f"ABS manifest_check threads={threads} {len(rows) / seconds:.0f} rows/s")
        print(json.dumps({"rows": len(rows), "cpu_count": os.cpu_count(),
                          "seconds_by_threads": results}))


if __name__ == "__main__":
    main()
