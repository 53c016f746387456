"""The one exception type for problems the user can fix (bad input, missing files, bad options).

The CLI prints a `W2VError` as one red line and exits 1; any other exception is a bug and
shows its traceback. `W2V_DEBUG=1` shows the traceback for `W2VError` too.
"""


class W2VError(Exception):
    """A user-facing error: the message names the file, field or option at fault."""


def report_error(exc: BaseException) -> None:
    """Print a user-facing error as one red line on stderr."""
    # lazy: rich (60 ms) only when an error is shown
    from rich.console import Console
    from rich.markup import escape

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    Console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
