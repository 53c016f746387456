#!/usr/bin/env python3
"""The demo's results table, from the files the recipe wrote (never from anything else).

    python recipes/demo/local/results.py --exp recipes/demo/exp --out docs/demo-results.md

Reads OUT/decode/{pretrained,scratch}/{greedy,lm}.score.json (`w2v score --json`), the LM
weights used, the manifests (corpus sizes), the runs' metrics.jsonl and config.toml, and
OUT/timings.tsv; prints the table and writes a Markdown page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROWS = {"pretrained": "pretrained + fine-tuned", "scratch": "from scratch (random init)"}


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def manifest_stats(path: Path) -> tuple[int, float, int]:
    """(utterances, seconds, speakers) of a JSONL manifest; zeros when it is missing."""
    if not path.is_file():
        return 0, 0.0, 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    secs = sum(r["num_samples"] / r["sample_rate"] for r in rows)
    return len(rows), secs, len({r.get("speaker", r["id"]) for r in rows})


def metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def fmt_time(secs: float) -> str:
    return f"{int(secs) // 60}:{int(secs) % 60:02d}"


def git_commit(repo: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        # the recipe's own outputs (this page and its plot) do not count as changes to the code
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)docs/demo-results.*"], capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def model_summary(exp: Path) -> str:
    """Size of the fine-tuned network (same for both rows), from the checkpoint's config."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        import torch

        from w2vcli.model.config import ModelConfig

        ckpt = torch.load(exp / "ft-scratch" / "last.pt", map_location="cpu", weights_only=True, mmap=True)
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        n = sum(v.numel() for v in ckpt["model"].values())
        return (f"{n / 1e6:.2f} M parameters: conv {list(cfg.conv_dim)} (strides {list(cfg.conv_stride)}), "
                f"Transformer {cfg.num_layers} x {cfg.hidden_size} ({'pre' if cfg.layer_norm_first else 'post'}-LN)")
    except Exception as exc:  # a summary line is not worth failing the table for
        return f"(not available: {exc})"


def build(exp: Path, mode: str, labels: str, plot: Path | None, out: Path) -> tuple[str, str]:
    """(table for the console, Markdown page)."""
    scores = {m: {d: load_json(exp / "decode" / m / f"{d}.score.json") for d in ("greedy", "lm")} for m in ROWS}
    missing = [f"decode/{m}/{d}.score.json" for m in ROWS for d in ("greedy", "lm") if scores[m][d] is None]
    if missing:
        raise SystemExit(f"results.py: missing {', '.join(missing)} in {exp}: run stages 6-7 first")
    weights = {}
    for m in ROWS:
        f = exp / "decode" / m / "lm-weights.txt"
        weights[m] = f.read_text().split() if f.is_file() else ["?", "?"]

    header = "| model | test WER greedy % | test WER 4-gram LM % | test CER greedy % | test CER 4-gram LM % | dev WER (best, greedy) % |"
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for m, name in ROWS.items():
        g, lm = scores[m]["greedy"], scores[m]["lm"]
        valid = [r["valid_wer"] for r in metrics(exp / f"ft-{m}" / "metrics.jsonl") if "valid_wer" in r]
        lines.append(f"| {name} | {pct(g['wer'])} | {pct(lm['wer'])} | {pct(g['cer'])} | {pct(lm['cer'])} | "
                     f"{pct(min(valid)) if valid else '—'} |")
    table = "\n".join(lines)
    pre, scr = scores["pretrained"]["lm"]["wer"], scores["scratch"]["lm"]["wer"]
    ratio = f"{pre / scr:.2f}" if scr > 0 else "—"
    table += (f"\n\nWith the LM, the pretrained model's test WER is {ratio} times the from-scratch "
              f"baseline's ({pct(pre)} % vs {pct(scr)} %).")

    n_train, s_train, spk_train = manifest_stats(exp / "data" / "train-clean.jsonl")
    n_lab, s_lab, spk_lab = manifest_stats(exp / "data" / f"train-{labels}.jsonl")
    n_dev, s_dev, spk_dev = manifest_stats(exp / "data" / "dev-clean.jsonl")
    n_test, s_test, spk_test = manifest_stats(exp / "data" / "test-clean.jsonl")
    words = scores["pretrained"]["greedy"]["words"]

    timings = []
    tfile = exp / "timings.tsv"
    if tfile.is_file():
        for line in tfile.read_text().splitlines():
            n, name, secs = line.split("\t")
            timings.append((n, name, float(secs)))
    total = sum(t[2] for t in timings)
    time_table = "\n".join(["| stage | wall time (m:ss) |", "|---|---:|"]
                           + [f"| {n} {name} | {fmt_time(s)} |" for n, name, s in timings]
                           + [f"| total | {fmt_time(total)} |"])

    pt = [r for r in metrics(exp / "pt" / "metrics.jsonl") if "accuracy" in r]
    pt_line = ""
    if pt:
        first, last = pt[0], pt[-1]
        pt_line = (f"- Pretraining: {last['update']} updates; contrastive loss {first['contrastive']:.3f} -> "
                   f"{last['contrastive']:.3f}, accuracy {first['accuracy']:.3f} -> {last['accuracy']:.3f}, "
                   f"code perplexity {last['code_perplexity']:.1f} at the end (metrics in `pt/metrics.jsonl`).\n")
    ft_updates = [r["update"] for r in metrics(exp / "ft-scratch" / "metrics.jsonl") if "loss" in r]

    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = "recipes/demo/run.sh --quick" if mode == "quick" else "make demo   # = recipes/demo/run.sh"
    title = "# Demo results" if mode != "quick" else "# Demo results (--quick smoke test)"
    warning = ("\n> **Smoke test** (`--quick`): tiny sizes, a few dozen updates. These numbers only show "
               "that every stage ran; they say nothing about wav2vec 2.0.\n" if mode == "quick" else "")
    plot_md = ""
    if plot is not None and plot.is_file():
        rel = os.path.relpath(plot, out.parent)
        plot_md = f"\n## Learning curves\n\n![learning curves]({rel})\n"

    page = f"""{title}
{warning}
Measured by `recipes/demo/run.sh` ({mode}) on {now}: {os.cpu_count()} CPU cores ({cpu_name()}),
w2v commit {git_commit(Path(__file__).resolve().parents[3])}. Written by the recipe's stage 7
(`recipes/demo/local/results.py`) from `w2v score --json` outputs; nothing here is typed by hand.

## Test set, {labels} of labels

{table}

- Test: {n_test} utterances ({s_test / 60:.1f} min, {words} words) from {spk_test} synthetic speakers and
  sentences never seen in training; dev: {n_dev} utterances ({s_dev / 60:.1f} min, {spk_dev} other unseen speakers).
- Unlabeled pretraining audio: {n_train} utterances, {s_train / 3600:.2f} h, {spk_train} speakers
  (`w2v prepare synth`). Labels: {n_lab} utterances, {s_lab / 60:.1f} min, {spk_lab} speakers, a subset of it.
- Both rows fine-tune the same network ({model_summary(exp)}) with the same labels, the same number
  of updates ({ft_updates[-1] if ft_updates else '?'}) and the same code; the baseline starts from random weights
  (and trains its conv feature encoder, which the pretrained model keeps frozen).
{pt_line}- LM: 4-gram on w2v's shipped sentence list without the dev/test sentences; beam search
  (pyctcdecode) with LM weight α and word bonus β {'tuned on dev' if mode != 'quick' else 'fixed'}:
  pretrained α={weights['pretrained'][0]} β={weights['pretrained'][1]}, scratch α={weights['scratch'][0]} β={weights['scratch'][1]}.
- Test WER/CER come from each model at the end of its fine-tuning schedule (`last.pt`): while dev WER
  is near 1, the best checkpoint by dev WER is the emptiest early one, not the better model.

## Wall time per stage

{time_table}
{plot_md}
## Reproduce

```bash
{cmd}
```
"""
    console = f"{title[2:]}: {labels} of labels, {n_test} test utterances\n\n{table}\n\n{time_table}\n"
    return console, page


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="the recipe's output folder")
    p.add_argument("--out", type=Path, required=True, help="Markdown page to write")
    p.add_argument("--plot", type=Path, default=None, help="learning-curve PNG to link (if it exists)")
    p.add_argument("--mode", default="default", choices=["default", "quick"])
    p.add_argument("--labels", default="10m", help="name of the labeled subset fine-tuned on")
    args = p.parse_args()
    console, page = build(args.exp, args.mode, args.labels, args.plot, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(args.out)
    print(console)
    print(f"results.py: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
