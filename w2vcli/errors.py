"""The one exception type for problems the user can fix (bad input, missing files, bad options).

The CLI prints a `W2VError` as one red line and exits 1; any other exception is a bug and
shows its traceback. `W2V_DEBUG=1` shows the traceback for `W2VError` too.
"""


class W2VError(Exception):
    """A user-facing error: the message names the file, field or option at fault."""
