#!/usr/bin/env python3
"""Learning curves of the demo from the runs' metrics.jsonl files, as one PNG.

    python recipes/demo/local/plot.py --exp recipes/demo/exp --out docs/demo-results.png

Panels: pretraining (contrastive loss, accuracy of picking the true quantized target, code
perplexity) and fine-tuning (training CTC loss and dev WER per update, pretrained vs from
scratch). Without matplotlib it says so and exits 0: the plot is optional.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RUNS = {"pretrained": "ft-pretrained", "from scratch": "ft-scratch"}


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows) of a metrics.jsonl; missing file -> empty lists."""
    if not path.is_file():
        return [], []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    valid = [r for r in rows if "valid_loss" in r]
    return train, valid


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["update"], r[key]) for r in rows if r.get(key) is not None]
    return [u for u, _ in pts], [v for _, v in pts]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="the recipe's output folder")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = p.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed; no learning-curve plot (pip install matplotlib)")
        return 0

    pt_train, pt_valid = read_metrics(args.exp / "pt" / "metrics.jsonl")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    ax = axes[0]
    ax.plot(*series(pt_train, "contrastive"), label="contrastive loss (train)")
    ax.plot(*series(pt_valid, "valid_contrastive"), "o--", label="contrastive loss (dev)")
    ax.set_xlabel("update")
    ax.set_ylabel("loss per masked frame")
    ax.set_title("pretraining")
    acc = ax.twinx()
    acc.plot(*series(pt_train, "accuracy"), color="tab:green", label="accuracy (train)")
    acc.set_ylabel("accuracy / code perplexity ÷ G·V")
    ppl_u, ppl = series(pt_train, "code_perplexity")
    gv = _codebook_entries(args.exp)
    if gv and ppl:
        acc.plot(ppl_u, [x / gv for x in ppl], color="tab:red", alpha=0.6, label="code perplexity ÷ G·V")
    acc.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = acc.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")

    for name, run in RUNS.items():
        train, valid = read_metrics(args.exp / run / "metrics.jsonl")
        axes[1].plot(*series(train, "loss"), label=name)
        axes[2].plot(*series(valid, "valid_wer"), "o-", label=name)
    axes[1].set_title("fine-tuning: training CTC loss")
    axes[1].set_xlabel("update")
    axes[1].set_ylabel("CTC loss per utterance")
    axes[1].set_yscale("log")
    axes[2].set_title("fine-tuning: dev WER (greedy)")
    axes[2].set_xlabel("update")
    axes[2].set_ylabel("WER")
    for ax in axes[1:]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"plot.py: wrote {args.out}")
    return 0


def _codebook_entries(exp: Path) -> int | None:
    """G·V of the pretrained model, from the resolved pretraining config and its preset."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        from w2vcli.model.config import get_preset
        from w2vcli.train.config import PretrainConfig, read_toml

        cfg = read_toml(exp / "pt" / "config.toml", PretrainConfig)
        model = get_preset(cfg.get("preset", "small")).replace(**cfg.get("model", {}))
        return model.num_codebooks * model.codebook_size
    except Exception:  # the plot is optional; a missing run just leaves the line out
        return None


if __name__ == "__main__":
    sys.exit(main())
