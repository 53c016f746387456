"""`w2v align` against greedy `w2v transcribe` on the same long recordings: wall time and peak memory.

    OMP_NUM_THREADS=1 python bench/studies/align_speed.py --minutes 10 30 60

For each length a recording is made by repeating tests/data/real-mini's ten utterances (49 s of
real speech) and its text by repeating their transcripts. A CTC model of the `small` preset
(2.3 M parameters, the paper's 20 ms frames) with random weights runs both commands: the time
spent in the model does not depend on training, and a random model's emissions are flat, so
the aligner's pruning keeps its widest windows (its slowest case; a trained model's peaked
emissions keep far fewer states). Each command runs in its own process under /usr/bin/time
(peak resident memory of the whole process), transcribe and align alternating, `--reps` times;
the medians and their ratios are printed as JSON lines and a table.

The process peaks are the model's (its windows of audio and activations, and the allocator's
behaviour), which differ between two runs of the same command by more than the aligner holds.
`--own-memory` measures what the aligner itself allocates (tracemalloc, in this process) on
"trained-like" emissions of each length (bench/studies/transcribe_speed.py), with the emissions given:
the copy with the garbage column, the search, the words.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
REAL_MINI = REPO / "tests" / "data" / "real-mini"


def make_recording(minutes: float, out: Path) -> tuple[Path, Path]:
    files = sorted(REAL_MINI.rglob("*.flac"))
    texts: dict[str, str] = {}
    for t in REAL_MINI.rglob("*.trans.txt"):
        texts.update(dict(line.split(" ", 1) for line in t.read_text().splitlines()))
    wavs = [sf.read(f, dtype="float32")[0] for f in files]
    need = int(minutes * 60 * 16000)
    audio, words, n, i = out / f"rec{minutes:g}.flac", out / f"rec{minutes:g}.txt", 0, 0
    parts, text = [], []
    while n < need:
        parts.append(wavs[i % len(wavs)])
        text.append(texts[files[i % len(files)].stem].strip())
        n += len(parts[-1])
        i += 1
    sf.write(audio, np.concatenate(parts), 16000)
    words.write_text(" ".join(text) + "\n")
    return audio, words


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command."""
    res = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    line = [l for l in res.stderr.splitlines() if l.startswith("TIME ")][-1]
    wall, kb = line.split()[1:]
    return float(wall), int(kb) / 1024


def own_memory(minutes_list: list[float]) -> None:
    """Peak bytes the aligner allocates on emissions of each length (see the module docstring)."""
    import tracemalloc

    from transcribe_speed import real_mini, trained_like
    from w2vcli.alignment.align import AlignOptions, align_emissions
    from w2vcli.alignment.text import text_words
    from w2vcli.model.build import librispeech_vocab
    from w2vcli.text import TextRules

    vocab = librispeech_vocab()
    files, texts = real_mini(REAL_MINI)
    rng = np.random.default_rng(0)
    print("| minutes | frames T | units | T x states | emissions MB | aligner peak MB | bound on the search's scores + decisions MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for minutes in minutes_list:
        parts, words = [], []
        while sum(len(p) for p in parts) < minutes * 60 * 50:
            key = Path(files[len(parts) % len(files)]).stem
            parts.append(trained_like(texts[key], vocab, rng))
            words.append(texts[key])
        lp = np.concatenate(parts).astype(np.float32)
        tw = text_words(" ".join(words), TextRules(), vocab)
        tracemalloc.start()
        align_emissions(lp, tw, vocab.index["|"], 0.02, AlignOptions())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        from w2vcli.alignment import viterbi

        units = sum(len(w.units) + 2 for w in tw)
        print(f"| {minutes:g} | {len(lp)} | {units} | {len(lp) * (2 * units + 1):.2e} | {lp.nbytes / 2**20:.0f} | "
              f"{peak / 2**20:.0f} | {2 * (int(np.sqrt(len(lp))) + 1) * viterbi.MAX_WIDTH * 8 / 2**20:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--own-memory", action="store_true", help="the aligner's own allocations only")
    args = ap.parse_args()
    if args.own_memory:
        sys.path.insert(0, str(REPO / "bench"))
        own_memory(args.minutes)
        return
    import torch

    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import get_preset

    tmp = Path(tempfile.mkdtemp(prefix="align-bench-"))
    torch.manual_seed(0)
    model = tmp / "small.pt"
    save_checkpoint(model, build_model("ctc", get_preset("small"), librispeech_vocab()))
    w2v = [sys.executable, "-m", "w2vcli"]
    rows = []
    for minutes in args.minutes:
        audio, text = make_recording(minutes, tmp)
        runs: dict[str, list[tuple[float, float]]] = {"transcribe": [], "align": []}
        for rep in range(args.reps):
            order = ["transcribe", "align"] if rep % 2 == 0 else ["align", "transcribe"]
            for kind in order:
                if kind == "transcribe":
                    cmd = [*w2v, "transcribe", str(model), str(audio), "--device", "cpu", "--format", "jsonl", "--out", str(tmp / "t.jsonl")]
                else:
                    cmd = [*w2v, "align", str(model), str(audio), str(text), "--device", "cpu", "--out", str(tmp / "a.jsonl")]
                runs[kind].append(measure(cmd))
        t = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        m = {k: statistics.median(r for _, r in v) for k, v in runs.items()}
        row = {"minutes": minutes, "transcribe_s": t["transcribe"], "align_s": t["align"],
               "time_ratio": round(t["align"] / t["transcribe"], 3), "transcribe_mb": round(m["transcribe"]),
               "align_mb": round(m["align"]), "memory_ratio": round(m["align"] / m["transcribe"], 3)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("| minutes | transcribe s | align s | time ratio | transcribe peak MB | align peak MB | memory ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['minutes']:g} | {r['transcribe_s']:.1f} | {r['align_s']:.1f} | {r['time_ratio']:.2f} | "
              f"{r['transcribe_mb']} | {r['align_mb']} | {r['memory_ratio']:.2f} |")


if __name__ == "__main__":
    main()
