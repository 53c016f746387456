"""The measurements of `bench/gpu/harness.py`, run in child processes (one per entry of `CHILDREN`).

A child appends one JSON line per measurement to the records file as soon as it has it, so a
child stopped at its time limit keeps what it measured. Every measurement is time-boxed:
`warmup` untimed steps, then at most `steps` timed steps or `time_box_s` seconds, whichever
comes first; a search for the largest batch stops after `search_box_s`.

Timing on a GPU: the device is synchronised before the clock starts and before it stops, so
the wall time covers all the queued work. Peak memory is `torch.cuda.max_memory_allocated`
over the timed steps (on the CPU of a dry run: the process's maximum resident size).
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.gpu.flops import conv_frames, train_step_flops
from bench.common import audio_batch
from w2vcli.audio import SAMPLE_RATE
from w2vcli.model.config import ModelConfig, get_preset, tiny


@dataclass(frozen=True)
class Settings:
    """Sizes and time boxes of one run (`for_run` gives a GPU run's or a dry run's)."""

    dry_run: bool
    device: str  # "cuda" (a real run) or "cpu" (the dry run)
    audio: str  # folder of .flac files: training crops are cut from them, transcription reads them
    lm: str | None  # KenLM model for the LM transcription runs (None: those are skipped)
    crop_s: float  # seconds per training utterance (the paper's 15.6 s crops = 250k samples)
    batch: int  # utterances per training step (halved until it fits)
    warmup: int  # untimed steps first
    steps: int  # timed steps, at most
    time_box_s: float  # timed seconds, at most, per measurement
    batch_limit: int  # largest batch the search tries
    search_box_s: float  # seconds, at most, of the largest-batch search
    infer_batch: int  # utterances per forward pass when transcribing
    audio_files: int  # transcribe the first this many files of the audio folder (0 = all) ...
    audio_repeat: int  # ... this many times per round
    rounds: int  # transcription rounds, at most (fewer when `time_box_s` is reached)
    jobs: int  # beam-search decoder processes
    compile_backend: str  # torch.compile backend: inductor (GPU) or eager (dry run: no C++ build)

    @classmethod
    def for_run(cls, dry_run: bool, audio: str, lm: str | None, cpus: int) -> "Settings":
        if dry_run:
            return cls(True, "cpu", audio, lm, crop_s=1.0, batch=2, warmup=1, steps=2, time_box_s=60.0,
                       batch_limit=4, search_box_s=60.0, infer_batch=4, audio_files=4, audio_repeat=1, rounds=1,
                       jobs=2, compile_backend="eager")  # fmt: skip
        return cls(False, "cuda", audio, lm, crop_s=15.6, batch=8, warmup=3, steps=20, time_box_s=20.0,
                   batch_limit=1024, search_box_s=60.0, infer_batch=16, audio_files=0, audio_repeat=12, rounds=5,
                   jobs=min(8, cpus), compile_backend="inductor")  # fmt: skip


def model_config(size: str, dry_run: bool) -> ModelConfig:
    """BASE or LARGE (layer drop off, so every step runs every layer), or in a dry run the tiny
    preset in the same variant (group-norm post-LN for base, layer-norm pre-LN for large)."""
    if not dry_run:
        return get_preset(size).replace(layer_drop=0.0)
    if size == "large":
        return tiny().replace(feature_norm="layer", layer_norm_first=True, conv_bias=True, normalize_waveform=True)
    return tiny()


class Recorder:
    """Appends measurement records (one JSON line each) and prints progress lines."""

    def __init__(self, child: str, path: str):
        self.child, self.path, self.t0 = child, path, time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{self.child} +{time.perf_counter() - self.t0:5.1f}s] {message}", flush=True)

    def add(self, name: str, kind: str, status: str = "ok", reason: str | None = None, **fields) -> None:
        row = {"name": name, "kind": kind, "child": self.child, "status": status, "reason": reason, **fields}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        shown = ", ".join(f"{k} {_short(v)}" for k, v in fields.items() if v is not None)
        self.log(f"{name}: {status}{f' ({reason})' if reason else ''}{': ' + shown if shown else ''}")

    @contextlib.contextmanager
    def guard(self, name: str, kind: str):
        """Record a failure of the measurement inside (with its reason) instead of ending the child."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not hide the others
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            self.add(name, kind, "failed", f"{type(exc).__name__}: {first}")
        finally:
            free_memory()


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --- device helpers ---------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # KiB on Linux


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class Timing:
    steps: int
    seconds: float


def time_steps(step: Callable[[], object], s: Settings, device: torch.device) -> Timing:
    """`s.warmup` untimed calls, then up to `s.steps` timed ones within `s.time_box_s`."""
    for _ in range(s.warmup):
        step()
    sync(device)
    reset_peak(device)
    t0 = time.perf_counter()
    n = 0
    while n < s.steps:
        step()
        n += 1
        if time.perf_counter() - t0 > s.time_box_s:
            break
    sync(device)
    return Timing(n, time.perf_counter() - t0)


def largest_batch(fits: Callable[[int], bool], start: int, limit: int, deadline: float) -> tuple[int, bool, int]:
    """The largest batch in [1, limit] for which `fits` holds (assumed monotone): doubling from
    `start`, then bisecting to within 1/16. Returns (batch, capped, tries); batch 0 if none fits;
    capped when the limit fits or the deadline cut the search short (the true value is larger)."""
    lo, hi, tries = 0, None, 0
    b = max(1, min(start, limit))
    while True:
        if time.perf_counter() > deadline:
            return lo, True, tries
        tries += 1
        if fits(b):
            lo = b
        else:
            hi = b
        if hi is None:
            if lo >= limit:
                return lo, True, tries
            b = min(2 * lo, limit)
            continue
        if hi - lo <= max(1, lo // 16):
            return lo, False, tries
        b = (lo + hi) // 2


# --- training throughput ----------------------------------------------------------------------------


def train_batch(s: Settings, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` crops of `s.crop_s` seconds cut from the audio folder: wav [B,S], lengths [B] on `device`."""
    wav, lengths = audio_batch([s.crop_s] * batch, root=Path(s.audio))
    return wav.to(device), lengths.to(device)


def measure_train(rec: Recorder, name: str, impl: str, preset: str, config: ModelConfig, make_step, s: Settings,
                  device: torch.device, head: str = "pretrain", frozen_feature_encoder: bool = False,
                  note: str | None = None) -> tuple[int, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Throughput of `make_step(wav, lengths)` (a zero-argument training step), halving the batch
    until it fits. Records a "train" row; returns (batch, wav, lengths) that fit."""
    batch = s.batch
    while True:
        wav, lengths = train_batch(s, batch, device)
        try:
            timing = time_steps(make_step(wav, lengths), s, device)
            break
        except RuntimeError as exc:
            if not is_oom(exc) or batch == 1:
                raise
        wav = lengths = None
        free_memory()
        rec.log(f"{name}: batch {batch} does not fit; trying {batch // 2}")
        note = f"batch halved from {s.batch} (out of memory)"
        batch //= 2
    samples = int(lengths[0])
    per_sample = train_step_flops(config, samples, head, frozen_feature_encoder=frozen_feature_encoder)
    sps = batch * timing.steps / timing.seconds
    rec.add(name, "train", impl=impl, preset=preset, precision="bf16", batch=batch, crop_s=s.crop_s,
            steps=timing.steps, step_ms=1000 * timing.seconds / timing.steps, samples_per_s=sps,
            tokens_per_s=sps * conv_frames(config, samples)[-1], audio_s_per_s=sps * samples / SAMPLE_RATE,
            peak_mem_gib=peak_gib(device), gflops_per_sample=per_sample / 1e9, tflops=sps * per_sample / 1e12,
            note=note)  # fmt: skip
    return batch, wav, lengths


def measure_max_batch(rec: Recorder, name: str, impl: str, preset: str, model: torch.nn.Module, make_step, s: Settings,
                      device: torch.device, wav: torch.Tensor, lengths: torch.Tensor) -> None:  # fmt: skip
    """The largest batch of the same crops for which two training steps run (the optimizer state
    is allocated by the first)."""

    def fits(b: int) -> bool:
        reps = -(-b // wav.shape[0])
        try:
            step = make_step(wav.repeat(reps, 1)[:b], lengths.repeat(reps)[:b])
            step()
            step()
            sync(device)
            return True
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            return False
        finally:
            model.zero_grad(set_to_none=True)
            free_memory()

    best, capped, tries = largest_batch(fits, 2 * wav.shape[0], s.batch_limit, time.perf_counter() + s.search_box_s)
    rec.add(name, "max_batch", impl=impl, preset=preset, crop_s=s.crop_s, max_batch=best,
            capped=capped, tries=tries)  # fmt: skip


# --- transcription ---------------------------------------------------------------------------------


def audio_files(s: Settings) -> list[str]:
    files = sorted(str(p) for p in Path(s.audio).rglob("*") if p.suffix in (".flac", ".wav"))
    if not files:
        raise FileNotFoundError(f"no .flac or .wav files under {s.audio}")
    return (files[: s.audio_files] if s.audio_files else files) * s.audio_repeat


def peaked_ctc_model(config: ModelConfig, device: torch.device, seed: int = 0):
    """A random CTC model whose output layer is scaled so its emissions are about as peaked as a
    trained model's (logit standard deviation ~10): beam-search speed depends on that, and a
    random model's flat emissions would make the LM runs unrepresentatively slow."""
    from w2vcli.model.build import build_model, librispeech_vocab

    torch.manual_seed(seed)
    with device:
        model = build_model("ctc", config, librispeech_vocab()).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 10.0 / config.hidden_size**0.5)
    return model


def lm_unavailable(s: Settings) -> str | None:
    """Why the LM runs cannot happen here, or None."""
    if not s.lm:
        return "no LM given (--lm)"
    if not Path(s.lm).is_file():
        return f"{s.lm}: no such file"
    for module in ("pyctcdecode", "kenlm"):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} cannot be imported here ({exc}); see docs/benchmarks.md#gpu"
    return None


def measure_transcribe(rec: Recorder, name: str, preset: str, model, s: Settings, use_lm: bool) -> None:
    """`w2v transcribe`'s library path (`transcribe_files`) on the audio folder, repeated, in up to
    `s.rounds` rounds within `s.time_box_s`: audio seconds per wall second, model and decoder time."""
    from w2vcli.decode.ctc import DecodingOptions
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files

    decoding = "lm beam 50" if use_lm else "greedy"
    why = lm_unavailable(s) if use_lm else None
    if why:
        rec.add(name, "transcribe", "skipped", why, preset=preset, decoding=decoding)
        return
    dec = DecodingOptions(beam_size=50, lm=s.lm, alpha=0.5, beta=1.0) if use_lm else DecodingOptions()
    opts = TranscribeOptions(EmissionOptions(batch_size=s.infer_batch, device=s.device), dec,
                             jobs=s.jobs if use_lm else 1)  # fmt: skip
    files = audio_files(s)
    noop = lambda _t: None  # noqa: E731
    transcribe_files(model, files[:2], opts, noop)  # warm-up: allocator, kernels, LM load
    audio = wall = model_s = decoder_s = 0.0
    rounds = 0
    while rounds < s.rounds and (rounds == 0 or wall < s.time_box_s):
        t0 = time.perf_counter()
        stats = transcribe_files(model, files, opts, noop)
        wall += time.perf_counter() - t0
        audio, model_s, decoder_s, rounds = audio + stats.audio_seconds, model_s + stats.model_seconds, \
            decoder_s + stats.decode_seconds, rounds + 1  # fmt: skip
        if stats.failed:
            raise RuntimeError(f"{len(stats.failed)} file(s) failed, e.g. {stats.failed[0]}")
    rec.add(name, "transcribe", preset=preset, decoding=decoding, files=len(files) * rounds, audio_s=audio,
            wall_s=wall, audio_s_per_s=audio / wall, model_s=model_s, decoder_s=decoder_s, jobs=opts.jobs,
            batch_size=s.infer_batch)  # fmt: skip


# --- torch.compile ---------------------------------------------------------------------------------


def measure_compile(rec: Recorder, name: str, part: str, preset: str, model: torch.nn.Module, make_step,
                    per_call: float, unit: str, s: Settings, device: torch.device) -> None:  # fmt: skip
    """The same step eager, then with `torch.compile(model)` (fixed shapes): the compile time
    (the first call) and both rates."""
    eager = time_steps(make_step(model), s, device)
    step = make_step(torch.compile(model, backend=s.compile_backend, dynamic=False))
    t0 = time.perf_counter()
    step()
    sync(device)
    compile_s = time.perf_counter() - t0
    rec.log(f"{name}: compiled in {compile_s:.1f} s")
    compiled = time_steps(step, s, device)
    eager_rate, compiled_rate = per_call * eager.steps / eager.seconds, per_call * compiled.steps / compiled.seconds
    rec.add(name, "compile", part=part, preset=preset, backend=s.compile_backend, compile_s=compile_s,
            eager_per_s=eager_rate, compiled_per_s=compiled_rate, unit=unit, speedup=compiled_rate / eager_rate)
