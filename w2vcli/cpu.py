"""What this CPU computes fast, and the rules that turn `auto` into a mode.

    features = cpu_features()          # CpuFeatures(bf16=True, amx=False, vnni=True, ...)
    auto_inference_mode(features)      # Mode(precision="bf16", quantize="none")
    auto_train_precision(features)     # "bf16" | "fp32"

bf16 is worth it only where the CPU multiplies bfloat16 natively (AVX512_BF16, or AMX tiles
on Intel Sapphire Rapids and later); elsewhere PyTorch emulates it and a bf16 matrix product
runs many times slower than fp32, so `--precision bf16` is refused there. int8 dynamic
quantization (`w2vcli/model/quantize.py`) runs on every x86 CPU with AVX2 (fbgemm), fastest
with VNNI.

The two `auto_*` functions are the only place the choice is made: change a rule there (after
measuring with `bench/run.sh --only cpu_anchors_small cpu_anchors_base` and checking accuracy
with `bench/cpu_accuracy.py`), and docs/transcribe.md / docs/train.md say why it is what it is.
`W2V_CPU_MODE` (fp32 | bf16 | int8) pins what `auto` chooses on a CPU, e.g. in a deployment,
or in the test suite so results do not depend on the machine.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import W2VError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZE = ("auto", "none", "int8")
MODE_ENV = "W2V_CPU_MODE"  # pins `auto` on a CPU: fp32 | bf16 | int8


@dataclass(frozen=True)
class CpuFeatures:
    """The instruction-set extensions that decide which reduced-precision path is fast."""

    bf16: bool  # native bfloat16 dot products (AVX512_BF16 or AMX-BF16; Arm's BF16)
    amx: bool  # AMX tiles (bf16 and int8 matrix units)
    vnni: bool  # int8 dot products (AVX512_VNNI or AVX_VNNI): fast int8 GEMMs
    capability: str  # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...


@dataclass(frozen=True)
class Mode:
    """How the acoustic model runs: the autocast precision and the quantization of its Transformer."""

    precision: str  # fp32 | bf16 | fp16 (autocast dtype; fp32 = none)
    quantize: str = "none"  # none | int8 (dynamic int8 Linear layers in the Transformer)

    def __str__(self) -> str:
        return "int8" if self.quantize == "int8" else self.precision


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's features, from /proc/cpuinfo's flags and torch's own dispatch level."""
    import torch

    flags = _cpuinfo_flags()
    amx = "amx_bf16" in flags or "amx_tile" in flags
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags or "bf16" in flags  # "bf16": Arm (Neoverse V1+)
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if not flags and mkldnn_bf16 is not None:  # no /proc/cpuinfo (macOS, containers): ask oneDNN
        try:
            bf16 = bool(mkldnn_bf16())
        except RuntimeError:
            bf16 = False
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    return CpuFeatures(bf16=bf16, amx=amx, vnni=vnni, capability=torch.backends.cpu.get_cpu_capability())


def _pinned() -> Mode | None:
    value = os.environ.get(MODE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in ("fp32", "bf16", "int8"):
        raise W2VError(f"{MODE_ENV}={value!r}: must be fp32, bf16 or int8")
    return Mode("fp32", "int8") if value == "int8" else Mode(value)


def auto_inference_mode(features: CpuFeatures | None = None) -> Mode:
    """The rule behind `w2v transcribe --precision auto` on a CPU.

    - native bf16 (AVX512_BF16 / AMX): bf16 autocast. Matrix products run 4-5x faster than fp32
      on such CPUs, and bf16 keeps fp32's exponent range, so CTC emissions change only by
      rounding (tests/test_cpu_modes.py bounds the transcript change).
    - otherwise fp32. int8 is faster on most x86 CPUs too, but its error depends on the model's
      weights, so it is an explicit choice (`--quantize int8`) until bench/cpu_accuracy.py has
      shown, for the models at hand, that greedy CER moves by less than 0.3 points.
    """
    pinned = _pinned()
    if pinned is not None:
        return pinned
    features = features or cpu_features()
    return Mode("bf16") if features.bf16 else Mode("fp32")


def auto_train_precision(features: CpuFeatures | None = None) -> str:
    """The rule behind `--precision auto` for `w2v pretrain` / `w2v finetune` on a CPU:
    bf16 autocast where the CPU has native bf16, fp32 elsewhere (see docs/train.md)."""
    pinned = _pinned()
    if pinned is not None:
        return "fp32" if pinned.quantize == "int8" else pinned.precision  # int8 is for inference only
    features = features or cpu_features()
    return "bf16" if features.bf16 else "fp32"


def check_cpu_bf16(option: str = "--precision bf16", features: CpuFeatures | None = None) -> None:
    """Refuse bf16 on a CPU that would only emulate it (slower than fp32, never what a user wants)."""
    features = features or cpu_features()
    if not features.bf16:
        raise W2VError(
            f"{option}: this CPU ({features.capability}) has no native bfloat16 (AVX512_BF16 or AMX), so "
            "bf16 would run emulated, slower than fp32; use --precision fp32, or --quantize int8 for speed"
        )


def train_precision(precision: str, device_type: str) -> str:
    """`--precision` of `w2v pretrain` / `w2v finetune` resolved for the device: fp32 | bf16 | fp16."""
    import torch

    if precision != "auto":
        if precision == "bf16" and device_type == "cpu" and not cpu_features().bf16 and _pinned() is None:
            from w2vcli.utils import warn

            warn("--precision bf16: this CPU has no native bfloat16 (AVX512_BF16 or AMX); "
                 "bf16 runs emulated there, slower than fp32")  # fmt: skip
        return precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return auto_train_precision()
