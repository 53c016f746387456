"""`w2v score` (not implemented yet)."""

from w2vcli.commands._common import not_implemented


def score() -> None:
    """Not implemented yet."""
    not_implemented("score")
