"""Reading torch files without running code: torch's `weights_only` unpickler, with the
configuration objects inside fairseq checkpoints (argparse.Namespace, omegaconf containers,
fairseq meters) rebuilt as inert stand-ins (`Stub`, read as plain dicts by w2vcli/model/fairseq.py).
A pickle naming anything else (os.system, builtins.eval, ...) is refused with a W2VError before
it can run.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from w2vcli.errors import W2VError
from w2vcli.messages import unpickler_global, unpickler_reason

# modules whose classes may appear in fairseq checkpoints as configuration or logging state;
# they are never imported: an inert stand-in is built instead.
_STUB_MODULES = ("fairseq", "omegaconf", "typing", "argparse", "numpy", "enum", "collections", "pathlib", "datetime")
_STUB_BUILTINS = {"dict", "list", "set", "frozenset", "tuple", "int", "float", "str", "bool", "bytes", "object",
                  "complex", "slice", "range", "type", "NoneType"}  # fmt: skip


class Stub:
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
    return type(name.rsplit(".", 1)[-1], (Stub,), {"_name": name})


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
        except pickle.UnpicklingError as exc:  # a legacy file: torch names one global at a time
            refused = unpickler_global(str(exc))
            if refused is None:
                reason = unpickler_reason(str(exc))
                raise W2VError(f"{path}: not a checkpoint, or a damaged one ({reason or 'unreadable pickle'})") from None
            kind, name = refused
            if kind == "blocked" or name in stubs or not _may_stub(name):
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
