"""`w2v lm`: n-gram language models (not implemented yet)."""

import typer

from w2vcli.commands._common import not_implemented

app = typer.Typer(help="Build n-gram language models with KenLM.", no_args_is_help=True)


@app.command("build")
def build() -> None:
    """Not implemented yet."""
    not_implemented("lm build")
