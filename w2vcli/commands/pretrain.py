"""`w2v pretrain` (not implemented yet)."""

from w2vcli.commands._common import not_implemented


def pretrain() -> None:
    """Not implemented yet."""
    not_implemented("pretrain")
