"""The only place w2v reads other libraries' error messages, for failures no exception type,
errno or check before the call tells apart. Each function names the library and the text it
reads; tests/test_messages.py makes each message with the installed library and checks that
these still parse it, so an upgrade that changes a message fails there, not in a user's run.

Recognised by type instead, elsewhere: a failed checkpoint write (the OSError torch.save leaves
in the exception chain, w2vcli/model/checkpoint.py), a W2VError raised in a DataLoader worker
(torch re-raises the same type), the globals of a zip checkpoint (listed before loading by
`torch.serialization.get_unsafe_globals_in_checkpoint`, w2vcli/model/safe_load.py).
"""

from __future__ import annotations

import re

# --- torch.utils.data: a worker's exception, re-raised in the main process ----------------------
# torch wraps it as the same type with "Caught X in DataLoader worker process N.\nOriginal
# Traceback (most recent call last):\n...\nX: message"; a worker that died gives
# "DataLoader worker (pid(s) ...) exited unexpectedly" (RuntimeError, as for any other error).
_WORKER_RAISED = "in DataLoader worker process"
_WORKER_DIED = re.compile(r"DataLoader worker .*(exited unexpectedly|killed by signal)")


def worker_raised(exc: BaseException) -> str | None:
    """The last line of a worker's traceback ("ValueError: ...") when `exc` is torch's re-raise of
    an exception raised in a DataLoader worker, else None."""
    text = str(exc).strip()
    return text.splitlines()[-1] if _WORKER_RAISED in text else None


def worker_died(exc: BaseException) -> str | None:
    """torch's first line when a DataLoader worker process died (killed, out of memory), else None."""
    text = str(exc).strip()
    return text.splitlines()[0] if _WORKER_DIED.search(text) else None


# --- torch's weights_only unpickler (legacy, non-zip files; zip files are listed beforehand) ----
_NOT_ALLOWED = re.compile(r"GLOBAL (\S+) was not an allowed global")  # may be allowed with safe_globals
_BLOCKED = re.compile(r"unsupported GLOBAL (\S+) whose module")  # never allowed (os, subprocess, ...)
_REASON = "WeightsUnpickler error:"


def unpickler_global(message: str) -> tuple[str, str] | None:
    """("allowable" | "blocked", "module.name") for torch's refusal of a pickle global, else None.
    A name without a module is a builtin's."""
    for kind, pattern in (("allowable", _NOT_ALLOWED), ("blocked", _BLOCKED)):
        m = pattern.search(message)
        if m:
            name = m.group(1)
            return kind, name if "." in name else f"builtins.{name}"
    return None


def unpickler_reason(message: str) -> str:
    """The unpickler's own reason in torch's long message (which goes on to explain weights_only)."""
    return message.rpartition(_REASON)[2].strip().split("\n\n")[0].strip()


# --- KenLM (through pyctcdecode or the kenlm module): "... (FILE:LINE in SIGNATURE threw XException. WHY)"
_KENLM = re.compile(r"threw \w*Exception\.\s*(.*?)\)?\s*$", re.S)


def kenlm_reason(message: str) -> str:
    """The WHY of KenLM's exception text, or the whole message when it is not KenLM's."""
    m = _KENLM.search(message.strip())
    return m.group(1).strip() if m else message.strip()
