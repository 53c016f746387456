"""`w2v prepare`: manifests from corpora (not implemented yet)."""

import typer

from w2vcli.commands._common import not_implemented

app = typer.Typer(help="Write JSONL manifests, a vocabulary and transcripts from a corpus.", no_args_is_help=True)


@app.command("librispeech")
def librispeech() -> None:
    """Not implemented yet."""
    not_implemented("prepare librispeech")
