"""cpu_anchors: w2v's CPU modes against the runtimes people deploy wav2vec 2.0 with on CPUs.

    python -m bench.suite.cpu_anchors --preset base --norm group --reps 5
    python -m bench.suite.cpu_anchors --preset base --norm layer --files 3 --reps 2
    python -m bench.suite.cpu_anchors --dry-run          # every runtime once on a tiny model: proves the code runs

Same weights everywhere: a w2v CTC model (random weights from `--preset`/`--norm`, or a trained
`--checkpoint`) is exported with `export_hf`; the anchors are built from that Hugging Face
directory by each runtime's own documented path:

    transformers_fp32   Wav2Vec2ForCTC under no_grad
    transformers_bf16   the same under torch.autocast("cpu", bfloat16)        (native-bf16 CPUs)
    ort_fp32            onnxruntime on torch.onnx.export(dynamo=True) of the transformers model
    ort_int8            that file through onnxruntime.quantization.quantize_dynamic (QInt8 weights,
                        MatMuls with a constant operand: the transformer recipe of its docs)
    ct2_int8            CTranslate2's converter for Wav2Vec2ForCTC, compute_type int8 (layer-norm
                        models with the paper's 128/16 positional conv only: what it supports)

and w2v in each mode, through `Emitter.batch` (what `w2v transcribe` runs): w2v_fp32, w2v_bf16
(native-bf16 CPUs), w2v_int8, w2v_auto (`--precision auto`), w2v_onnx_fp32 and w2v_onnx_int8
(`w2v export --to onnx [--quantize int8]` run by onnxruntime).

Same audio: the real-mini utterances (../shared/data/real-mini), one at a time (batch 1, no
padding anywhere), greedy CTC decoding of every runtime's output by the same decoder. Before
timing, the fp32 runtimes must give the same logits as w2v fp32 (a mismatch stops the run).
Timing: `interleaved` repetitions of the whole set, audio seconds per wall second, medians.

Lines: `ABS cpu_<preset>[_layer]_<runtime> <audio s/s> ...` and, for every runtime,
`RATIO cpu_<preset>[_layer]_<runtime> <speed / speed of the fastest anchor> vs_fp32=... dcer=...`:
vs_fp32 is the CER (%) of its transcripts against its fp32 counterpart's (w2v modes against
w2v_fp32, ort_int8 against ort_fp32, the others against transformers_fp32), dcer the change in
CER (points) against the reference transcripts; with random weights only vs_fp32 means anything
(bench/studies/cpu_accuracy.py measures accuracy on trained models). A runtime that cannot run on this
machine prints `SKIP <name> <why>`. Exports are cached in bench/.cache/anchors/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.common import CACHE, emit, interleaved, median, set_threads, timed
from bench.common import agreement, cer, emulated_bf16, real_mini_rows
from w2vcli.model.onnx import quiet

ANCHORS = ("transformers_fp32", "transformers_bf16", "ort_fp32", "ort_int8", "ct2_int8")
FP32_OF = {"transformers_bf16": "transformers_fp32", "ort_int8": "ort_fp32", "ct2_int8": "transformers_fp32",
           "w2v_bf16": "w2v_fp32", "w2v_int8": "w2v_fp32", "w2v_auto": "w2v_fp32",
           "w2v_onnx_fp32": "w2v_fp32", "w2v_onnx_int8": "w2v_fp32"}  # fmt: skip


@dataclass
class Runtime:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # wav [S] float32 -> logits or log-probs [T,V]


def build_model(preset: str, norm: str, checkpoint: str | None, dry_run: bool):
    """The w2v CTC model all runtimes share (eval mode)."""
    import w2vcli
    from w2vcli.model.build import build_model as build, librispeech_vocab
    from w2vcli.model.config import get_preset

    if checkpoint:
        return w2vcli.load_model(checkpoint).eval()
    torch.manual_seed(0)
    config = get_preset(preset).replace(layer_drop=0.0)
    if dry_run:  # tiny, with the paper's positional conv (128 taps, 16 groups) that CTranslate2 expects
        config = get_preset("tiny").replace(hidden_size=64, num_heads=4, pos_conv_kernel=128, pos_conv_groups=16)
    if norm == "layer":  # LARGE's "stable" layout at this size; input normalisation off so all get the same input
        config = config.replace(feature_norm="layer", conv_bias=True, layer_norm_first=True)
    return build("ctc", config, librispeech_vocab()).eval()


def cache_dir(model, tag: str) -> Path:
    """bench/.cache/anchors/<tag>-<hash of the weights and torch version>/ (exports reused across runs)."""
    h = hashlib.sha1(torch.__version__.encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(float(v.float().sum())).encode())
    path = CACHE / "anchors" / f"{tag}-{h.hexdigest()[:12]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(path: Path, make: Callable[[Path], None]) -> Path:
    """`path`, made by `make(temporary path)` and renamed into place unless it exists already."""
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        if tmp.is_dir():
            shutil.rmtree(tmp)
        tmp.unlink(missing_ok=True)
        make(tmp)
        os.replace(tmp, path)
    return path


# --- the anchors -----------------------------------------------------------------------------------


def hf_runtimes(hf_dir: Path, cache: Path, native_bf16: bool, threads: int, dry_run: bool) -> dict:
    import onnxruntime as ort
    import transformers

    hf = transformers.Wav2Vec2ForCTC.from_pretrained(hf_dir).eval()
    out: dict[str, Runtime | str] = {}

    def hf_fp32(wav):
        with torch.no_grad():
            return hf(torch.from_numpy(wav)[None]).logits[0].numpy()

    def hf_bf16(wav):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return hf(torch.from_numpy(wav)[None]).logits[0].float().numpy()

    out["transformers_fp32"] = Runtime("transformers_fp32", hf_fp32)
    out["transformers_bf16"] = (Runtime("transformers_bf16", hf_bf16) if native_bf16 or dry_run
                                else "no native bf16 on this CPU (emulated bf16 is not a deployment mode)")  # fmt: skip

    def export(path: Path) -> None:
        S = torch.export.Dim("samples", min=400, max=16000 * 600)
        with quiet(), torch.no_grad():
            program = torch.onnx.export(hf, (torch.randn(1, 16000),), dynamo=True, input_names=["input_values"],
                                        output_names=["logits"], dynamic_shapes={"input_values": {1: S}})  # fmt: skip
            program.save(str(path), external_data=False)

    def quantize(path: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with quiet():
            quantize_dynamic(fp32_path, path, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                             extra_options={"MatMulConstBOnly": True})  # fmt: skip

    fp32_path = _cached(cache / "transformers.onnx", export)
    int8_path = _cached(cache / "transformers-int8.onnx", quantize)
    for name, path in (("ort_fp32", fp32_path), ("ort_int8", int8_path)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out[name] = Runtime(name, lambda wav, s=session: s.run(None, {"input_values": wav[None]})[0][0])
    out["ct2_int8"] = ct2_runtime(hf, hf_dir, cache, threads)
    return out


def ct2_runtime(hf, hf_dir: Path, cache: Path, threads: int) -> Runtime | str:
    try:
        import ctranslate2
    except ImportError:
        return "ctranslate2 is not installed (pip install 'w2vcli[bench]')"
    conv = hf.wav2vec2.encoder.pos_conv_embed.conv
    if hf.config.feat_extract_norm != "layer" or conv.kernel_size[0] != 128 or conv.groups != 16:
        return "CTranslate2 converts layer-norm wav2vec2 with the 128-tap, 16-group positional conv only"
    path = _cached(cache / "ct2-int8", lambda p: ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(
        str(p), quantization="int8"))  # fmt: skip
    model = ctranslate2.models.Wav2Vec2(str(path), device="cpu", compute_type="int8", intra_threads=threads)

    def run(wav):
        audio = ctranslate2.StorageView.from_array(np.ascontiguousarray(wav[None, None, :]))
        return np.array(model.encode(audio, to_cpu=True))[0]

    return Runtime("ct2_int8", run)


# --- w2v ------------------------------------------------------------------------------------------


def w2v_runtimes(model, cache: Path, native_bf16: bool, dry_run: bool) -> dict:
    from w2vcli.decode.emissions import EmissionOptions, Emitter
    from w2vcli.model.onnx import export_onnx, load_onnx, quantize_onnx

    def emitter_runtime(name, m, ctx=contextlib.nullcontext, **options) -> Runtime:
        with ctx():
            emitter = Emitter(m, EmissionOptions(device="cpu", chunk_seconds=0, **options))
        return Runtime(name, lambda wav: emitter.batch([wav])[0])

    out: dict[str, Runtime | str] = {
        "w2v_fp32": emitter_runtime("w2v_fp32", model, precision="fp32", quantize="none"),
        "w2v_int8": emitter_runtime("w2v_int8", model, quantize="int8"),
        "w2v_auto": emitter_runtime("w2v_auto", model),  # the rule of w2vcli/cpu.py for this CPU
    }
    if native_bf16:
        out["w2v_bf16"] = emitter_runtime("w2v_bf16", model, precision="bf16")
    elif dry_run:
        out["w2v_bf16"] = emitter_runtime("w2v_bf16", model, ctx=emulated_bf16)
    else:
        out["w2v_bf16"] = "no native bf16 on this CPU (--precision bf16 is refused there)"
    fp32 = _cached(cache / "w2v.onnx", lambda p: export_onnx(model, p))
    int8 = _cached(cache / "w2v-int8.onnx", lambda p: quantize_onnx(fp32, p))
    out["w2v_onnx_fp32"] = emitter_runtime("w2v_onnx_fp32", load_onnx(fp32))
    out["w2v_onnx_int8"] = emitter_runtime("w2v_onnx_int8", load_onnx(int8))
    return out


# --- the comparison ---------------------------------------------------------------------------------


def verify(runtimes: dict[str, Runtime], wav: np.ndarray) -> None:
    """The fp32 runtimes agree with w2v fp32 on one utterance (log-softmax compared)."""
    ref = torch.log_softmax(torch.from_numpy(runtimes["w2v_fp32"].run(wav)), -1)
    for name in ("transformers_fp32", "ort_fp32", "w2v_onnx_fp32"):
        got = torch.log_softmax(torch.from_numpy(np.asarray(runtimes[name].run(wav), dtype=np.float32)), -1)
        torch.testing.assert_close(got, ref, atol=2e-3, rtol=1e-3, msg=lambda m, n=name: f"{n} vs w2v_fp32: {m}")
    print(f"verified: transformers_fp32, ort_fp32 and w2v_onnx_fp32 give w2v_fp32's log-probs {tuple(ref.shape)}",
          flush=True)  # fmt: skip


def run(preset: str = "base", norm: str = "group", reps: int = 5, files: int = 10, threads: int = 2,
        checkpoint: str | None = None, dry_run: bool = False) -> dict[str, float]:  # fmt: skip
    from w2vcli.audio import load_audio
    from w2vcli.cpu import cpu_features
    from w2vcli.decode.ctc import GreedyDecoder
    from w2vcli.model.hf_dir import export_hf

    set_threads(threads)
    rows = real_mini_rows()[: 2 if dry_run else files]
    wavs = [load_audio(r["audio"]) for r in rows]
    if dry_run:
        wavs = [w[:24000] for w in wavs]
    audio_s = sum(len(w) for w in wavs) / 16000
    model = build_model(preset, norm, checkpoint, dry_run)
    norm = model.config.feature_norm
    if model.config.normalize_waveform:  # what transformers' processor does (do_normalize); idempotent for w2v
        wavs = [((w - w.mean()) / np.sqrt(w.var() + 1e-7)).astype(np.float32) for w in wavs]
    tag = f"{'dry' if dry_run else Path(checkpoint).stem if checkpoint else preset}-{norm}"
    label = f"cpu_{'dry' if dry_run else preset}{'_layer' if norm == 'layer' else ''}"
    cache = cache_dir(model, tag)
    native = cpu_features().bf16
    hf_dir = _cached(cache / "hf", lambda p: export_hf(model, p))
    runtimes = {**hf_runtimes(hf_dir, cache, native, threads, dry_run), **w2v_runtimes(model, cache, native, dry_run)}
    for name, r in list(runtimes.items()):
        if isinstance(r, str):
            print(f"SKIP {label}_{name} {r}", flush=True)
            del runtimes[name]
    verify(runtimes, wavs[0])

    greedy = GreedyDecoder(model.vocab)
    texts = {name: {r["id"]: greedy.decode(rt.run(w)).text for r, w in zip(rows, wavs)} for name, rt in runtimes.items()}
    refs = {r["id"]: r["text"] for r in rows}
    speeds = interleaved({n: (lambda rt=rt: audio_s / timed(lambda: [rt.run(w) for w in wavs])) for n, rt in runtimes.items()},
                         reps=1 if dry_run else reps, warmup=0 if dry_run else 1)  # fmt: skip
    medians = {n: median(v) for n, v in speeds.items()}
    anchors = [n for n in runtimes if n in ANCHORS]
    fastest = max(anchors, key=medians.__getitem__)
    out = print if dry_run else emit  # a dry run proves the code runs: its numbers are not results
    prefix = "DRY-RUN " if dry_run else ""
    for n, v in speeds.items():
        out(f"{prefix}ABS {label}_{n} {medians[n]:.4g} audio s/s (min {min(v):.4g}, max {max(v):.4g}, n={len(v)}; "
            f"{len(wavs)} utterances, {audio_s:.1f} s, batch 1)")  # fmt: skip
    rules = model.text_rules
    for n in runtimes:
        ref_name = FP32_OF.get(n, n)
        vs = 100 * cer(texts[ref_name], texts[n], rules) if ref_name in texts else float("nan")
        dcer = 100 * (cer(refs, texts[n], rules) - cer(refs, texts[ref_name], rules)) if ref_name in texts else float("nan")
        agree = agreement(texts[ref_name], texts[n]) if ref_name in texts else float("nan")
        out(f"{prefix}RATIO {label}_{n} {medians[n] / medians[fastest]:.2f} vs_fp32={vs:.2f} dcer={dcer:+.2f} "
            f"agree={agree:.2f} (fastest anchor: {fastest})")  # fmt: skip
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="base")
    ap.add_argument("--norm", choices=["group", "layer"], help="feature encoder: group (BASE, the default) or layer (LARGE-style)")
    ap.add_argument("--checkpoint", help="a trained CTC model instead of random weights (its own architecture)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--files", type=int, default=10, help="real-mini utterances (10: all, 49 s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny models (both norms unless --norm), 2 short utterances, 1 repetition, no RATIO lines")
    a = ap.parse_args()
    for norm in [a.norm] if a.norm or not a.dry_run else ["group", "layer"]:
        run(a.preset, norm or "group", a.reps, a.files, a.threads, a.checkpoint, a.dry_run)


if __name__ == "__main__":
    main()
