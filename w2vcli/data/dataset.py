"""Training data: manifest rows -> padded batches of audio, bucketed by length.

The pieces, in the order the training loop uses them:

    AudioDataset        one utterance per key; crops long audio at a random (but seeded) offset;
                        fine-tuning's augmentation (speed, noise: w2vcli/data/augment.py)
    BucketBatchSampler  length-sorted batches that fill `max_tokens` padded samples, shuffled
                        between batches per epoch from (seed, epoch), sharded across ranks, and
                        resumable at (epoch, batch index); with speed perturbation, made afresh
                        each epoch from that epoch's lengths
    collate             pads to the longest utterance: a `Batch` of wav[B,S], lengths[B], targets[B,L]
    make_loader         a DataLoader over the three with worker processes (`Loader.close` stops them)

All randomness is a pure function of (seed, epoch, utterance index), never of a worker's or
the process's random state, so a run resumed at (epoch, batch) sees exactly the batches and
crops it would have seen, whatever `num_workers` is.
"""

from __future__ import annotations

import contextlib
import signal
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from w2vcli.audio import SAMPLE_RATE, load_audio, resampled_length
from w2vcli.data.augment import Augment, speed_length, speed_perturb
from w2vcli.errors import W2VError
from w2vcli.messages import worker_died, worker_raised
from w2vcli.utils import warn


def row_length(row: dict) -> int:
    """Length in samples at 16 kHz of a manifest row (what `load_audio` returns)."""
    return resampled_length(int(row["num_samples"]), int(row["sample_rate"]), SAMPLE_RATE)


class AudioDataset(Dataset):
    """Utterances of a manifest; item keys are `(epoch, index)` so a crop depends on both.

    rows:            manifest rows (`read_manifest`)
    targets:         token ids per row for CTC, or None (pretraining)
    max_sample_size: crop longer audio to this many samples at a random offset (None: no crop)
    seed:            base seed of the crop offsets
    augment:         training audio only: speed perturbation, then the crop, then noise (w2vcli/data/augment.py)
    """

    def __init__(self, rows: list[dict], targets: list[list[int]] | None = None,
                 max_sample_size: int | None = None, seed: int = 0, augment: Augment | None = None):
        if targets is not None and len(targets) != len(rows):
            raise ValueError(f"{len(targets)} targets for {len(rows)} rows")
        self.rows = rows
        self.targets = targets
        self.max_sample_size = max_sample_size
        self.seed = seed
        self.augment = augment
        self.full_sizes = np.array([row_length(r) for r in rows], dtype=np.int64)  # [N] samples as recorded
        self.sizes = self._crop(self.full_sizes)  # [N] samples after cropping, without speed perturbation
        self._factors: tuple[int, np.ndarray | None] = (0, None)  # (epoch, [N] speed factors) last asked for

    @property
    def speed_perturbed(self) -> bool:
        """Whether lengths change from epoch to epoch (`epoch_sizes`)."""
        return self.augment is not None and bool(self.augment.speeds)

    def _crop(self, sizes: np.ndarray) -> np.ndarray:
        return np.minimum(sizes, self.max_sample_size) if self.max_sample_size else sizes

    def speed_factors(self, epoch: int) -> np.ndarray:
        """[N] every utterance's speed factor in `epoch` (all 1 without speed perturbation)."""
        if self._factors[0] != epoch or self._factors[1] is None:
            factors = self.augment.speed_factors(epoch, len(self.rows)) if self.speed_perturbed else np.ones(len(self.rows))
            self._factors = (epoch, factors)
        return self._factors[1]

    def epoch_sizes(self, epoch: int) -> np.ndarray:
        """[N] samples of each utterance as `epoch` delivers it: speed-perturbed, then cropped."""
        if not self.speed_perturbed:
            return self.sizes
        return self._crop(speed_length(self.full_sizes, self.speed_factors(epoch)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        row = self.rows[index]
        wav = load_audio(row["audio"])  # [S] float32
        size = int(self.sizes[index])
        if self.speed_perturbed:
            factor = float(self.speed_factors(epoch)[index])
            wav = speed_perturb(wav, factor)
            size = int(self._crop(speed_length(self.full_sizes[index], factor)))
        if len(wav) > size:  # crop; offset from (seed, epoch, index) only
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, len(wav) - size + 1))
            wav = wav[start:start + size]
        if self.augment is not None:
            wav = self.augment.add_noise(wav, epoch, index)
        item = {"index": index, "id": row["id"], "wav": torch.from_numpy(wav)}
        if self.targets is not None:
            item["target"] = torch.tensor(self.targets[index], dtype=torch.long)
        return item


@dataclass
class Batch:
    """Padded utterances, `collate`'s output (B utterances, S samples, L target units)."""

    ids: list[str]  # utterance ids
    index: torch.Tensor  # [B] row numbers in the manifest
    wav: torch.Tensor  # [B,S] float32, zero-padded
    lengths: torch.Tensor  # [B] samples
    targets: torch.Tensor | None = None  # [B,L] CTC unit ids, padded with 0 (the blank, never a target)
    target_lengths: torch.Tensor | None = None  # [B]

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        """The batch with its tensors on `device` (ids stay a list)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """For the DataLoader's pin_memory thread (CUDA): page-locked host tensors."""
        return self._map(torch.Tensor.pin_memory)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: fn(v) for k, v in tensors.items() if torch.is_tensor(v)})


def collate(items: list[dict]) -> Batch:
    """Pad a list of `AudioDataset` items into a `Batch` (targets for CTC only)."""
    lengths = torch.tensor([len(it["wav"]) for it in items], dtype=torch.long)  # [B]
    wav = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)  # [B,S]
    for b, it in enumerate(items):
        wav[b, : len(it["wav"])] = it["wav"]
    batch = Batch([it["id"] for it in items], torch.tensor([it["index"] for it in items], dtype=torch.long), wav,
                  lengths)
    if "target" in items[0]:
        target_lengths = torch.tensor([len(it["target"]) for it in items], dtype=torch.long)
        targets = torch.zeros(len(items), max(1, int(target_lengths.max())), dtype=torch.long)  # [B,L]
        for b, it in enumerate(items):
            targets[b, : len(it["target"])] = it["target"]
        batch.targets, batch.target_lengths = targets, target_lengths
    return batch


def make_batches(sizes: np.ndarray, max_tokens: int, seed: int = 0) -> list[list[int]]:
    """Length-sorted batches whose padded size (count × longest) stays within `max_tokens`.

    Equal lengths are ordered by a permutation drawn from `seed`, so which utterances share a
    batch varies with the seed but not from run to run.
    """
    ties = np.random.default_rng([seed, 1 << 20]).permutation(len(sizes))
    order = np.lexsort((ties, sizes))  # by size, then by the random tie-break
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order.tolist():
        size = int(sizes[i])
        if batch and max(longest, size) * (len(batch) + 1) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, size)
    if batch:
        batches.append(batch)
    return batches


@dataclass
class DataPosition:
    """Where a run is in its data: batch `batch` (0-based, next to be read) of epoch `epoch` (1-based)."""

    epoch: int = 1
    batch: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}


class BucketBatchSampler(Sampler):
    """Yields this rank's batches of `(epoch, index)` keys for one epoch, from a start position.

    The batches are fixed (`make_batches`); each epoch visits them in an order drawn from
    (seed, epoch), and rank r of `world_size` takes every world_size-th batch of that order
    (with `drop_last`, the remainder is dropped so that all ranks take the same number of steps;
    validation keeps it). With `epoch_sizes` (lengths that change with the epoch: speed
    perturbation) the batches are made afresh for each epoch from its lengths, so they stay
    within `max_tokens`; they are still a pure function of (seed, epoch).
    """

    def __init__(self, sizes: np.ndarray, max_tokens: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True,
                 epoch_sizes: Callable[[int], np.ndarray] | None = None):
        self.max_tokens, self.epoch_sizes = max_tokens, epoch_sizes
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.drop_last = drop_last
        self._fixed = make_batches(sizes, max_tokens, seed) if epoch_sizes is None else []
        self._cache: tuple[int, list[list[int]]] = (0, [])  # (epoch, its batches) with epoch_sizes
        self.epoch, self.start = 1, 0
        self.batches(1)  # too few batches is an error now, not at the first update

    def batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of `epoch`, before shuffling."""
        if self.epoch_sizes is None:
            batches = self._fixed
        elif self._cache[0] == epoch:
            return self._cache[1]
        else:
            batches = make_batches(self.epoch_sizes(epoch), self.max_tokens, self.seed)
            self._cache = (epoch, batches)
        if self.drop_last and len(batches) < self.world_size:
            raise W2VError(f"only {len(batches)} batches for {self.world_size} processes: "
                           "lower --max-tokens or use more data")
        return batches

    def set_position(self, epoch: int, start: int = 0) -> None:
        """The next `__iter__` yields epoch `epoch` from its batch `start` on."""
        self.epoch, self.start = epoch, start

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of `epoch`, in order."""
        batches = self.batches(epoch)
        order = np.arange(len(batches))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(batches))
        usable = len(order) // self.world_size * self.world_size if self.drop_last else len(order)
        return [batches[i] for i in order[self.rank:usable:self.world_size].tolist()]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start

    def __iter__(self):
        epoch = self.epoch
        for batch in self.epoch_batches(epoch)[self.start:]:
            yield [(epoch, i) for i in batch]


def filter_rows(rows: list[dict], min_size: int, max_size: int | None, name: str) -> list[dict]:
    """Drop rows shorter than `min_size` or (if `max_size`) longer, with one warning saying how many."""
    if not rows:
        raise W2VError(f"{name}: the manifest has no rows")
    limits = f"shorter than {min_size} samples" + (f" or longer than {max_size}" if max_size else "")
    keep = [r for r in rows if row_length(r) >= min_size and (max_size is None or row_length(r) <= max_size)]
    if len(keep) < len(rows):
        warn(f"{name}: skipping {len(rows) - len(keep)} of {len(rows)} utterances {limits}")
    if not keep:
        raise W2VError(f"{name}: no utterances left after length filtering ({limits})")
    return keep


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C, `timeout` and batch schedulers signal the whole process group: let the main
    # process finish its update and write a checkpoint instead of seeing its workers die
    # mid-batch (workers exit by themselves when the main process is gone). Since they ignore
    # SIGTERM, the main process must stop them itself on every way out: `Loader.close`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked since the fork (`Loader.__iter__`)


class Loader(DataLoader):
    """A DataLoader whose worker processes can be stopped at any moment with `close()`.

    Its workers ignore SIGINT and SIGTERM (`_worker_init`). Without `close()`, a run that stops
    on an error or a second Ctrl-C would wait forever at exit: Python's exit handler
    terminates child processes with SIGTERM and then joins them.
    """

    def __iter__(self):
        if not self.num_workers:
            return super().__iter__()
        # The workers are forked here. torch gives each a SIGTERM handler of its own before
        # `_worker_init` runs; a signal to the process group in between killed the worker ("exited
        # unexpectedly", seen under load). So they start with the stop signals blocked, and
        # `_worker_init` unblocks them once they are ignored; the main process gets its own at once.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            iterator = super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        live = [ref for ref in getattr(self, "_live", []) if ref() is not None]
        self._live = live + [weakref.ref(iterator)]
        return iterator

    def close(self) -> None:
        """Stop the worker processes of every iterator still open over this loader."""
        for ref in getattr(self, "_live", []):
            iterator = ref()
            if iterator is not None:
                stop_workers(iterator)
        self._live = []


def stop_workers(iterator) -> None:
    """Stop a DataLoader iterator's worker processes now: torch's own shutdown (each worker is
    asked to exit and joined for up to 5 s), then SIGKILL for any that is still alive."""
    workers = list(getattr(iterator, "_workers", ()))
    try:
        iterator._shutdown_workers()
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join(timeout=5)


def worker_error(exc: Exception) -> W2VError | None:
    """The one-line W2VError for an exception that came out of a DataLoader worker, else None.

    A W2VError raised in a worker comes back as a W2VError (torch keeps the type), its message
    wrapped in the worker's traceback; torch's text is read in one place, w2vcli/messages.py.
    """
    raised = worker_raised(exc)
    if raised is not None:
        if isinstance(exc, W2VError):  # its message names the file
            return W2VError(raised.removeprefix("w2vcli.errors.W2VError: "))
        return W2VError(f"a data loading worker failed: {raised} (W2V_DEBUG=1 shows where)")
    died = worker_died(exc)
    if died is not None:
        return W2VError(f"{died}; if the system ran out of memory, lower --num-workers")
    return None


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Exceptions out of DataLoader workers become their one-line W2VError (`worker_error`)."""
    try:
        yield
    except Exception as exc:
        error = worker_error(exc)
        if error is None:
            raise
        raise error from exc


def make_loader(dataset: AudioDataset, sampler: BucketBatchSampler, num_workers: int = 0,
                pin_memory: bool = False) -> Loader:
    """A DataLoader that draws nothing from the global torch RNG (it has its own generator)."""
    return Loader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if num_workers else None,
    )
