#!/usr/bin/env python3
"""LibriSpeech results beside the paper's, from the recipe's `w2v score --json` files.

    python recipes/librispeech/local/results.py --exp recipes/librispeech/exp --model base \
        --splits "10m 1h 10h 100h 960h" --out recipes/librispeech/exp/results.md

Reads OUT/decode/MODEL-SPLIT/{greedy,lm}-SET.score.json; a missing file shows as "—".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SETS = ("dev-clean", "dev-other", "test-clean", "test-other")

# wav2vec 2.0 (Baevski et al. 2020, arXiv 2006.11477v3), Appendix C: Table 9 (Libri-light splits
# and train-clean-100) and Table 10 (960 h), models pretrained on LS-960. WER % on
# dev-clean, dev-other, test-clean, test-other; "none" = no LM, "4-gram" = the official 4-gram.
PAPER = {
    ("base", "10m"): {"none": (46.1, 51.5, 46.9, 50.9), "4-gram": (8.9, 15.7, 9.1, 15.6)},
    ("base", "1h"): {"none": (24.1, 29.6, 24.5, 29.7), "4-gram": (5.0, 10.8, 5.5, 11.3)},
    ("base", "10h"): {"none": (10.9, 17.4, 11.1, 17.6), "4-gram": (3.8, 9.1, 4.3, 9.5)},
    ("base", "100h"): {"none": (6.1, 13.5, 6.1, 13.3), "4-gram": (2.7, 7.9, 3.4, 8.0)},
    ("base", "960h"): {"none": (3.2, 8.9, 3.4, 8.5), "4-gram": (2.0, 5.9, 2.6, 6.1)},
    ("large", "10m"): {"none": (43.0, 46.3, 43.5, 45.3), "4-gram": (8.6, 12.9, 8.9, 13.1)},
    ("large", "1h"): {"none": (21.6, 25.3, 22.1, 25.3), "4-gram": (4.8, 8.5, 5.1, 9.4)},
    ("large", "10h"): {"none": (8.1, 12.0, 8.0, 12.1), "4-gram": (3.4, 6.9, 3.8, 7.3)},
    ("large", "100h"): {"none": (4.6, 9.3, 4.7, 9.0), "4-gram": (2.3, 5.7, 2.8, 6.0)},
    ("large", "960h"): {"none": (2.6, 6.5, 2.8, 6.3), "4-gram": (1.7, 4.6, 2.3, 5.0)},
}


def ours(exp: Path, model: str, split: str, dec: str) -> list[str]:
    cells = []
    for s in SETS:
        f = exp / "decode" / f"{model}-{split}" / f"{dec}-{s}.score.json"
        cells.append(f"{100 * json.loads(f.read_text())['wer']:.1f}" if f.is_file() else "—")
    return cells


def table(exp: Path, model: str, splits: list[str]) -> str:
    lines = ["| labels | LM | source | dev-clean | dev-other | test-clean | test-other |",
             "|---|---|---|---:|---:|---:|---:|"]
    for split in splits:
        for dec, paper_key, lm_name in (("greedy", "none", "none"), ("lm", "4-gram", "4-gram")):
            lines.append(f"| {split} | {lm_name} | w2v | " + " | ".join(ours(exp, model, split, dec)) + " |")
            paper = PAPER.get((model, split), {}).get(paper_key)
            cells = [f"{x:.1f}" for x in paper] if paper else ["—"] * 4
            lines.append(f"| {split} | {lm_name} | paper | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--model", default="base", choices=["base", "large"])
    p.add_argument("--splits", default="10m 1h 10h 100h 960h")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    splits = args.splits.split()
    weights = []
    for split in splits:
        f = args.exp / "decode" / f"{args.model}-{split}" / "lm-weights.txt"
        if f.is_file():
            a, b = f.read_text().split()
            weights.append(f"{split}: α={a} β={b}")
    body = table(args.exp, args.model, splits)
    timings = args.exp / "timings.tsv"
    times = ""
    if timings.is_file():
        rows = [line.split("\t") for line in timings.read_text().splitlines() if line.strip()]
        times = "\n## Wall time per stage (measured)\n\n| stage | hours |\n|---|---:|\n" + "".join(
            f"| {n} {name} | {float(secs) / 3600:.2f} |\n" for n, name, secs, *_end in rows)
    page = f"""# wav2vec 2.0 {args.model.upper()} on LibriSpeech: w2v vs the paper

WER %. "w2v" rows: `recipes/librispeech/run.sh` (pretrained on LS-960 unless `--pretrained`
was given), greedy ("none") and 4-gram beam search with LM weight and word bonus tuned on
dev-other ({'; '.join(weights) or 'weights not recorded'}). "paper" rows: Baevski et al. 2020
(arXiv 2006.11477v3) Appendix C, Tables 9-10, {args.model.upper()} pretrained on LS-960; the paper
decodes with beam 1,500 and Bayesian-optimised weights, w2v with the beam given to the recipe.

{body}
{times}"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page)
    print(body)
    print(f"results.py: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
