"""`w2v transcribe` (not implemented yet)."""

from w2vcli.commands._common import not_implemented


def transcribe() -> None:
    """Not implemented yet."""
    not_implemented("transcribe")
