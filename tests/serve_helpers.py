"""A real uvicorn server on a free loopback port, in a thread of the test process, for tests/test_serve*.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator



from tiny_models import VOCAB, tiny_model  # noqa: F401 (the serve tests import both from here)


def same_words(got: list[dict], want: list[dict], tolerance: float = 1e-3) -> bool:
    """The same words with the same times, and confidences equal up to the float rounding of a
    batched forward pass (a row's log-probabilities move by ~1e-5 with the batch's size)."""
    strip = lambda ws: [(w["word"], w["start"], w["end"]) for w in ws]  # noqa: E731
    return strip(got) == strip(want) and all(
        abs(g.get("confidence", 0) - w.get("confidence", 0)) <= tolerance for g, w in zip(got, want))


def transcribe_options(**emission):
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions

    return TranscribeOptions(emission=EmissionOptions(device="cpu", **emission))


@contextlib.contextmanager
def server(model, api_key: str | None = None, cors: tuple[str, ...] = (), options=None, **serve) -> Iterator[str]:
    """`w2v serve`'s app for `model` on 127.0.0.1:PORT; yields "127.0.0.1:PORT"."""
    import uvicorn

    from w2vcli.serve.app import create_app
    from w2vcli.serve.engine import Engine, ServeOptions

    engine = Engine(model, options or transcribe_options(), ServeOptions(**serve), "tiny")
    app = create_app(engine, api_key, cors)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=1 << 20))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
        engine.close()
