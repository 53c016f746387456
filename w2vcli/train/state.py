"""Training checkpoints: everything needed to continue a run exactly, loadable with weights_only.

A checkpoint is the w2v model checkpoint of docs/architecture.md
(`{"format": "w2v", "kind", "model_config", "vocab", "model"}`, which `w2vcli.load_model`
reads) plus the training state:

    optimizer, scheduler, scaler   state dicts
    rng                            one entry per rank: python, numpy, torch CPU and CUDA states
    data                           {"epoch", "batch"}: the next batch to read
    update                         optimizer updates done
    train_config                   the resolved TrainConfig as a dict
    best                           best validation score so far (lower is better) or None

Only plain containers, numbers, strings and tensors go in, so `torch.load(weights_only=True)`
reads it; files are written to a temporary name and renamed, so `last.pt` is always complete.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open


def rng_state() -> dict:
    """This process's random states (python, numpy, torch CPU, CUDA) as weights_only-safe values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
    """Write atomically: temporary file in the same folder, fsync, rename. A failed write (a full
    disk, a lost mount) is a W2VError; the file already at `path` is left as it was."""
    try:
        with atomic_open(path, "wb") as f:
            torch.save(ckpt, f)
    except (OSError, RuntimeError) as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        raise W2VError(f"{path}: cannot write the checkpoint ({reason}); "
                       f"the previous {Path(path).name}, if any, is unchanged") from exc


def write_failure(exc: BaseException) -> str | None:
    """The OS's reason behind a failed write ("No space left on device"), found in the chain of
    exceptions (torch.save wraps the OSError in a RuntimeError), or None if it was not one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip()
    if "PytorchStreamWriter" in text or "file write failed" in text:
        return text.splitlines()[0]
    return None


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise W2VError(f"{path}: no checkpoint to resume from (run without --resume to start)")
    from w2vcli.model.checkpoint import safe_torch_load

    ckpt = safe_torch_load(path)  # weights_only; a truncated or foreign file is a W2VError saying so
    if not isinstance(ckpt, dict) or ckpt.get("format") != "w2v" or "update" not in ckpt:
        raise W2VError(f"{path}: not a w2v training checkpoint")
    return ckpt
