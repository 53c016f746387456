"""Accuracy of w2v's CPU modes against fp32 on trained models: greedy transcripts, agreement, CER.

    python -m bench.studies.cpu_accuracy recipes/demo/exp/seed-0/ft-pretrained-10m/best.pt \\
        --data real-mini recipes/demo/exp/data/test-clean.jsonl --modes fp32 bf16 int8 onnx onnx-int8

For each model and data set, every mode transcribes the same audio greedily through
`transcribe_manifest` (what `w2v transcribe --manifest` runs), and prints one line per mode:

    ACCURACY <model> <data> <mode> agree=<share of utterances whose transcript equals fp32's>
             cer=<CER % against the references> dcer=<CER(mode) - CER(fp32), points> n=<utterances>

Modes: fp32, bf16 (autocast; needs a CPU with native bf16, or --force-bf16 to emulate it, slow
but numerically the same), int8 (`--quantize int8`), onnx and onnx-int8 (the model exported with
`w2v export --to onnx [--quantize int8]`, run by onnxruntime). `real-mini` is the 10 LibriSpeech
utterances shipped in tests/data/real-mini; any JSONL/tsv manifest with text works. Accuracy, not
speed: this can run on a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.common import REAL_MINI

MODES = ("fp32", "bf16", "int8", "onnx", "onnx-int8")
DEMO_TEST = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "exp" / "data" / "test-clean.jsonl"


def data_rows(name: str) -> list[dict]:
    if name == "real-mini":
        return real_mini_rows()
    from w2vcli.data.manifest import read_manifest

    return [r for r in read_manifest(name) if isinstance(r.get("text"), str)]


def mode_model(model, mode: str, tmp: Path):
    """(model to transcribe with, EmissionOptions precision, quantize) for a mode."""
    if mode.startswith("onnx"):
        from w2vcli.model.onnx import export_onnx, load_onnx

        path = tmp / f"{mode}.onnx"
        if not path.exists():
            export_onnx(model, path, quantize="int8" if mode == "onnx-int8" else "none")
        return load_onnx(path), "auto", "auto"
    return model, {"fp32": "fp32", "bf16": "bf16", "int8": "fp32"}[mode], ("int8" if mode == "int8" else "none")


def transcripts(model, rows: list[dict], mode: str, tmp: Path, force_bf16: bool) -> dict[str, str]:
    from w2vcli.cpu import cpu_features
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_manifest

    run_model, precision, quantize = mode_model(model, mode, tmp)
    ctx = contextlib.nullcontext()
    if mode == "bf16" and not cpu_features().bf16:
        if not force_bf16:
            raise SystemExit("bf16: this CPU has no native bf16; pass --force-bf16 to emulate it (slow)")
        ctx, precision, quantize = emulated_bf16(), "auto", "auto"
    with ctx:
        options = TranscribeOptions(EmissionOptions(device="cpu", precision=precision, quantize=quantize))
        hyps, _ = transcribe_manifest(run_model, rows, options)
    return {h["id"]: h["text"] for h in hyps}


def run(models: list[str], data: list[str], modes: list[str], threads: int = 2, force_bf16: bool = False) -> list[dict]:
    import torch

    import w2vcli

    torch.set_num_threads(threads)
    results = []
    for model_path in models:
        model = w2vcli.load_ctc_model(model_path)
        with tempfile.TemporaryDirectory(prefix="w2v-acc-") as tmp:
            for name in data:
                rows = data_rows(name)
                refs = {str(r["id"]): r["text"] for r in rows}
                fp32 = transcripts(model, rows, "fp32", Path(tmp), force_bf16)
                base = cer(refs, fp32, model.text_rules)
                for mode in modes:
                    hyps = fp32 if mode == "fp32" else transcripts(model, rows, mode, Path(tmp), force_bf16)
                    c = cer(refs, hyps, model.text_rules)
                    row = {"model": model_path, "data": name, "mode": mode, "agree": agreement(fp32, hyps),
                           "cer": 100 * c, "dcer": 100 * (c - base), "n": len(rows)}  # fmt: skip
                    print(f"ACCURACY {Path(model_path).name} {Path(name).name} {mode} agree={row['agree']:.3f} "
                          f"cer={row['cer']:.2f} dcer={row['dcer']:+.2f} n={row['n']}", flush=True)  # fmt: skip
                    results.append(row)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="trained CTC models (w2v .pt, Hugging Face directory, fairseq .pt)")
    ap.add_argument("--data", nargs="+", help="real-mini and/or manifests with text (default: real-mini, and the "
                    "demo's test set if recipes/demo has been run)")
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16", "int8", "onnx", "onnx-int8"], choices=MODES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force-bf16", action="store_true", help="emulate bf16 on a CPU without it (numbers only)")
    a = ap.parse_args()
    data = a.data or ["real-mini"] + ([str(DEMO_TEST)] if DEMO_TEST.is_file() else [])
    run(a.models, data, a.modes, a.threads, a.force_bf16)


if __name__ == "__main__":
    main()
