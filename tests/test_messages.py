"""Other libraries' messages that w2v reads (w2vcli/messages.py), made by the installed versions:
if an upgrade rewords one, this fails and names the version. And the failures recognised by
type: a full disk under torch.save, a W2VError out of a DataLoader worker."""

from __future__ import annotations

import argparse
import errno
import io
import os
import pickle
import signal

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from w2vcli.data.dataset import worker_error
from w2vcli.errors import W2VError
from w2vcli.messages import kenlm_reason, unpickler_global, unpickler_reason, worker_died, worker_raised
from w2vcli.model.checkpoint import write_failure
from w2vcli.model.safe_load import safe_torch_load

TORCH = f"torch {torch.__version__}"


class Fails(Dataset):
    def __init__(self, how: str):
        self.how = how

    def __len__(self):
        return 1

    def __getitem__(self, i):
        if self.how == "value":
            raise ValueError("bad row 7")
        if self.how == "w2v":
            raise W2VError("a.flac: cannot read audio")
        os.kill(os.getpid(), signal.SIGKILL)  # a worker killed (as by the OOM killer)


def first_batch_error(how: str) -> Exception:
    with pytest.raises(Exception) as info:
        next(iter(DataLoader(Fails(how), num_workers=1, timeout=0)))
    return info.value


def test_dataloader_worker_messages():
    exc = first_batch_error("value")
    assert type(exc) is ValueError and worker_raised(exc) == "ValueError: bad row 7", (TORCH, str(exc))
    assert str(worker_error(exc)) == "a data loading worker failed: ValueError: bad row 7 (W2V_DEBUG=1 shows where)"
    exc = first_batch_error("w2v")
    assert isinstance(exc, W2VError), TORCH  # torch keeps the type
    assert str(worker_error(exc)) == "a.flac: cannot read audio", (TORCH, str(exc))
    exc = first_batch_error("killed")
    assert worker_died(exc) and worker_raised(exc) is None, (TORCH, str(exc))
    assert "lower --num-workers" in str(worker_error(exc))
    assert worker_error(RuntimeError("something else")) is None


def test_unpickler_messages(tmp_path):
    legacy = tmp_path / "legacy.pt"  # a pre-zip torch file holding a fairseq-style Namespace
    torch.save({"args": argparse.Namespace(lr=1.0)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(legacy, weights_only=True)
    assert unpickler_global(str(info.value)) == ("allowable", "argparse.Namespace"), (TORCH, str(info.value))
    assert safe_torch_load(legacy)["args"].state == {"lr": 1.0}  # read as an inert stand-in

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(evil, weights_only=True)
    kind, name = unpickler_global(str(info.value))
    assert kind == "blocked" and name.endswith(".system"), (TORCH, str(info.value))
    with pytest.raises(W2VError, match="refusing to load .* could run code"):
        safe_torch_load(evil)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01ctorch\nnothing_here\nq\x02s.")
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(junk, weights_only=True)
    assert unpickler_global(str(info.value)) or unpickler_reason(str(info.value)), (TORCH, str(info.value))


def test_kenlm_message(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa\n")
    with pytest.raises(OSError) as info:
        kenlm.Model(str(bad))
    assert kenlm_reason(str(info.value)) == 'first non-empty line was "not an arpa" not \\data\\. Byte: 12', (
        f"kenlm module {getattr(kenlm, '__version__', '?')}", str(info.value))
    assert kenlm_reason("plain words") == "plain words"


class FullDisk(io.RawIOBase):
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, room: int):
        self.room = room

    def writable(self):
        return True

    def write(self, b):
        self.room -= len(b)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(b)


@pytest.mark.parametrize("room", [10, 100_000])  # in the pickle, and in the tensor data
def test_a_full_disk_is_told_by_type(room):
    with pytest.raises((OSError, RuntimeError)) as info:
        torch.save({"w": torch.zeros(200_000)}, FullDisk(room))
    assert write_failure(info.value) == "No space left on device", (TORCH, repr(info.value))
    assert write_failure(RuntimeError("PytorchStreamWriter failed writing file")) is None
