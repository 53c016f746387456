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

Threads. How many CPU threads w2v's processes use for torch's intra-op parallelism.

torch's default is one thread per physical core of the whole machine, whatever share of it the
process may use. Under a CPU set (taskset, Slurm, `docker --cpuset-cpus`) or a CPU quota
(`docker --cpus`, Kubernetes limits), or with several processes on one machine (`--nproc`,
DataLoader workers, the decoder processes of `transcribe --jobs`), the threads then outnumber
the cores and OpenMP's spin-waiting makes every process many times slower.

So w2v chooses (`--threads` on pretrain / finetune / transcribe overrides; 0 keeps torch's):
- `OMP_NUM_THREADS` when the user set it (per process, as torchrun reads it);
- otherwise the usable cores, one per physical core as torch counts them but only those of the
  affinity mask, capped by a cgroup CPU quota, divided among the training processes on this
  machine; on CUDA, where the loader workers are the CPU's real work, each worker's core comes
  out of the training process's share. On the CPU the workers only decode audio between steps,
  so they run one thread each (torch's choice for workers) and take no share.
Two separate runs on one machine cannot see each other: give each `--threads` (cores / 2), or
`taskset` them onto different cores.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from w2vcli.errors import W2VError


class Precision(StrEnum):
    """What the model computes in (`--precision`); AUTO is resolved per device before use."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"  # CUDA; training with dynamic loss scaling

    @property
    def dtype(self):
        """The autocast dtype (None: float32 throughout); the one precision -> dtype table."""
        # lazy: cpu.py is read before torch loads (option checks, `w2v --help`): torch (1.3 s) only when asked
        import torch

        if self is Precision.AUTO:
            raise ValueError("precision auto has no dtype: resolve it for the device first")
        return {Precision.FP32: None, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[self]


class Quantize(StrEnum):
    """How the Transformer's Linear layers run (`--quantize`); AUTO as precision auto decides."""

    AUTO = "auto"
    NONE = "none"
    INT8 = "int8"  # dynamic int8 Linear layers (CPU)


PRECISIONS = tuple(Precision)  # members are strings: "bf16" in PRECISIONS, ", ".join(PRECISIONS)
QUANTIZE = tuple(Quantize)
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

    precision: Precision  # fp32 | bf16 | fp16 (autocast dtype; fp32 = none), never auto
    quantize: Quantize = Quantize.NONE  # none | int8 (dynamic int8 Linear layers in the Transformer)

    def __post_init__(self) -> None:  # the strings a caller passes become the types (a bad one: ValueError)
        object.__setattr__(self, "precision", Precision(self.precision))
        object.__setattr__(self, "quantize", Quantize(self.quantize))
        if self.precision is Precision.AUTO or self.quantize is Quantize.AUTO:
            raise ValueError(f"a Mode is resolved: {self.precision} / {self.quantize}")

    def __str__(self) -> str:
        return str(Quantize.INT8) if self.quantize is Quantize.INT8 else str(self.precision)


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
    # lazy: cpu.py is read before torch loads (option checks, `w2v --help`): torch (1.3 s) only when asked
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


def train_precision(precision: str, device_type: str) -> Precision:
    """`--precision` of `w2v pretrain` / `w2v finetune` resolved for the device: fp32 | bf16 | fp16."""
    # lazy: cpu.py is read before torch loads (option checks, `w2v --help`): torch (1.3 s) only when asked
    import torch

    if precision != "auto":
        if precision == "bf16" and device_type == "cpu" and not cpu_features().bf16 and _pinned() is None:
            # lazy: rich (60 ms, through utils) only when a warning is shown
            from w2vcli.utils import warn

            warn("--precision bf16: this CPU has no native bfloat16 (AVX512_BF16 or AMX); "
                 "bf16 runs emulated there, slower than fp32")  # fmt: skip
        return Precision(precision)
    if device_type == "cuda":
        return Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP16
    return Precision(auto_train_precision())


# --- threads ------------------------------------------------------------------------------------
AUTO = -1  # --threads not given
TORCH_DEFAULT = 0  # --threads 0: leave torch's default alone


def usable_cores() -> int:
    """Physical cores this process may run on: the cores of its affinity mask (the hyperthreads
    of one core count once, as in torch's default), capped by its cgroup's CPU quota."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    n = physical_cores(cpus) or len(cpus)
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def physical_cores(cpus: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many distinct physical cores the logical CPUs `cpus` belong to (0 if sysfs does not say)."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            return 0
    return len(cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup allows per period (cgroup v2 `cpu.max`, v1 CFS quota), or None."""
    for cpu_max in (root / _own_cgroup() / "cpu.max", root / "cpu.max"):
        try:
            quota, period = cpu_max.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup() -> str:
    """This process's cgroup v2 path ("0::/path" in /proc/self/cgroup), relative."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].lstrip("/")
    except OSError:
        pass
    return ""


def user_threads() -> int | None:
    """OMP_NUM_THREADS when the user set it to a positive number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def training_threads(requested: int, processes: int, workers: int, device: str) -> int:
    """Threads for one training process: `requested` (--threads) when given, else the choice
    above. 0 means "leave torch's default"."""
    if requested != AUTO:
        return requested
    if user_threads():
        return user_threads()
    share = usable_cores() // max(1, processes)
    if device == "cuda":
        share -= workers
    return max(1, share)


def inference_threads(requested: int, decoder_processes: int) -> int:
    """Threads for `w2v transcribe`'s model: the usable cores less one per beam-search decoder
    process (`--jobs`, when more than one), or `requested` / OMP_NUM_THREADS."""
    if requested != AUTO:
        return requested
    if user_threads():
        return user_threads()
    return max(1, usable_cores() - (decoder_processes if decoder_processes > 1 else 0))


def set_threads(n: int) -> None:
    """torch.set_num_threads(n) unless n is 0 (torch's default)."""
    if n > 0:
        # lazy: cpu.py is read before torch loads (option checks, `w2v --help`): torch (1.3 s) only when asked
        import torch

        torch.set_num_threads(n)


# --- memory ---------------------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
KEEP_MEMORY_ENV = "W2V_KEEP_MEMORY"  # "0": leave glibc's malloc as it is


def keep_freed_memory() -> bool:
    """Let large tensors reuse freed heap memory instead of fresh pages from the kernel (glibc).

    PyTorch's CPU tensors come from malloc, and glibc serves blocks over its mmap threshold (it
    rises to at most 32 MiB; BASE's feature encoder makes 26-65 MiB activations) with a new
    mapping that is unmapped on free, so such tensors are faulted in and zeroed by the kernel
    again at every step. With this, malloc serves everything from its heap (no mmap) and keeps up
    to 2 GiB of freed memory for the next tensors instead of returning it, as a caching allocator
    (and ONNX Runtime's arena) does. `python -m bench.allocator --preset base --rounds 2 --steps 4`
    (2-core development machine, 2 threads; child processes alternately with and without; three
    runs): pretraining updates of varying shapes 1.11-1.20x faster, transcription of the
    real-mini files 1.04-1.14x, about half the kernel time, peak resident size 1-3 % higher.
    The memory is the process's until it exits.

    `W2V_KEEP_MEMORY=0` leaves glibc as it is; so does any MALLOC_* variable (the user tunes
    glibc), a preloaded allocator (jemalloc, tcmalloc), or another C library. Returns whether it
    was set.
    """
    if not sys.platform.startswith("linux") or "LD_PRELOAD" in os.environ:
        return False
    if os.environ.get(KEEP_MEMORY_ENV) == "0" or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has no mallopt parameters)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
