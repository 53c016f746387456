#!/usr/bin/env python3
"""The demo's results page and its JSON twin, from the files the recipe wrote (never from anything else).

    python recipes/demo/local/results.py --exp recipes/demo/exp --out docs/demo-results.md --seeds 3

Reads, for each seed K and labelled amount A, OUT/seed-K/decode/{pretrained,scratch}-A/{greedy,lm}.score.json
(`w2v score --json`), their details-lm/per_utt.jsonl (the example transcripts) and lm-weights.txt; the
runs' metrics.jsonl and config.toml; the manifests (corpus sizes); OUT/timings.tsv, OUT/seed-K/timings.tsv
and OUT/invocations.tsv. Prints the table, writes the Markdown page and OUT.json beside it (WER and CER
in percent). A page that holds the KEEP line below keeps what follows it (notes by hand) when rewritten.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

TASKS = {
    "commands": ("`--task commands`, a closed domain: spoken commands to a voice assistant from a grammar of about 200 "
                 "words (`recipes/demo/local/domain.py`: names, digit strings, times, days, dates, rooms, devices, "
                 "cities), far easier than LibriSpeech's open vocabulary and real voices."),
    "open": ("`--task open`, open-vocabulary English sentences (w2v's shipped public-domain list): more than two "
             "cores can learn in 45 minutes."),
}
ROWS = {"pretrained": "pretrained + fine-tuned", "scratch": "from scratch (random init)"}
METRICS = {"lm_wer": ("lm", "wer"), "greedy_wer": ("greedy", "wer"), "greedy_cer": ("greedy", "cer"),
           "lm_cer": ("lm", "cer")}  # JSON key -> (decoding, score field)
KEEP = "<!-- notes by hand below: kept when the recipe rewrites this page -->"
N_EXAMPLES = 5


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def manifest_stats(path: Path) -> dict:
    """Utterances, minutes and speakers of a JSONL manifest; zeros when it is missing."""
    rows = jsonl(path)
    secs = sum(r["num_samples"] / r["sample_rate"] for r in rows)
    return {"utterances": len(rows), "minutes": round(secs / 60, 2), "speakers": len({r.get("speaker", r["id"]) for r in rows})}


def minutes(amount: str) -> float:
    """Nominal minutes of a labelled amount: 10m -> 10, 1h -> 60 (as run.sh reads it)."""
    return float(amount[:-1]) * (60 if amount.endswith("h") else 1)


def spread(values: list[float]) -> dict:
    """Mean, min, max and sample standard deviation (n - 1; None for one value)."""
    return {"mean": round(statistics.fmean(values), 2), "min": round(min(values), 2), "max": round(max(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else None}


def run_scores(exp: Path, seed: int, amount: str) -> dict:
    """{"pretrained": {...}, "scratch": {...}, "lm_wer_ratio": x} of one seed and amount, in percent."""
    out: dict = {"seed": seed}
    for row in ROWS:
        dec = exp / f"seed-{seed}" / "decode" / f"{row}-{amount}"
        scores = {d: load_json(dec / f"{d}.score.json") for d in ("greedy", "lm")}
        missing = [f"{d}.score.json" for d, s in scores.items() if s is None]
        if missing:
            raise SystemExit(f"results.py: missing {', '.join(missing)} in {dec}: run stages 6-7 first")
        out[row] = {k: round(100 * scores[d][f], 2) for k, (d, f) in METRICS.items()}
        valid = [r["valid_wer"] for r in jsonl(exp / f"seed-{seed}" / f"ft-{row}-{amount}" / "metrics.jsonl")
                 if "valid_wer" in r]
        out[row]["dev_wer_best"] = round(100 * min(valid), 2) if valid else None
        weights = (dec / "lm-weights.txt").read_text().split() if (dec / "lm-weights.txt").is_file() else []
        out[row]["lm_alpha"], out[row]["lm_beta"] = (float(w) for w in weights) if len(weights) == 2 else (None, None)
    scr = out["scratch"]["lm_wer"]
    out["lm_wer_ratio"] = round(out["pretrained"]["lm_wer"] / scr, 3) if scr > 0 else None
    return out


def summary(runs: list[dict]) -> dict:
    """The spread over seeds of every metric of both rows, and of the pretrained/scratch ratio."""
    out: dict = {row: {k: spread([r[row][k] for r in runs]) for k in METRICS} for row in ROWS}
    ratios = [r["lm_wer_ratio"] for r in runs if r["lm_wer_ratio"] is not None]
    out["lm_wer_ratio"] = spread(ratios) if ratios else None
    return out


def examples(exp: Path, amount: str, n: int = N_EXAMPLES) -> list[dict]:
    """n test utterances spread evenly over the ids (not picked by result): reference and each
    row's LM transcript with its WER, seed 0."""
    per = {row: {u["id"]: u for u in jsonl(exp / "seed-0" / "decode" / f"{row}-{amount}" / "details-lm" / "per_utt.jsonl")}
           for row in ROWS}
    ids = sorted(set(per["pretrained"]) & set(per["scratch"]))
    pick = sorted({round(i * (len(ids) - 1) / max(n - 1, 1)) for i in range(min(n, len(ids)))})
    return [{"id": ids[i], "reference": per["pretrained"][ids[i]]["ref"],
             **{row: {"text": per[row][ids[i]]["hyp"], "wer": round(100 * per[row][ids[i]]["wer"], 1)} for row in ROWS}}
            for i in pick]


def timings(exp: Path, seeds: int, amounts: set[str]) -> list[dict]:
    """Wall seconds per stage: the shared ones (seed None), then each seed's; of a per-amount stage
    (3-10m, 6-1h) only the page's amounts: a --curve run on the same folder adds its own."""
    out = []
    for seed, f in [(None, exp / "timings.tsv")] + [(k, exp / f"seed-{k}" / "timings.tsv") for k in range(seeds)]:
        for line in f.read_text().splitlines() if f.is_file() else []:
            key, name, secs, *end = line.split("\t")  # END (when it ended) since 2026-12-03
            if "-" in key and key.split("-", 1)[1] not in amounts:
                continue
            out.append({"stage": key, "name": name, "seed": seed, "seconds": int(secs),
                        "end": int(end[0]) if end else None})
    return sorted(out, key=lambda t: (int(t["stage"].split("-")[0]), t["stage"], t["seed"] or 0))


def wall_seconds(stages: list[dict]) -> tuple[int, bool]:
    """The stages' total wall time and whether some of them ran side by side (run.sh --jobs 2):
    the length of the union of their [end - seconds, end] spans, so overlapping time counts once.
    Without every stage's end time (timings.tsv before 2026-12-03), the plain sum."""
    if not stages or any(t.get("end") is None for t in stages):
        return sum(t["seconds"] for t in stages), False
    total, reach, overlap = 0, None, False
    for start, end in sorted((t["end"] - t["seconds"], t["end"]) for t in stages):
        if reach is not None and start < reach:
            overlap = True
            total += max(0, end - reach)
        else:
            total += end - start
        reach = end if reach is None else max(reach, end)
    return total, overlap


def invocations(exp: Path) -> list[dict]:
    """Each run.sh call on this folder: date, load average (1, 5, 15 min), commit, command."""
    out = []
    for line in (exp / "invocations.tsv").read_text().splitlines() if (exp / "invocations.tsv").is_file() else []:
        date, load, commit, cmd = line.split("\t", 3)
        out.append({"date": date, "load": [float(x) for x in load.split()] if load != "?" else None,
                    "commit": commit, "command": cmd})
    return out


def pretraining(folder: Path) -> dict | None:
    """Updates, first and last training accuracy, last dev accuracy and code perplexity of the
    pretraining run whose metrics.jsonl is in `folder` (a seed's pt/, or the shipped checkpoint's)."""
    rows = jsonl(folder / "metrics.jsonl")
    train = [r for r in rows if "accuracy" in r]
    valid = [r for r in rows if "valid_accuracy" in r]
    if not train:
        return None
    return {"updates": train[-1]["update"], "accuracy_first": round(train[0]["accuracy"], 3),
            "accuracy_last": round(train[-1]["accuracy"], 3),
            "valid_accuracy_last": round(valid[-1]["valid_accuracy"], 3) if valid else None,
            "code_perplexity_last": round(train[-1]["code_perplexity"], 1)}


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


def model_summary(exp: Path, amount: str) -> str:
    """Size of the fine-tuned network (same for both rows), from the checkpoint's config."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        import torch

        from w2vcli.model.config import ModelConfig

        ckpt = torch.load(exp / "seed-0" / f"ft-scratch-{amount}" / "last.pt", map_location="cpu", weights_only=True, mmap=True)
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        n = sum(v.numel() for v in ckpt["model"].values())
        return (f"{n / 1e6:.2f} M parameters: conv {list(cfg.conv_dim)} (strides {list(cfg.conv_stride)}), "
                f"Transformer {cfg.num_layers} x {cfg.hidden_size} ({'pre' if cfg.layer_norm_first else 'post'}-LN)")
    except Exception as exc:  # a summary line is not worth failing the table for
        return f"(not available: {exc})"


def shipped_checkpoint(folder: Path) -> dict:
    """What the page says of the shipped pretrained checkpoint: its path, checksum, size, the
    README's "made:" line, and its pretraining run (from the metrics.jsonl shipped beside it)."""
    repo = Path(__file__).resolve().parents[3]
    made = next((line[len("made: "):] for line in (folder / "README.md").read_text().splitlines()
                 if line.startswith("made: ")), "?") if (folder / "README.md").is_file() else "?"
    sums = (folder / "SHA256SUMS").read_text().split() if (folder / "SHA256SUMS").is_file() else ["?"]
    path = folder / "model.pt"
    return {"path": os.path.relpath(path, repo), "sha256": sums[0], "made": made,
            "megabytes": round(path.stat().st_size / 1e6, 1) if path.is_file() else None,
            "pretraining": pretraining(folder)}


def collect(exp: Path, mode: str, seeds: int, labels: str, curve: list[str], task: str = "commands",
            shipped: Path | None = None) -> dict:
    """Everything the page shows, as the JSON written beside it. `shipped`: the folder of the
    shipped checkpoint every seed fine-tuned (run.sh without --pretrain), else None."""
    runs = [run_scores(exp, k, labels) for k in range(seeds)]
    for r in runs:
        r["pretraining"] = None if shipped else pretraining(exp / f"seed-{r['seed']}" / "pt")
    points = []
    for amount in sorted(set(curve), key=minutes):
        per_seed = runs if amount == labels else [run_scores(exp, k, amount) for k in range(seeds)]
        points.append({"labels": amount, "minutes": manifest_stats(exp / "data" / f"train-{amount}.jsonl")["minutes"],
                       "seeds": [{k: r[k] for k in ("seed", *ROWS)} for r in per_seed], "summary": summary(per_seed)})
    stages = timings(exp, seeds, {labels, *curve})
    total, side_by_side = wall_seconds(stages)
    configs = row_configs(exp, labels)
    repo = Path(__file__).resolve().parents[3]
    return {
        "mode": mode, "task": task, "labels": labels,
        "shipped_checkpoint": shipped_checkpoint(shipped) if shipped else None,
        "seeds": runs, "summary": summary(runs), "curve": points, "examples": examples(exp, labels),
        "data": {name: manifest_stats(exp / "data" / f"{name}.jsonl")
                 for name in ("train-clean", f"train-{labels}", "dev-clean", "test-clean")},
        "test_words": load_json(exp / "seed-0" / "decode" / f"pretrained-{labels}" / "greedy.score.json")["words"],
        "model": model_summary(exp, labels),
        "finetune_updates": max((r["update"] for r in jsonl(exp / "seed-0" / f"ft-scratch-{labels}" / "metrics.jsonl")
                                 if "loss" in r), default=None),
        "augmentation": augmentation(configs), "masking": masking(configs), "lr": peak_lr(configs),
        "stages": stages, "total_seconds": total, "side_by_side": side_by_side,
        "invocations": invocations(exp),
        "written": {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": git_commit(repo),
                    "cpus": os.cpu_count(), "cpu": cpu_name()},
    }


def row_configs(exp: Path, labels: str) -> dict[str, dict | None]:
    """Each row's seed-0 fine-tuning config.toml (None where missing), read as w2v reads it:
    tomllib, or tomli on Python 3.10."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from w2vcli.train.config import FinetuneConfig, read_toml

    paths = {row: exp / "seed-0" / f"ft-{row}-{labels}" / "config.toml" for row in ROWS}
    return {row: read_toml(path, FinetuneConfig) if path.is_file() else None for row, path in paths.items()}


def augmentation(configs: dict[str, dict | None]) -> dict[str, str]:
    """Each row's waveform augmentation, in the words `w2v finetune` logs it with."""
    from w2vcli.data.augment import Augment

    out = {}
    for row, cfg in configs.items():
        if cfg is None:
            out[row] = "?"
            continue
        aug = Augment.from_options(0, cfg.get("speed_perturb", ()), cfg.get("noise", ""), cfg.get("noise_snr", (10.0, 30.0)),
                                   cfg.get("noise_prob", 0.5), quiet=True)
        out[row] = aug.summary() if aug else "none"
    return out


def setting(cfg: dict, key: str) -> str:
    """One number of a run's config.toml; "as the preset" where the run left it to the preset."""
    return f"{cfg[key]:g}" if cfg.get(key) is not None else "as the preset"


def masking(configs: dict[str, dict | None]) -> dict[str, str]:
    """Each row's fine-tuning masking (fairseq convention: the expected fraction of frames, of
    channels)."""
    return {row: "?" if cfg is None else ", ".join(
                f"{what} {setting(cfg, key)}" for what, key in (("time", "mask_time_prob"), ("channel", "mask_channel_prob")))
            for row, cfg in configs.items()}


def peak_lr(configs: dict[str, dict | None]) -> dict[str, str]:
    """Each row's peak fine-tuning learning rate."""
    return {row: "?" if cfg is None else setting(cfg, "lr") for row, cfg in configs.items()}


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def cell(s: dict | None) -> str:
    """mean (min–max, std) of a spread; just the value for one seed."""
    if s is None:
        return "—"
    if s["std"] is None:
        return pct(s["mean"])
    return f"**{pct(s['mean'])}** ({pct(s['min'])}–{pct(s['max'])}, sd {pct(s['std'])})"


def fmt_time(secs: float) -> str:
    return f"{int(secs) // 60}:{int(secs) % 60:02d}"


def render(r: dict) -> tuple[str, str]:
    """(table for the console, Markdown page) from collect()'s dict."""
    keys = ("lm_wer", "greedy_wer", "greedy_cer", "lm_cer", "dev_wer_best")
    lines = ["| model | seed | test WER, 4-gram LM % | test WER, greedy % | test CER, greedy % | test CER, 4-gram LM % "
             "| dev WER (best, greedy) % |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row, name in ROWS.items():
        lines += [f"| {name} | {s['seed']} | " + " | ".join(pct(s[row][k]) for k in keys) + " |" for s in r["seeds"]]
        if len(r["seeds"]) > 1:
            lines.append(f"| {name} | mean (min–max, sd) | " + " | ".join(cell(r["summary"][row][k]) for k in keys[:4])
                         + " | |")
    table = "\n".join(lines)
    ratios = [s["lm_wer_ratio"] for s in r["seeds"]]
    table += ("\n\nWith the LM, the pretrained model's test WER is "
              + ", ".join("—" if x is None else f"{x:.2f}" for x in ratios)
              + f" times the from-scratch baseline's (seed{'s' if len(ratios) > 1 else ''} "
              + ", ".join(str(s["seed"]) for s in r["seeds"]) + ").")

    curve_md = ""
    if r["curve"]:
        head = ["| labels | labelled min | " + " | ".join(f"{n}, {d} WER %" for n in ROWS for d in ("LM", "greedy")) + " |",
                "|---|---:|" + "---:|" * 4]
        for p in r["curve"]:
            head.append(f"| {p['labels']} | {p['minutes']:.1f} | "
                        + " | ".join(cell(p["summary"][row][k]) for row in ROWS for k in ("lm_wer", "greedy_wer")) + " |")
        curve_md = ("\n## Label efficiency\n\nTest WER against the labelled minutes fine-tuned on (the subsets nest: each "
                    "is drawn from the next larger one)" + (", mean over seeds (min–max, sd)" if len(r["seeds"]) > 1 else "")
                    + ".\n\n" + "\n".join(head) + "\n")

    ex = [f"**{e['id']}**\n\n- reference: {e['reference']}\n"
          + "".join(f"- {row} (WER {e[row]['wer']:.0f} %): {e[row]['text'] or '(empty)'}\n" for row in ROWS)
          for e in r["examples"]]
    ex_md = (f"\n## What the numbers mean: {len(ex)} test utterances\n\nSeed 0, {r['labels']} of labels, with the "
             "4-gram LM; spread evenly over the test set's ids, not chosen by result.\n\n" + "\n".join(ex)) if ex else ""

    by_key: dict[tuple, list] = {}
    for t in r["stages"]:
        by_key.setdefault((t["stage"], t["name"]), []).append(t)
    time_lines = ["| stage | wall time (m:ss) |", "|---|---:|"]
    for (key, name), ts in by_key.items():  # a per-seed stage: one time per seed
        seeds = f" (seeds {', '.join(str(t['seed']) for t in ts)})" if len(ts) > 1 else ""
        time_lines.append(f"| {key} {name} | {' / '.join(fmt_time(t['seconds']) for t in ts)}{seeds} |")
    time_lines.append(f"| total | {fmt_time(r['total_seconds'])} |")
    time_table = "\n".join(time_lines)
    if r.get("side_by_side"):
        time_table += ("\n\nStages 3 and 4 ran side by side (`run.sh --jobs 2`, each on half the cores): each "
                       "row's time is its own, and the total is the wall time, which counts their overlap once.")

    d, w = r["data"], r["written"]
    def per_row(values: dict[str, str]) -> str:  # one row's words when they agree, else each row's
        if len(set(values.values())) <= 1:
            return f"{values.get('pretrained', '?')} for both rows"
        return ", ".join(f"{row} ({values.get(row, '?')})" for row in ROWS) + "; the rows differ"

    augment_md, mask_md, lr_md = (per_row(r.get(key) or {}) for key in ("augmentation", "masking", "lr"))
    pt_md = ""
    for s in r["seeds"]:
        if p := s["pretraining"]:
            dev = "—" if p["valid_accuracy_last"] is None else f"{p['valid_accuracy_last']:.3f}"
            pt_md += (f"- Pretraining, seed {s['seed']}: {p['updates']} updates; training accuracy "
                      f"{p['accuracy_first']:.3f} -> {p['accuracy_last']:.3f}, dev accuracy {dev}, code perplexity "
                      f"{p['code_perplexity_last']:.1f} at the end (`seed-{s['seed']}/pt/metrics.jsonl`).\n")
    if c := r.get("shipped_checkpoint"):
        p = c["pretraining"] or {}
        dev = "—" if p.get("valid_accuracy_last") is None else f"{p['valid_accuracy_last']:.3f}"
        pt_md += (f"- Pretraining: not run here. Every seed fine-tunes the shipped checkpoint `{c['path']}` "
                  f"({c['megabytes']} MB, sha256 {c['sha256'][:12]}…), made by the recipe's stage 2 ({c['made']}; "
                  f"`recipes/demo/pretrained/README.md`): {p.get('updates', '?')} updates, dev accuracy {dev}, "
                  f"code perplexity {p.get('code_perplexity_last', '?')} at the end. `run.sh --pretrain` pretrains instead.\n")
    weights = "; ".join(f"seed {s['seed']}: pretrained α={s['pretrained']['lm_alpha']} β={s['pretrained']['lm_beta']}, "
                        f"scratch α={s['scratch']['lm_alpha']} β={s['scratch']['lm_beta']}" for s in r["seeds"])
    runs_md = "\n".join(f"- {i['date']}, load average {' '.join(map(str, i['load'])) if i['load'] else '?'} at the start, "
                        f"commit {i['commit']}: `{i['command']}`" for i in r["invocations"]) or "- (no invocations.tsv)"
    quick = r["mode"] == "quick"
    title = "# Demo results (--quick smoke test)" if quick else "# Demo results"
    warning = ("\n> **Smoke test** (`--quick`): tiny sizes, a few dozen updates. These numbers only show "
               "that every stage ran; they say nothing about wav2vec 2.0.\n" if quick else "")
    plot_md = f"\n## Curves\n\n![learning curves]({r['plot']})\n" if r.get("plot") else ""
    n_seeds = len(r["seeds"])
    task_md = TASKS.get(r.get("task", "commands"), "")
    page = f"""{title}
{warning}
Measured by `recipes/demo/run.sh` ({r['mode']}, {n_seeds} seed{'s' if n_seeds > 1 else ''}); written on {w['date']}
by its stage 7 (`recipes/demo/local/results.py`) from `w2v score --json` outputs, on {w['cpus']} CPU cores
({w['cpu']}), w2v commit {w['commit']}. Nothing here is typed by hand; the same numbers are in the `.json` beside this page.

Task: {task_md}

## Test set, {r['labels']} of labels

{table}

- Test: {d['test-clean']['utterances']} utterances ({d['test-clean']['minutes']:.1f} min, {r['test_words']} words) from
  {d['test-clean']['speakers']} synthetic speakers and sentences never seen in training; dev: {d['dev-clean']['utterances']}
  utterances ({d['dev-clean']['minutes']:.1f} min, {d['dev-clean']['speakers']} other unseen speakers).
- Unlabeled pretraining audio: {d['train-clean']['utterances']} utterances, {d['train-clean']['minutes'] / 60:.2f} h,
  {d['train-clean']['speakers']} speakers (`w2v prepare synth`). Labels: {d[f"train-{r['labels']}"]['utterances']} utterances,
  {d[f"train-{r['labels']}"]['minutes']:.1f} min, {d[f"train-{r['labels']}"]['speakers']} speakers, a subset of it.
  Corpus, subsets and LM are the same for every seed; a seed changes {'fine-tuning (both rows) only' if r.get('shipped_checkpoint') else 'pretraining and fine-tuning'}.
- Both rows fine-tune the same network ({r['model']}) with the same labels, the same number
  of updates ({r['finetune_updates'] or '?'}) and the same code; the baseline starts from random weights.
  Waveform augmentation of the training audio: {augment_md}. Masking (the expected fraction of
  frames, of channels): {mask_md}. Peak learning rate: {lr_md}.
{pt_md}- LM: 4-gram without the dev/test sentences; beam search (pyctcdecode) with LM weight α and word bonus β
  {'fixed' if quick else 'tuned on dev'}: {weights}.
- Test WER/CER come from each model at the end of its fine-tuning schedule (`last.pt`).
{curve_md}{ex_md}{plot_md}
## Wall time per stage

{time_table}

## How this run was made

{runs_md}
"""
    console = f"{title[2:]}: {r['labels']} of labels, {n_seeds} seed(s)\n\n{table}\n{curve_md}\n{time_table}\n"
    return console, page


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="the recipe's output folder")
    p.add_argument("--out", type=Path, required=True, help="Markdown page to write (and OUT.json beside it)")
    p.add_argument("--plot", type=Path, default=None, help="PNG to link (if it exists)")
    p.add_argument("--mode", default="default", choices=["default", "quick"])
    p.add_argument("--task", default="commands", choices=sorted(TASKS))
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 were run")
    p.add_argument("--labels", default="10m", help="the labelled amount of the main table")
    p.add_argument("--curve", default="", help="the label-efficiency curve's amounts, space- or comma-separated")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="the shipped checkpoint's folder, when every seed fine-tuned it (run.sh without --pretrain)")
    args = p.parse_args()
    result = collect(args.exp, args.mode, args.seeds, args.labels, args.curve.replace(",", " ").split(), args.task,
                     args.pretrained)
    if args.plot is not None and args.plot.is_file():
        result["plot"] = os.path.relpath(args.plot, args.out.parent)
    console, page = render(result)
    if args.out.is_file() and KEEP in (old := args.out.read_text()):
        page += "\n" + old[old.index(KEEP):]
    write(args.out, page)
    write(args.out.with_suffix(".json"), json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(console)
    print(f"results.py: wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
