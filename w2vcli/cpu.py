"""How many CPU threads w2v's processes use for torch's intra-op parallelism.

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

import math
import os
from pathlib import Path

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
        import torch

        torch.set_num_threads(n)
