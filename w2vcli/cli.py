"""The `w2v` command: the Typer root app that registers the subcommands and turns errors into one line.

Each subcommand lives in `w2vcli/commands/<name>.py`, parses its options, builds a config and
calls one library function. This module adds `--version` and the plain help layout, and maps
errors: a `W2VError`, or an OSError a user can fix (a full disk, a permission, a missing path),
becomes one red line on stderr and exit code 1; `W2V_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations

import errno
import os
import sys

# OpenMP threads waiting for work sleep instead of spinning (set before torch loads its OpenMP).
# Two w2v processes sharing the cores then barely slow each other: 1.0x instead of 5-8x measured
# with two tiny trainings on two cores (bench/concurrent_training.py, docs/train.md). A user's
# own OMP_WAIT_POLICY is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from w2vcli import __version__  # noqa: E402
from w2vcli.commands.layout import W2VCommand, W2VHelpGroup, click  # noqa: E402
from w2vcli.cpu import keep_freed_memory  # noqa: E402
from w2vcli.errors import W2VError, report_error  # noqa: E402


# OS errors a user fixes (a full disk, a permission, a path), shown as one line like a W2VError
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.EISDIR,
               errno.ENOTDIR, errno.ENOENT, errno.EIO, errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE}


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class W2VGroup(W2VHelpGroup):
    """Runs subcommands and turns a `W2VError` (or an OSError such as a full disk) into one red
    line and exit code 1, and a usage error (a missing or bad option, click's `Error: ...` under
    a usage block) into the same `error: ...` line, exit code 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # an exit code, or None on success
        except click.ClickException as exc:
            if isinstance(exc, NO_ARGS_IS_HELP):  # `w2v`, `w2v prepare` alone: the help, as click shows it
                exc.show()
            else:
                report_usage_error(exc)
            sys.exit(exc.exit_code)
        except typer.Abort:
            report_error(W2VError("aborted"))
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except W2VError as exc:
            if os.environ.get("W2V_DEBUG"):
                raise
            report_error(exc)
            ctx.exit(1)
        except OSError as exc:
            if os.environ.get("W2V_DEBUG") or exc.errno not in USER_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            report_error(W2VError(f"{where}{exc.strerror or exc}"))
            ctx.exit(1)


app = typer.Typer(
    cls=W2VGroup,
    name="w2v",
    help="wav2vec 2.0 speech recognition: prepare data, pretrain, fine-tune with CTC, "
    "transcribe with an n-gram LM, score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: paragraphs re-wrapped to the width, flags shown without a value, the
    # same text on a terminal, in a pipe or in a file (Rich's boxes keep the docstrings' line breaks)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def report_usage_error(exc: click.ClickException) -> None:
    """click's message in w2v's style: "error: missing option '--train' (w2v finetune --help)"."""
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f" (see {ctx.command_path} --help)"
    report_error(W2VError(message))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"w2v {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """wav2vec 2.0 speech recognition from the command line."""
    keep_freed_memory()  # large tensors reuse freed memory (w2vcli/cpu.py)


def _register() -> None:
    from w2vcli.commands import align, export, finetune, lm, prepare, pretrain, score, serve, transcribe

    app.add_typer(prepare.app, name="prepare")
    app.command("pretrain", cls=W2VCommand)(pretrain.pretrain)
    app.command("finetune", cls=W2VCommand)(finetune.finetune)
    app.command("transcribe", cls=W2VCommand)(transcribe.transcribe)
    app.command("score", cls=W2VCommand)(score.score)
    app.command("align", cls=W2VCommand)(align.align)
    app.add_typer(lm.app, name="lm")
    app.command("export", cls=W2VCommand)(export.export)
    app.command("serve", cls=W2VCommand)(serve.serve)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except W2VError as exc:  # raised outside a subcommand (rare)
        if os.environ.get("W2V_DEBUG"):
            raise
        report_error(exc)
        sys.exit(1)
