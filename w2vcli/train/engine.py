"""The training loop shared by `w2v pretrain` and `w2v finetune`.

    train(cfg)  ->  launch one process per device  ->  Trainer(cfg, dist).run()

A `Task` (w2vcli/train/tasks.py) owns the model, the data and the loss; this file owns
everything else: the optimizer (fused AdamW, β=(0.9, 0.98), ε=1e-6, weight decay 0.01), the
learning-rate schedule, gradient accumulation, mixed precision, clipping, skipping
non-finite steps, validation, metrics, diagnostics (w2vcli/train/diagnostics.py), checkpoints,
exact resume, signals and DDP.

Losses are sums over the batch; the gradient is divided by the sample size summed over all
micro-batches and processes (masked frames for pretraining, utterances for CTC), as fairseq
does, so N processes with batch b take the same step as one process with batch N·b.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from w2vcli import cpu
from w2vcli.cpu import Precision, train_precision
from w2vcli.data.dataset import Batch, DataPosition, worker_errors
from w2vcli.errors import W2VError
from w2vcli.model.checkpoint import TrainingState, read_training_checkpoint, training_checkpoint, write_checkpoint
from w2vcli.train import distributed
from w2vcli.train.config import TrainConfig, save_config, to_dict
from w2vcli.train.diagnostics import Diagnostics, Finding
from w2vcli.train.distributed import Dist
from w2vcli.train.progress import ENGINE_SHOWN, MetricsLog, MetricsWindow, TrainProgress, UpdateOutput
from w2vcli.train.rng import rng_state, seed_everything, set_rng_state
from w2vcli.train.tasks import make_task
from w2vcli.utils import log, warn

def train(cfg: TrainConfig, init_model: torch.nn.Module | None = None) -> None:
    """Run a training job described by a resolved PretrainConfig/FinetuneConfig.

    `init_model`: the --init model, already loaded by the caller (`tasks.load_init`); a run in
    this process trains from it, processes started for --gpus/--nproc N load their own.
    """
    cfg.check()
    cfg = check_out(cfg)
    in_process = distributed.runs_here(cfg)  # never send a model to spawned processes
    distributed.launch(functools.partial(_run, init_model=init_model) if in_process else _run, cfg)


RUN_FILES = ("last.pt", "best.pt")  # an output folder holding one of these holds a run


def check_out(cfg: TrainConfig) -> TrainConfig:
    """Never replace a run by accident: without --resume, an --out that holds a run is refused;
    with --resume and no checkpoint yet, the run starts fresh (so a job script may always
    pass --resume)."""
    out = Path(cfg.out)
    if cfg.resume and not (out / "last.pt").is_file():
        if os.environ.get("RANK", "0") == "0":
            log(f"--resume: no checkpoint in {out} yet, starting a fresh run")
        return dataclasses.replace(cfg, resume=False)
    refuse_to_replace(out, cfg.resume)
    return cfg


def refuse_to_replace(out: Path, resume: bool) -> None:
    """A W2VError when `out` holds a run and `resume` is not asked for (checked before an --init
    checkpoint is loaded, and again by `train`)."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not resume:
        raise W2VError(f"{out} already holds a run ({', '.join(found)}): continue it with --resume, "
                       f"or start over with another --out (or after deleting {out})")


def _run(cfg: TrainConfig, init_model: torch.nn.Module | None = None) -> None:
    dist = distributed.setup(cfg)
    trainer, finished = None, False
    try:
        set_threads(cfg, dist)
        trainer = Trainer(cfg, dist, init_model)
        trainer.run()
        finished = True
    finally:
        if trainer is not None:
            trainer.close()  # the loader workers ignore signals: stop them on every way out
        # DDP holds the process group: let it go here, not while the interpreter shuts down
        trainer = None
        distributed.cleanup(finished)


def set_threads(cfg: TrainConfig, dist: Dist) -> None:
    """Intra-op threads of this training process: w2vcli/cpu.py; --threads 0 leaves torch's."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE") or dist.world_size)  # on this machine
    cpu.set_threads(cpu.training_threads(cfg.threads, processes, cfg.num_workers, dist.device.type))


FUSED_DEVICES = ("cpu", "cuda")  # where torch has a fused (one kernel per step) AdamW


def make_optimizer(params: list[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.98),
                   eps: float = 1e-6, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """The AdamW that training runs: torch's fused implementation where every parameter allows it
    (floating point on a CPU or CUDA device), otherwise the default (for-each) one.

    The fused step reads and writes each parameter and its two moments once instead of once per
    elementwise op (one CPU core: BASE's 95 M parameters step in 125 ms instead of 480 ms). It
    rounds differently from the for-each step, so runs are reproducible with either, not across.
    A resumed run keeps the implementation its checkpoint was saved with (torch restores the
    saved param-group options).
    """
    params = list(params)
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                             fused=fused or None)


class StopRequested:
    """Turns SIGTERM / SIGINT into a flag checked after each update (a second Ctrl-C aborts)."""

    def __init__(self):
        self.signal: str | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, _frame):
        if self.signal == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    """One training process: `run()` takes optimizer updates until --max-updates, validating,
    logging and writing checkpoints on the way."""

    def __init__(self, cfg: TrainConfig, dist: Dist, init_model: torch.nn.Module | None = None):
        self.cfg, self.dist = cfg, dist
        self.out = Path(cfg.out)
        seed_everything(cfg.seed)  # the same initial weights on every rank
        self.task = make_task(cfg, dist, init_model)
        self.model = self.task.model.to(dist.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                        eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        self.schedule = cfg.schedule()
        precision = train_precision(cfg.precision, dist.device.type)  # "auto" -> what this device runs fastest
        self.dtype = precision.dtype
        if precision is Precision.BF16 and dist.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise W2VError("--precision bf16: this GPU has no bfloat16 support; use fp16")
        self.scaler = torch.amp.GradScaler(dist.device.type, init_scale=2.0**7, enabled=precision is Precision.FP16)
        self.update, self.best, self.position = 0, None, DataPosition()
        self.skipped = 0  # non-finite steps skipped, whole run
        self.bad_in_row = 0  # non-finite steps in a row (fp16 overflows excepted)
        self.train_loader, self.sampler = self.task.train_loader()
        self.valid_loader = self.task.valid_loader() if cfg.valid else None
        if cfg.resume:
            self.load(self.out / "last.pt")
        else:
            seed_everything(cfg.seed + 1000 * dist.rank)  # dropout and masking differ between ranks
        self.ddp = self.model
        if dist.enabled:
            self.ddp = DDP(self.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                           find_unused_parameters=self.task.find_unused_parameters)
        if dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".*.tmp"):  # a write cut short by SIGKILL
                stale.unlink()
            save_config(cfg, self.out / "config.toml")
            self.task.save_assets(self.out)
        # a fresh run starts a fresh metrics.jsonl; a resumed one keeps the rows up to its checkpoint
        self.metrics = MetricsLog(self.out / "metrics.jsonl", dist.main,
                                  truncate_after=self.update if cfg.resume else -1)
        self.diagnostics = Diagnostics(cfg, self.model.config, self.metrics.previous)
        self._report(self.task.findings)  # found before update 1 (said again on resume, recorded once)

    def close(self) -> None:
        """Stop the DataLoader worker processes (at the end, and after an error or a second Ctrl-C)."""
        for loader in (self.train_loader, self.valid_loader):
            if loader is not None:
                loader.close()

    # --- checkpoints (their format: w2vcli/model/checkpoint.py) -----------------------------------
    def load(self, path: Path) -> None:
        weights, state = read_training_checkpoint(path)
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state.optimizer)
        if state.scaler and self.scaler.is_enabled():  # fp16 both then and now
            self.scaler.load_state_dict(state.scaler)
        self.update, self.best, self.skipped = state.update, state.best, state.skipped
        self.position = DataPosition(**state.data)
        rngs, dist = state.rng, self.dist
        if len(rngs) == dist.world_size:
            set_rng_state(rngs[dist.rank])
        else:
            warn(f"{path}: saved by {len(rngs)} process(es), resuming with {dist.world_size}: "
                 "random streams are reseeded and the epoch's batches are dealt out anew, "
                 "so the run will not repeat exactly")
            seed_everything(self.cfg.seed + 1000 * dist.rank + self.update)
        if dist.main:
            log(f"resuming from {path}: update {self.update}, epoch {self.position.epoch}, "
                f"batch {self.position.batch}")

    def save(self, best: bool = False) -> None:
        """Write last.pt (and best.pt). A collective: every rank calls it, rank 0 writes."""
        rngs = distributed.all_gather_object(rng_state(), self.dist)
        if not self.dist.main:
            return
        ckpt = training_checkpoint(self.model, TrainingState(
            optimizer=self.optimizer.state_dict(), scheduler={**self.schedule.state_dict(), "update": self.update},
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            rng=rngs, data=self.position.state_dict(), update=self.update, best=self.best,
            skipped=self.skipped, train_config=to_dict(self.cfg)))
        write_checkpoint(self.out / "last.pt", ckpt)
        if best:
            write_checkpoint(self.out / "best.pt", ckpt)

    # --- one update ------------------------------------------------------------------------------
    def _fetch(self) -> Batch | None:
        with worker_errors():  # from a worker: one line naming what failed
            return next(self._iter, None)

    def _next_batch(self) -> Batch:
        batch = self._fetch()
        if batch is None:  # end of epoch
            self.position = DataPosition(self.position.epoch + 1, 0)
            self.sampler.set_position(self.position.epoch, 0)
            self._iter = iter(self.train_loader)
            batch = self._fetch()
            if batch is None:
                raise W2VError(f"{self.cfg.train}: no batches (is --max-tokens smaller than every utterance?)")
        self.position.batch += 1
        return batch

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.dtype)

    def train_step(self) -> UpdateOutput:
        """Accumulate `update_freq` batches, then take (or skip) one optimizer step."""
        cfg, dist = self.cfg, self.dist
        t0 = time.perf_counter()
        data_time, stats = 0.0, None
        self.model.train()
        for i in range(cfg.update_freq):
            t = time.perf_counter()
            batch = self._next_batch().to(dist.device, non_blocking=True)
            data_time += time.perf_counter() - t
            last = i == cfg.update_freq - 1
            sync = contextlib.nullcontext() if last or not dist.enabled else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    out = self.task.step(self.ddp, batch, self.update)
                self.scaler.scale(out.loss).backward()
            stats = out.stats if stats is None else stats + out.stats
        # totals over micro-batches and processes; the step is divided by the total sample size
        stats = distributed.sum_over_processes(stats, dist)
        self.scaler.unscale_(self.optimizer)
        scale = dist.world_size / max(stats.sample_size, 1.0)  # DDP averaged over ranks
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)
        self.task.before_step(self.model, self.update)  # e.g. drop frozen parameters' gradients
        max_norm = cfg.clip_norm if cfg.clip_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        stepped = math.isfinite(stats.loss) and math.isfinite(grad_norm)
        if stepped:
            lr = self.schedule(self.update + 1)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.scaler.step(self.optimizer)
            self.update += 1
            self.bad_in_row = 0
        else:
            self._skip(stats, grad_norm, batch)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return UpdateOutput(stats, stepped, grad_norm if math.isfinite(grad_norm) else 0.0,
                            data_time, time.perf_counter() - t0 - data_time)

    def _skip(self, stats, grad_norm: float, batch: Batch) -> None:
        """Count a non-finite step; too many in a row stop the run."""
        self.skipped += 1
        loss_ok = math.isfinite(stats.loss)
        overflow = self.scaler.is_enabled() and loss_ok  # fp16 overflow: the scaler backs off
        self.bad_in_row += 0 if overflow else 1
        if self.dist.main and not overflow:
            warn(f"update {self.update + 1}: non-finite {'loss' if not loss_ok else 'gradient'} "
                 f"(batch {', '.join(batch.ids[:3])}...), step skipped ({self.skipped} so far)")
        if self.bad_in_row >= self.cfg.max_bad_updates:
            raise W2VError(f"{self.bad_in_row} non-finite steps in a row at update {self.update}: "
                           "lower --lr, use --precision fp32, or check the data for silent/corrupt audio")

    # --- validation ------------------------------------------------------------------------------
    def validate(self):
        """The task's validation, on its own random stream (fixed masks and distractors),
        leaving the training stream untouched."""
        devices = [self.dist.device] if self.dist.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), self._autocast():
            torch.manual_seed(self.cfg.seed)
            self.model.eval()
            with worker_errors():
                result = self.task.validate(self.model, self.valid_loader)
        self.model.train()
        return result

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        cfg, dist = self.cfg, self.dist
        self.sampler.set_position(self.position.epoch, self.position.batch)
        self._iter = iter(self.train_loader)
        save_every = cfg.save_interval or cfg.valid_interval
        window = MetricsWindow()
        start_update = self.update
        with StopRequested() as stop, TrainProgress(cfg.max_updates, self.update, dist.main) as bar:
            while self.update < cfg.max_updates:
                out = self.train_step()
                window.add(out)
                bar.advance(self.update, out.bar(), self.schedule(self.update))
                if not out.stepped:
                    continue
                stopping = self._agree(stop.signal is not None)
                done = self.update >= cfg.max_updates
                if self.update % cfg.log_interval == 0 or done or stopping:
                    row = window.row(self.update, self.schedule(self.update), self.skipped,
                                     self.position.epoch, self.task.log_fields(self.update))
                    self._write_row(row, bar, {**self.task.shown, **ENGINE_SHOWN})
                    self._report(self.diagnostics.check_train(row, window.stats))
                    window = MetricsWindow()
                best = False
                if cfg.valid and (self.update % cfg.valid_interval == 0 or done):
                    best = self._validate_and_log(bar)
                if best or done or stopping or self.update % save_every == 0:
                    self.save(best=best)
                if stopping:
                    if dist.main:
                        log(f"{stop.signal or 'signal'}: stopped at update {self.update}, checkpoint "
                            f"{self.out / 'last.pt'} written; continue with --resume")
                    return
        if dist.main and self.update == start_update:
            log(f"nothing to do: already at update {self.update} of --max-updates {cfg.max_updates}")

    def _agree(self, flag: bool) -> bool:
        """True on every rank if any rank got a stop signal."""
        if not self.dist.enabled:
            return flag
        t = torch.tensor([float(flag)], device=self.dist.device)
        return bool(distributed.all_reduce_sum(t, self.dist).item() > 0)

    def _write_row(self, row: dict, bar: TrainProgress, shown: dict[str, str]) -> None:
        self.metrics.write(row)
        bar.print_row(row, shown)

    def _validate_and_log(self, bar: TrainProgress) -> bool:
        result = self.validate()
        best = self.best is None or list(result.score) < list(self.best)
        if best:
            self.best = result.score
        self._write_row({"update": self.update, **{f"valid_{k}": v for k, v in result.metrics.items()},
                         "valid_best": best}, bar, {f"valid_{k}": fmt for k, fmt in result.shown.items()})
        self._report(self.diagnostics.check_valid(self.update, result.metrics))
        return best

    def _report(self, findings: list[Finding]) -> None:
        """Each diagnostic as one warning line and one metrics.jsonl record (the first time only)."""
        if not self.dist.main:
            return
        for finding in findings:
            warn(finding.message)
            if finding.name not in self.metrics.recorded:
                self.metrics.write(finding.row())
                self.metrics.recorded.add(finding.name)
