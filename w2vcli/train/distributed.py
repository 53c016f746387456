"""Processes and devices: one process per GPU (NCCL) or per CPU worker (gloo), or just this one.

`launch(fn, cfg)` runs `fn(cfg)` in every training process:
- under `torchrun` (RANK/WORLD_SIZE/LOCAL_RANK set) it calls `fn` directly: torchrun started
  the processes, across as many nodes as it was told (rendezvous through env://);
- with `--gpus N` (N > 1) or `--nproc N` (N > 1) it starts N local processes itself and sets
  RANK/WORLD_SIZE/LOCAL_RANK as torchrun would, meeting through a file store;
- otherwise it calls `fn` in this process.
Inside `fn`, `setup(cfg)` joins the process group and returns this process's `Dist`.
"""

from __future__ import annotations

import gc
import os
import signal
import tempfile
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from w2vcli.cpu import keep_freed_memory
from w2vcli.errors import W2VError, report_error

if TYPE_CHECKING:
    from w2vcli.train.config import TrainConfig


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(cfg: TrainConfig) -> Dist:
    """Join the process group (if several processes) and pick this process's device."""
    if cfg.gpus and not torch.cuda.is_available():
        raise W2VError(f"--gpus {cfg.gpus}: no CUDA device is available (use --nproc for CPU processes)")
    use_cuda = bool(cfg.gpus) or (_under_torchrun() and torch.cuda.is_available())
    if not _under_torchrun():
        device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        return Dist(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch_dist.is_initialized():
        # processes started by `launch` meet through a file (no free-port race); torchrun's through env://
        torch_dist.init_process_group("nccl" if use_cuda else "gloo", init_method=os.environ.get("W2V_DIST_INIT", "env://"),
                                rank=rank, world_size=world, device_id=device if use_cuda else None)
    return Dist(rank, world, local_rank, device)


def cleanup(finished: bool = True) -> None:
    """Leave the process group, in step. After a finished run every process first waits for the
    others, so that none tears its connections down while a peer may still be in its last
    collective; then the group's last owners (DDP) are collected while the interpreter is still
    whole, since a group freed during interpreter shutdown can abort the process. (A CI run saw
    rank 1 abort, "terminate called without an active exception", after its last update; not
    reproduced since, these guard against both causes.) After an error there is no waiting: a
    failed peer would never arrive."""
    if not torch_dist.is_initialized():
        return
    if finished:
        torch_dist.barrier()
    gc.collect()
    torch_dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.enabled:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


def sum_over_processes(sums, dist: Dist):
    """A dataclass of sums (a task's StepStats, validation's loss and `ErrorCounts`, nested
    dataclasses too) summed over all processes, in float64; the same dataclass back, each
    field of its own type (counts stay ints)."""
    t = torch.tensor(_flat(sums), dtype=torch.float64, device=dist.device)
    return _rebuilt(sums, iter(all_reduce_sum(t, dist).tolist()))


def _flat(sums) -> list[float]:
    values = [getattr(sums, f.name) for f in fields(sums)]
    return [x for v in values for x in (_flat(v) if is_dataclass(v) else [v])]


def _rebuilt(like, values):
    """A dataclass shaped like `like`, its numbers taken in order from `values`."""
    out = {}
    for f in fields(like):
        v = getattr(like, f.name)
        if is_dataclass(v):
            out[f.name] = _rebuilt(v, values)
        else:
            x = next(values)
            out[f.name] = round(x) if isinstance(v, int) else x
    return type(like)(**out)


def all_gather_object(obj, dist: Dist) -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world_size
    torch_dist.all_gather_object(out, obj)
    return out


def _worker(local_rank: int, world: int, store: str, fn, cfg: TrainConfig) -> None:
    os.environ.update(RANK=str(local_rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(world), W2V_DIST_INIT=f"file://{store}")
    keep_freed_memory()  # a spawned process: set again, as the `w2v` command did in its parent
    try:
        fn(cfg)
    except W2VError as exc:
        if local_rank == 0:
            report_error(exc)
        raise SystemExit(1) from None


def runs_here(cfg: TrainConfig) -> bool:
    """Whether `launch` runs training in this process (one device, or under torchrun)."""
    return _under_torchrun() or (cfg.gpus if cfg.gpus else cfg.nproc) <= 1
GRACE_SECONDS = 5  # after one process fails, the others' time to stop before SIGTERM, then SIGKILL


def launch(fn, cfg: TrainConfig):
    """Run `fn(cfg)` in each training process (see the module docstring)."""
    n = cfg.gpus if cfg.gpus else cfg.nproc
    if runs_here(cfg):
        return fn(cfg)
    if cfg.gpus and torch.cuda.device_count() < cfg.gpus:
        raise W2VError(f"--gpus {cfg.gpus}: only {torch.cuda.device_count()} CUDA device(s) visible")
    tmp = tempfile.TemporaryDirectory(prefix="w2v-dist-")
    ctx = mp.start_processes(_worker, args=(n, os.path.join(tmp.name, "store"), fn, cfg), nprocs=n,
                             join=False, start_method="spawn")
    # Ctrl-C reaches the children directly (same process group); a SIGTERM sent to this process
    # is passed on, so each child writes its checkpoint and exits cleanly.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, lambda *_: [os.kill(p, signal.SIGTERM) for p in ctx.pids()])
    try:
        while not ctx.join(grace_period=GRACE_SECONDS):
            pass
    except mp.ProcessExitedException as exc:
        raise W2VError(f"training process {exc.error_index} exited with code {exc.exit_code}") from None
    except mp.ProcessRaisedException as exc:  # not a W2VError: the traceback's last line
        last = str(exc).strip().splitlines()[-1]
        raise W2VError(f"training process {exc.error_index} failed: {last} (W2V_DEBUG=1 shows where)") from exc
    finally:
        tmp.cleanup()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
