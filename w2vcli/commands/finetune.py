"""`w2v finetune` (not implemented yet)."""

from w2vcli.commands._common import not_implemented


def finetune() -> None:
    """Not implemented yet."""
    not_implemented("finetune")
