#!/usr/bin/env python3
"""Make w2vcli/resources/sentences.txt.gz, the default sentence pool of `w2v prepare synth`.

Draws up to --per-source sentences of 4-20 words from each ../shared/data/text/*.txt.gz
(never the heldout_* files, and never a sentence that also occurs in one of them), drops
duplicates and sentences with words over 16 letters, shuffles with a fixed seed and writes a
gzip file with a zero timestamp, so the same inputs give the same bytes.

    python scripts/make_sentence_list.py --text ../shared/data/text --out w2vcli/resources/sentences.txt.gz
"""

from __future__ import annotations

import argparse
import gzip
import random
from pathlib import Path


def read(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [" ".join(line.split()) for line in f]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repo = Path(__file__).resolve().parents[1]
    p.add_argument("--text", type=Path, default=repo.parent / "shared" / "data" / "text")
    p.add_argument("--out", type=Path, default=repo / "w2vcli" / "resources" / "sentences.txt.gz")
    p.add_argument("--per-source", type=int, default=12000)
    p.add_argument("--min-words", type=int, default=4)
    p.add_argument("--max-words", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    sources = sorted(f for f in args.text.glob("*.txt.gz") if not f.name.startswith("heldout_"))
    heldout = {s for f in args.text.glob("heldout_*.txt.gz") for s in read(f)}
    rng = random.Random(args.seed)
    seen: set[str] = set()
    chosen: list[str] = []
    for src in sources:
        pool = []
        for s in read(src):
            words = s.split()
            if not args.min_words <= len(words) <= args.max_words or s in heldout or s in seen:
                continue
            if max(len(w) for w in words) > 16 or not all(c.isalpha() or c in "' " for c in s):
                continue
            seen.add(s)
            pool.append(s)
        picked = rng.sample(pool, min(args.per_source, len(pool)))
        print(f"{src.name}: {len(pool)} eligible, {len(picked)} taken")
        chosen.extend(picked)
    rng.shuffle(chosen)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write("".join(s + "\n" for s in chosen).encode("utf-8"))
    print(f"{len(chosen)} sentences -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
