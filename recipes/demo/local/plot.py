#!/usr/bin/env python3
"""The demo's curves, from the runs' metrics.jsonl and score files, as one PNG.

    python recipes/demo/local/plot.py --exp recipes/demo/exp --out docs/demo-results.png --seeds 3

Panels, every seed drawn: pretraining (contrastive loss, accuracy of picking the true quantized
target, code perplexity ÷ G·V; one colour per seed, or the shipped checkpoint's one run with
--pretrained), fine-tuning on the main labelled amount
(training CTC loss and dev WER per update, pretrained vs from scratch) and, with --curve, the
label-efficiency curve: test WER (LM and greedy) against labelled minutes on a log axis, each
seed's point and the mean over seeds. Without matplotlib it says so and exits 0: the plot is optional.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROWS = {"pretrained": "tab:blue", "scratch": "tab:orange"}  # row -> colour


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows) of a metrics.jsonl; missing file -> empty lists."""
    if not path.is_file():
        return [], []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r], [r for r in rows if "valid_loss" in r]


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["update"], r[key]) for r in rows if r.get(key) is not None]
    return [u for u, _ in pts], [v for _, v in pts]


def curve_points(exp: Path, seeds: int, amounts: list[str], row: str, dec: str) -> list[tuple[float, list[float]]]:
    """(labelled minutes, test WER % of each seed) per amount whose score files exist."""
    out = []
    for a in amounts:
        manifest = exp / "data" / f"train-{a}.jsonl"
        files = [exp / f"seed-{k}" / "decode" / f"{row}-{a}" / f"{dec}.score.json" for k in range(seeds)]
        if not manifest.is_file() or not all(f.is_file() for f in files):
            continue
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        mins = sum(r["num_samples"] / r["sample_rate"] for r in rows) / 60
        out.append((mins, [100 * json.loads(f.read_text())["wer"] for f in files]))
    return sorted(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="the recipe's output folder")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 were run")
    p.add_argument("--labels", default="10m", help="the labelled amount whose fine-tuning curves are drawn")
    p.add_argument("--curve", default="", help="the label-efficiency curve's amounts, space- or comma-separated")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="the shipped checkpoint's folder (its metrics.jsonl is the one pretraining drawn)")
    args = p.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("plot.py: matplotlib is not installed; no plot (pip install matplotlib)")
        return 0

    amounts = args.curve.replace(",", " ").split()
    fig, axes = plt.subplots(1, 4 if amounts else 3, figsize=(20 if amounts else 15, 4.2))
    seed_colours = plt.get_cmap("Dark2").colors  # not the rows' blue and orange

    ax, acc = axes[0], axes[0].twinx()
    # each seed's pretraining, or the one run that made the shipped checkpoint every seed fine-tunes
    runs = ([(args.pretrained, "shipped checkpoint")] if args.pretrained
            else [(args.exp / f"seed-{k}" / "pt", f"seed {k}") for k in range(args.seeds)])
    gv = _codebook_entries(runs[0][0] / "config.toml")
    for k, (folder, name) in enumerate(runs):
        c = seed_colours[k % len(seed_colours)]
        train, valid = read_metrics(folder / "metrics.jsonl")
        ax.plot(*series(train, "contrastive"), color=c, label=name)
        ax.plot(*series(valid, "valid_contrastive"), "o", color=c, ms=3)
        acc.plot(*series(train, "accuracy"), "--", color=c)
        ppl_u, ppl = series(train, "code_perplexity")
        if gv and ppl:
            acc.plot(ppl_u, [x / gv for x in ppl], ":", color=c, alpha=0.7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True))  # 20 000 updates: labels apart
    ax.set_xlabel("update")
    ax.set_ylabel("contrastive loss, train (—) and dev (•)")
    ax.set_title("pretraining" + (" (the shipped checkpoint's run)" if args.pretrained else ""))
    acc.set_ylabel("train accuracy (--), code perplexity ÷ G·V (··)")
    acc.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="center right")

    for row, c in ROWS.items():
        for k in range(args.seeds):
            train, valid = read_metrics(args.exp / f"seed-{k}" / f"ft-{row}-{args.labels}" / "metrics.jsonl")
            label = row if k == 0 else None  # one legend entry per row, every seed drawn
            axes[1].plot(*series(train, "loss"), color=c, alpha=0.8, label=label)
            axes[2].plot(*series(valid, "valid_wer"), "o-", color=c, alpha=0.8, label=label)
    axes[1].set_title(f"fine-tuning on {args.labels}: training CTC loss")
    axes[1].set_xlabel("update")
    axes[1].set_ylabel("CTC loss per utterance")
    axes[1].set_yscale("log")
    axes[2].set_title(f"fine-tuning on {args.labels}: dev WER (greedy)")
    axes[2].set_xlabel("update")
    axes[2].set_ylabel("WER")

    if amounts:
        ax = axes[3]
        for row, c in ROWS.items():
            for dec, style in (("lm", "o-"), ("greedy", "s--")):
                pts = curve_points(args.exp, args.seeds, amounts, row, dec)
                if not pts:
                    continue
                xs = [m for m, _ in pts]
                ax.plot(xs, [statistics.fmean(w) for _, w in pts], style, color=c,
                        label=f"{row}, {'4-gram LM' if dec == 'lm' else 'greedy'}"
                        + (f" (mean of {args.seeds} seeds)" if args.seeds > 1 else ""))
                if args.seeds > 1:
                    ax.scatter([m for m, w in pts for _ in w], [x for _, w in pts for x in w], color=c, s=10, alpha=0.4)
        ax.set_xscale("log")
        ticks = [m for m, _ in curve_points(args.exp, args.seeds, amounts, "pretrained", "greedy")]
        ax.set_xticks(ticks, [f"{m:.1f}".rstrip("0").rstrip(".") for m in ticks])  # 0.987 min of "1m": 1
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("labelled minutes")
        ax.set_ylabel("test WER %")
        ax.set_title("label efficiency")
    for ax in axes[1:]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(args.out)
    print(f"plot.py: wrote {args.out}")
    return 0


def _codebook_entries(config: Path) -> int | None:
    """G·V of the pretrained model, from a resolved pretraining config.toml and its preset."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        from w2vcli.model.config import get_preset
        from w2vcli.train.config import PretrainConfig, read_toml

        cfg = read_toml(config, PretrainConfig)
        model = get_preset(cfg.get("preset", "small")).replace(**cfg.get("model", {}))
        return model.num_codebooks * model.codebook_size
    except Exception:  # the plot is optional; a missing run just leaves the line out
        return None


if __name__ == "__main__":
    sys.exit(main())
