"""`w2v export` (not implemented yet)."""

from w2vcli.commands._common import not_implemented


def export() -> None:
    """Not implemented yet."""
    not_implemented("export")
