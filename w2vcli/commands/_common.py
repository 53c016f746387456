"""Helpers shared by the command modules."""

from w2vcli.errors import W2VError


def not_implemented(command: str) -> None:
    """Refuse to run a command whose implementation has not landed yet (exit 1, no fake output)."""
    raise W2VError(f"`w2v {command}` is not implemented yet")
