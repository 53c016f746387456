"""tune_speed: `w2v transcribe --tune` before and after issue 24, side by side in one run.

    python -m bench.studies.tune_speed --copies 2 --reps 1

before: the whole 35-pair grid on the whole dev manifest, beam search in one process
        (`--tune-full --tune-minutes 0 --jobs 1`: what --tune did until then);
after:  the defaults: every other grid value (12 pairs), then the best pair's neighbours, on at
        most --tune-minutes of the manifest, beam search in one process per usable core.

The dev manifest is tests/data/real-mini (10 real utterances, 49 s) repeated --copies times
(each copy its own speakers); `after` tunes on half of it, as the default 5 minutes are half of
the quickstart's 10-minute dev-clean. The model is a tiny CTC model with random weights and
LibriSpeech's 32 letters: its emissions are flat, as an undertrained model's nearly are, which
is when --tune is slowest. The LM is a 3-gram of w2v's shipped sentence list (the quickstart's
LM text), built once into bench/.cache/tune/. Both runs go through the `w2v` command in this
process, alternating, and print their wall time; RATIO is before / after (> 1: after is faster).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import soundfile as sf

from bench.common import CACHE, REAL_MINI, emit, interleaved, load_average, median

SENTENCES = Path(__file__).resolve().parents[2] / "w2vcli" / "resources" / "sentences.txt.gz"


def dev_manifest(out: Path, copies: int) -> float:
    """real-mini `copies` times over as a manifest with text; returns its minutes."""
    rows = []
    for c in range(copies):
        for f in sorted(REAL_MINI.rglob("*.flac")):
            trans = f.parent / f"{'-'.join(f.stem.split('-')[:2])}.trans.txt"
            text = dict(line.split(" ", 1) for line in trans.read_text().splitlines())[f.stem]
            rows.append({"id": f"{c}-{f.stem}", "audio": str(f), "num_samples": sf.info(str(f)).frames,
                         "sample_rate": 16000, "text": text, "speaker": f"{c}-{f.parent.parent.name}"})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return sum(r["num_samples"] for r in rows) / 16000 / 60


def cached_lm() -> Path:
    from w2vcli.decode.lm import LMBuildConfig, build_lm

    out = CACHE / "tune" / "3gram.bin"
    if not out.is_file():
        build_lm(LMBuildConfig(texts=(SENTENCES,), out=out, order=3, memory="200M"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=2, help="real-mini copies in the dev manifest (49 s each)")
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()

    import torch
    from typer.testing import CliRunner

    from w2vcli.cli import app
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    tmp = Path(tempfile.mkdtemp(prefix="tune-speed-"))
    minutes = dev_manifest(tmp / "dev.jsonl", args.copies)
    torch.manual_seed(0)
    save_checkpoint(tmp / "model.pt", build_model("ctc", tiny(), librispeech_vocab()))
    base = ["transcribe", str(tmp / "model.pt"), "--manifest", str(tmp / "dev.jsonl"), "--lm", str(cached_lm()),
            "--tune", "--out", str(tmp / "tune.jsonl")]
    runs = {"before": ["--tune-full", "--tune-minutes", "0", "--jobs", "1"],
            "after": ["--tune-minutes", f"{minutes / 2:.4f}"]}

    def run(name: str) -> float:
        t0 = time.perf_counter()
        res = CliRunner().invoke(app, base + runs[name])
        seconds = time.perf_counter() - t0
        if res.exit_code != 0:
            raise SystemExit(res.output)
        pairs = len((tmp / "tune.jsonl").read_text().splitlines()) - 1
        best = res.output.strip().splitlines()[-1]
        print(f"{name}: {seconds:.1f} s, {pairs} pairs; {best}", flush=True)
        return seconds

    print(f"dev manifest: {minutes:.2f} min; load average {load_average()}", flush=True)
    times = interleaved({"before": lambda: run("before"), "after": lambda: run("after")}, args.reps, warmup=0)
    for name, xs in times.items():
        emit(f"ABS tune_{name} {median(xs):.1f} s (n={len(xs)})")
    emit(f"RATIO tune_before_over_after {median(times['before']) / median(times['after']):.2f}")


if __name__ == "__main__":
    main()
