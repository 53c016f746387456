"""w2v's own checkpoint format (a `torch.save` dict that loads with `torch.load(weights_only=True)`):
    {"format": "w2v", "kind": "pretrain" | "ctc" | "encoder", "model_config": ModelConfig.to_dict(),
     "vocab": list[str] | None, "vocab_word_boundary", "vocab_units", "text_rules",
     "model": state_dict, ...training state added by the trainer}

The model checkpoint (`save_checkpoint`, `model_from_checkpoint`), the training state beside it
(`training_checkpoint`, `write_checkpoint`, `read_training_checkpoint`), the model config alone
(`read_model_config`). Reading any model file, whatever its format: w2vcli/model/load.py.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from w2vcli.errors import W2VError
from w2vcli.model.build import Model, build_model, load_state, model_kind
from w2vcli.model.config import ModelConfig
from w2vcli.model.safe_load import safe_torch_load
from w2vcli.text import WORD_BOUNDARY, TextRules, Vocabulary
from w2vcli.utils import atomic_open

# --- w2v's own format ----------------------------------------------------------------------------


def checkpoint_dict(model: Model, **extra: Any) -> dict:
    """A w2v checkpoint of `model`; `extra` entries (the trainer's state) are stored beside it."""
    vocab = getattr(model, "vocab", None)
    return {
        "format": "w2v",
        "kind": model_kind(model),
        "model_config": model.config.to_dict(),
        "vocab": list(vocab.tokens) if vocab is not None else None,
        # "|" for letters, None for characters of unspaced scripts and for sentencepiece pieces
        "vocab_word_boundary": vocab.word_boundary if vocab is not None else None,
        "vocab_units": vocab.units if vocab is not None else None,  # letters | chars | pieces
        "text_rules": model.text_rules.to_dict() if vocab is not None else None,  # w2vcli/text.py
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


@dataclass
class TrainingState:
    """What a training checkpoint holds beside the model, by name: what `--resume` restores."""

    optimizer: dict  # optimizer.state_dict()
    scheduler: dict  # the learning-rate schedule's state and "update"
    scaler: dict | None  # fp16's GradScaler state; None for fp32 and bf16 runs
    rng: list[dict]  # each process's random states (w2vcli/train/rng.py), by rank
    data: dict  # the data position (w2vcli/data/dataset.py DataPosition.state_dict: epoch, batch)
    update: int  # optimizer updates taken
    best: list[float] | None  # the validation score of best.pt (compared in order), None before one
    skipped: int = 0  # non-finite steps skipped so far (older checkpoints lack it)
    train_config: dict | None = None  # the run's resolved config (written for people; --resume reads config.toml)

    @classmethod
    def read(cls, ckpt: dict, where: str) -> TrainingState:
        """The state in a loaded checkpoint dict; a W2VError names an entry it lacks."""
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in ckpt]
        if missing:
            raise W2VError(f"{where}: training checkpoint lacks the {missing[0]!r} entry")
        return cls(**{f.name: ckpt[f.name] for f in fields(cls) if f.name in ckpt})


def training_checkpoint(model: Model, state: TrainingState) -> dict:
    """A training checkpoint (docs/architecture.md): the model's checkpoint and `state`, the
    optimizer's moved to the CPU (a CUDA run's last.pt loads on a CPU-only machine;
    `load_state_dict` moves it back to each parameter's device)."""
    entries = {f.name: getattr(state, f.name) for f in fields(state)}  # not asdict: no deep copy
    return checkpoint_dict(model, **{**entries, "optimizer": to_cpu(state.optimizer)})


def to_cpu(value: Any) -> Any:
    """`value` with every tensor inside its dicts, lists and tuples copied to the CPU."""
    if torch.is_tensor(value):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def save_checkpoint(path: str | os.PathLike, model: Model, **extra: Any) -> None:
    """Write a w2v checkpoint of `model` atomically; `extra` entries are stored beside the model."""
    write_checkpoint(path, checkpoint_dict(model, **extra))


def write_checkpoint(path: str | os.PathLike, ckpt: dict) -> None:
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
    """The OS's reason behind a failed write ("No space left on device"): the OSError in the
    chain of exceptions (torch.save raises it, or a RuntimeError whose context it is), or None
    if there is none."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen) or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def read_training_checkpoint(path: str | os.PathLike) -> tuple[dict, TrainingState]:
    """A run's last.pt, to resume from: the model's weights (a state dict) and the training state."""
    ckpt = _read_w2v_training(Path(path))
    return ckpt["model"], TrainingState.read(ckpt, str(path))


def _read_w2v_training(path: Path) -> dict:
    if not path.is_file():
        raise W2VError(f"{path}: no checkpoint to resume from (run without --resume to start)")
    ckpt = safe_torch_load(path)  # weights_only; a truncated or foreign file is a W2VError saying so
    if not isinstance(ckpt, dict) or ckpt.get("format") != "w2v" or "update" not in ckpt:
        raise W2VError(f"{path}: not a w2v training checkpoint")
    return ckpt


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a w2v checkpoint without reading its weights (memory-mapped), so a
    caller that loads the weights later (the trainer on --resume) reads them once."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        config = ckpt["model_config"]
    except Exception:  # damaged or foreign: the W2VError of a full read says which
        config = _read_w2v_training(Path(path))["model_config"]
    return ModelConfig.from_dict(config)


def model_from_checkpoint(ckpt: dict, where: str = "checkpoint", device: str | torch.device = "cpu") -> Model:
    """Rebuild a model from a loaded w2v checkpoint dict."""
    try:
        config = ModelConfig.from_dict(ckpt["model_config"])
        vocab = rules = None
        if ckpt.get("vocab"):
            vocab = vocab_from_checkpoint(ckpt)
            if ckpt.get("text_rules") is not None:
                rules = TextRules.from_dict(ckpt["text_rules"], f"{where}: text_rules")
        model = build_model(ckpt["kind"], config, vocab, rules)
    except KeyError as exc:
        raise W2VError(f"{where}: w2v checkpoint lacks the {exc} entry") from None
    load_state(model, ckpt["model"], where)
    return model.to(device).eval()


def vocab_from_checkpoint(ckpt: dict) -> Vocabulary:
    """The vocabulary of a w2v CTC checkpoint (older ones lack "vocab_units": a boundary-less one held pieces)."""
    tokens = list(ckpt["vocab"])
    boundary = ckpt.get("vocab_word_boundary", WORD_BOUNDARY)  # the oldest checkpoints hold letters
    units = ckpt.get("vocab_units") or ("letters" if boundary else "pieces")
    return Vocabulary(tokens, word_boundary=boundary, pieces=units == "pieces")
