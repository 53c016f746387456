"""Saving and loading models: w2v's own checkpoints, Hugging Face directories, fairseq `.pt` files.

w2v checkpoint (a `torch.save` dict that loads with `torch.load(weights_only=True)`):

    {"format": "w2v", "kind": "pretrain" | "ctc", "model_config": ModelConfig.to_dict(),
     "vocab": list[str] | None, "model": state_dict, ...training state added by the trainer}

This module writes and reads every checkpoint w2v handles: the model checkpoint
(`save_checkpoint`, `load_model`), the training state beside it (`training_checkpoint`,
`write_checkpoint`, `read_training_checkpoint`), the model config alone (`read_model_config`),
and reads Hugging Face directories (through w2vcli.model.hf_dir) and fairseq files.

`load_model(path)` (`load_ctc_model(path)` where only a CTC model will do) also reads
- a Hugging Face `save_pretrained` directory of Wav2Vec2ForPreTraining / Wav2Vec2ForCTC /
  Wav2Vec2Model (w2vcli.model.hf_dir: which files, which layouts, what is refused);
- a fairseq checkpoint such as `wav2vec_small.pt` (pretraining) or `wav2vec_small_960h.pt`
  (CTC), with the letter dictionary from `dict.ltr.txt` beside it or an explicit `vocab`; without
  either, a 32-output head is read with LibriSpeech's letter order (that of every released fairseq
  letter model), with a warning, and any other head is refused.

No file is ever unpickled with arbitrary globals: torch's `weights_only` unpickler is used, and
the configuration objects inside fairseq checkpoints (argparse.Namespace, omegaconf containers,
fairseq meters) are rebuilt as inert stand-ins and read as plain dicts. A pickle naming anything
else (os.system, builtins.eval, ...) is refused with a W2VError before it can run.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model
from w2vcli.text import SPECIALS, WORD_BOUNDARY, TextRules, Vocabulary
from w2vcli.utils import atomic_open

# fairseq's dict.ltr.txt for LibriSpeech (letters by falling frequency), after the 4 specials
LIBRISPEECH_LETTERS = list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ")

Model = Wav2Vec2ForPreTraining | Wav2Vec2ForCTC | Wav2Vec2Model


def librispeech_vocab() -> Vocabulary:
    """The 32-token letter vocabulary of the released LibriSpeech CTC models (HF and fairseq)."""
    return Vocabulary(list(SPECIALS) + LIBRISPEECH_LETTERS)


def model_kind(model: Model) -> str:
    if isinstance(model, Wav2Vec2ForCTC):
        return "ctc"
    if isinstance(model, Wav2Vec2ForPreTraining):
        return "pretrain"
    if isinstance(model, Wav2Vec2Model):
        return "encoder"
    raise TypeError(f"not a w2v model: {type(model).__name__}")


def build_model(kind: str, config: ModelConfig, vocab: Vocabulary | None = None,
                text_rules: TextRules | None = None) -> Model:  # fmt: skip
    """A freshly initialised model of `kind` ("pretrain", "ctc" needs `vocab`, "encoder")."""
    if kind == "pretrain":
        return Wav2Vec2ForPreTraining(config)
    if kind == "ctc":
        if vocab is None:
            raise W2VError("a CTC model needs a vocabulary")
        return Wav2Vec2ForCTC(config, vocab, text_rules)
    if kind == "encoder":
        return Wav2Vec2Model(config)
    raise W2VError(f"unknown model kind {kind!r} (pretrain, ctc or encoder)")


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


def training_checkpoint(model: Model, optimizer: torch.optim.Optimizer, **state: Any) -> dict:
    """A training checkpoint (docs/architecture.md): the model's checkpoint, the optimizer's state
    moved to the CPU (a CUDA run's last.pt loads on a CPU-only machine; `load_state_dict` moves it
    back to each parameter's device), and the rest of `state` (scheduler, scaler, rng, data,
    update, best, skipped, train_config) as given."""
    return checkpoint_dict(model, optimizer=to_cpu(optimizer.state_dict()), **state)


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


def read_training_checkpoint(path: str | os.PathLike) -> dict:
    """A run's last.pt, to resume from: the model's checkpoint and the training state."""
    path = Path(path)
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
    except Exception:  # damaged or foreign: read_training_checkpoint's W2VError says which
        config = read_training_checkpoint(path)["model_config"]
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


def load_state(model: torch.nn.Module, state: dict, where: str, allow_missing: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not any(k.endswith(a) for a in allow_missing)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise W2VError(
            f"{where}: weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise W2VError(f"{where}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


# --- loading anything ----------------------------------------------------------------------------


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", vocab: Vocabulary | str | os.PathLike | None = None
) -> Model:
    """Load a model for inference or further training, in eval mode, on `device`.

    `path` is a w2v checkpoint, a Hugging Face `save_pretrained` directory or a fairseq `.pt`.
    Returns `Wav2Vec2ForCTC` (with `.vocab`), `Wav2Vec2ForPreTraining` or `Wav2Vec2Model`; an
    `.onnx` file written by `w2v export --to onnx` gives an `OnnxCTCModel` (for transcription).
    `vocab` (a Vocabulary or a path to vocab.json / dict.ltr.txt) overrides the vocabulary found
    with the checkpoint, or supplies one where none is found.
    """
    path = Path(path)
    if path.suffix == ".onnx" and path.is_file():  # an exported CTC model (w2vcli/model/onnx.py), inference only
        from w2vcli.model.onnx import load_onnx

        return load_onnx(path, Vocabulary.load(vocab) if isinstance(vocab, (str, os.PathLike)) else vocab).to(device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise W2VError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        from w2vcli.model.hf_dir import load_hf_dir

        model = load_hf_dir(path, vocab)  # reads a vocab.json path with the directory's tokenizer settings
    elif path.is_file():
        if isinstance(vocab, (str, os.PathLike)):
            vocab = Vocabulary.load(vocab)
        ckpt = safe_torch_load(path)
        if not isinstance(ckpt, dict):
            raise W2VError(f"{path}: not a model checkpoint (holds a {type(ckpt).__name__})")
        if ckpt.get("format") == "w2v":
            model = model_from_checkpoint(ckpt, str(path))
            if vocab is not None and isinstance(model, Wav2Vec2ForCTC):
                check_vocab(vocab, model.head.out_features, str(path))
                model.vocab = vocab
        elif "model" in ckpt and ("cfg" in ckpt or "args" in ckpt):
            from w2vcli.model.fairseq import model_from_fairseq

            model = model_from_fairseq(ckpt, path, vocab)
        else:
            raise W2VError(f"{path}: neither a w2v nor a fairseq checkpoint (keys: {sorted(ckpt)[:8]})")
    else:
        raise W2VError(f"model not found: {path}")
    return model.to(device).eval()


def load_ctc_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", vocab: Vocabulary | str | os.PathLike | None = None
):
    """`load_model` for transcription: a `Wav2Vec2ForCTC` or an `OnnxCTCModel` (both with `.vocab`
    and `.text_rules`), or a W2VError naming what `path` holds instead."""
    model = load_model(path, device, vocab)
    if isinstance(model, Wav2Vec2ForCTC) or getattr(model, "runtime", "torch") == "onnxruntime":
        return model
    holds = {"pretrain": "a pretraining model", "encoder": "an encoder without a head"}[model_kind(model)]
    raise W2VError(f"{path}: {holds} ({type(model).__name__}), not a CTC model: it has no vocabulary or "
                   f"output layer; fine-tune it first (`w2v finetune --init {path}`)")  # fmt: skip


def check_vocab(vocab: Vocabulary, size: int, where: str) -> None:
    if len(vocab) != size:
        raise W2VError(f"{where}: the vocabulary has {len(vocab)} tokens but the CTC head has {size} outputs")


# --- safe unpickling -----------------------------------------------------------------------------

# modules whose classes may appear in fairseq checkpoints as configuration or logging state;
# they are never imported: an inert stand-in is built instead.
_STUB_MODULES = ("fairseq", "omegaconf", "typing", "argparse", "numpy", "enum", "collections", "pathlib", "datetime")
_STUB_BUILTINS = {"dict", "list", "set", "frozenset", "tuple", "int", "float", "str", "bool", "bytes", "object",
                  "complex", "slice", "range", "type", "NoneType"}  # fmt: skip
_UNSUPPORTED = re.compile(r"GLOBAL (\S+) was not an allowed global")
_BLOCKED = re.compile(r"unsupported GLOBAL (\S+) whose module")


class _Stub:
    """Stand-in for a class or function named in a pickle: records its arguments and state, runs nothing."""

    _name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<stub {self._name}>"


def _stub_for(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_Stub,), {"_name": name})


def _may_stub(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module == "builtins":
        return attr in _STUB_BUILTINS
    return module.split(".")[0] in _STUB_MODULES


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(weights_only=True)` that also reads fairseq's config objects (as inert stand-ins).

    Anything that would import a module outside the allow-list raises a W2VError naming it.
    """
    path = Path(path)
    zipped = _check_torch_file(path)
    stubs: dict[str, type] = {}
    try:
        for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
            if not _may_stub(name):
                raise _refuse(path, name)
            stubs[name] = _stub_for(name)
    except (ValueError, RuntimeError, pickle.UnpicklingError, KeyError, OSError):
        pass  # legacy (non-zip) file or unreadable: the loop below finds names one by one
    for _ in range(500):
        try:
            with torch.serialization.safe_globals([(cls, name) for name, cls in stubs.items()]), \
                    warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # a random file
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            message = str(exc)
            m = _UNSUPPORTED.search(message)
            if m is None:
                blocked = _BLOCKED.search(message)
                if blocked:
                    raise _refuse(path, blocked.group(1)) from None
                reason = message.rpartition("WeightsUnpickler error:")[2].strip().split("\n\n")[0].strip()
                raise W2VError(f"{path}: not a checkpoint, or a damaged one ({reason or 'unreadable pickle'})") from None
            name = m.group(1)
            if "." not in name:
                name = f"builtins.{name}"
            if name in stubs or not _may_stub(name):
                raise _refuse(path, name) from None
            stubs[name] = _stub_for(name)
        except (RuntimeError, EOFError, OSError) as exc:
            what = "a truncated or damaged checkpoint" if zipped else "not a checkpoint, or a damaged one"
            raise W2VError(f"{path}: {what} ({str(exc).strip() or type(exc).__name__})") from None
    raise W2VError(f"refusing to load {path}: too many unknown objects inside")


# first bytes of audio files, to say so when one is given as the model (whisper's argument order)
_AUDIO_MAGIC = ((b"fLaC", "FLAC"), (b"RIFF", "WAV"), (b"OggS", "Ogg"), (b"ID3", "MP3"), (b"\xff\xfb", "MP3"),
                (b"\xff\xf3", "MP3"), (b"\xff\xf2", "MP3"), (b"FORM", "AIFF"))


def _check_torch_file(path: Path) -> bool:
    """Say plainly what a file is when it cannot be a torch checkpoint (a zip archive, or a
    pickle for files saved before torch 1.6). Returns True for a zip archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise W2VError(f"{path}: cannot read ({exc.strerror})") from None
    if not head:
        raise W2VError(f"{path}: empty file (0 bytes), not a checkpoint")
    if head.startswith(b"PK\x03\x04"):
        return True
    if head.startswith(b"\x80"):  # pickle protocol 2 or later
        return False
    audio = next((kind for magic, kind in _AUDIO_MAGIC if head.startswith(magic)), None)
    if audio:
        raise W2VError(f"{path}: a {audio} audio file, not a model checkpoint "
                       "(`w2v transcribe` takes the model first: MODEL AUDIO...)")
    raise W2VError(f"{path}: not a checkpoint (neither a torch zip archive nor a pickle)")


def _refuse(path: Path, name: str) -> W2VError:
    return W2VError(
        f"refusing to load {path}: its pickle refers to {name}, which could run code when loaded; "
        "w2v only loads weights, configs and vocabularies (never arbitrary objects)"
    )
