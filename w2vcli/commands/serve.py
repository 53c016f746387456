"""`w2v serve`: a model behind OpenAI's transcription API and a websocket with live results."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

import w2vcli
from w2vcli import cpu
from w2vcli.errors import W2VError
from w2vcli.utils import log, warn

API_KEY_ENV = "W2V_API_KEY"


def serve(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="w2v checkpoint, Hugging Face directory, fairseq .pt, or .onnx from `w2v export --to onnx`.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=0, max=65535)] = 8000,
    lm: Annotated[Optional[Path], typer.Option("--lm", help="KenLM binary or ARPA model: beam search with shallow fusion.", dir_okay=False)] = None,
    beam: Annotated[Optional[int], typer.Option("--beam", help="Beam width (default 50 with --lm, else greedy; 0 = greedy).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="LM weight.")] = 0.5,
    beta: Annotated[float, typer.Option("--beta", help="Word insertion bonus.")] = 1.0,
    unigrams: Annotated[Optional[Path], typer.Option("--unigrams", "--lexicon", help="LM word list (default LM.unigrams.txt).", dir_okay=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Beam-search decoder processes (one core each).", min=1)] = 1,
    api_key: Annotated[Optional[str], typer.Option("--api-key", help=f"Require `Authorization: Bearer KEY` on /v1/ routes (default: ${API_KEY_ENV} if set).", show_default=False)] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option("--cors-origin", help="A browser origin allowed to call the API (repeat for more; none by default).", show_default=False)] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="Waveforms (requests or stream windows) per forward pass, across clients (default: 8 in fp32; 1 in bf16, fp16 or int8, where batching can change a transcript).", min=1, show_default=False)] = None,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long the first waiting waveform waits for others to batch with.", min=0)] = 5.0,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests in flight at once; more get 503 with Retry-After.", min=1)] = 32,
    max_streams: Annotated[int, typer.Option("--max-streams", help="Websocket streams open at once; more are closed with 1013.", min=1)] = 16,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload (413 beyond).")] = 25.0,
    max_audio_seconds: Annotated[float, typer.Option("--max-audio-seconds", help="Longest audio of one request (413 beyond).")] = 1800.0,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Seconds a request may take from its arrival (503 beyond).")] = 300.0,
    max_stream_seconds: Annotated[float, typer.Option("--max-stream-seconds", help="Longest audio of one websocket stream.")] = 3600.0,
    idle_seconds: Annotated[float, typer.Option("--idle-seconds", help="A stream that sends (or reads) nothing this long is closed.")] = 30.0,
    stream_chunk_seconds: Annotated[float, typer.Option("--stream-chunk-seconds", help="Streams: seconds kept per model window.")] = 2.0,
    stream_context_seconds: Annotated[float, typer.Option("--stream-context-seconds", help="Streams: seconds of context on each side of a window.")] = 1.0,
    partial_seconds: Annotated[float, typer.Option("--partial-seconds", help="Streams: a partial result after this much new audio.")] = 0.5,
    silence_seconds: Annotated[float, typer.Option("--silence-seconds", help="Streams: silence that ends a segment (a final result).")] = 0.6,
    max_segment_seconds: Annotated[float, typer.Option("--max-segment-seconds", help="Streams: longest segment.")] = 20.0,
    chunk_seconds: Annotated[float, typer.Option("--chunk-seconds", help="Uploads: long audio is run in windows keeping this many seconds each (0 = never chunk).")] = 30.0,
    context_seconds: Annotated[float, typer.Option("--context-seconds", help="Uploads: seconds of context on each side of a window.")] = 5.0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 | fp16.")] = "auto",
    quantize: Annotated[str, typer.Option("--quantize", help="auto | none | int8 (CPU).")] = "auto",
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary for a model that has none with it.", exists=True, dir_okay=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of the model (default: the usable cores less one per --jobs process; 0 = torch's default).", min=0)] = None,
) -> None:
    """Serve a CTC model over HTTP and websockets until stopped (Ctrl-C or SIGTERM, which finishes
    the requests in flight and sends open streams their finals first).

    POST /v1/audio/transcriptions answers OpenAI's transcription call (the `openai` client works
    unchanged); WS /v1/stream takes live PCM and sends partial and final results; GET / is a
    browser page. Requests and stream windows from different clients are batched without
    changing any transcript. Protocol, limits and deployment: docs/serve.md.
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    if key is not None and len(key) < 8:
        raise W2VError("--api-key must be at least 8 characters")
    try:
        # lazy: optional extra [serve]: FastAPI + uvicorn (0.25 s) and torch (1.3 s), after the options are checked
        from w2vcli.serve.app import create_app, run_server
    except ImportError as exc:
        raise W2VError(f"w2v serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'w2vcli[serve]'") from None
    # lazy: torch (1.3 s), loaded with app.py by now; at module level it would load for --help
    from w2vcli.decode.ctc import DecodingOptions
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions
    from w2vcli.serve.engine import DEFAULT_MAX_BATCH, Engine, ServeOptions

    settings = ServeOptions(max_batch, max_wait_ms, max_queue, max_streams, max_upload_mb, max_audio_seconds,
                            request_timeout, max_stream_seconds, idle_seconds, stream_chunk_seconds,
                            stream_context_seconds, partial_seconds, silence_seconds, max_segment_seconds)
    cpu.set_threads(cpu.inference_threads(cpu.AUTO if threads is None else threads, jobs))
    model = w2vcli.load_ctc_model(model_path, device="cpu", vocab=vocab)
    options = TranscribeOptions(
        emission=EmissionOptions(max_batch or DEFAULT_MAX_BATCH, chunk_seconds, context_seconds, device, precision, quantize=quantize),
        decoding=DecodingOptions(beam_size=beam if beam is not None else (50 if lm is not None else 0),
                                 lm=str(lm) if lm else None, alpha=alpha, beta=beta,
                                 unigrams=str(unigrams) if unigrams else None),
        jobs=jobs,
    )  # fmt: skip
    engine = Engine(model, options, settings, model_id(model_path))
    app = create_app(engine, key, tuple(cors_origin or ()))
    if key is None and host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"--host {host} without --api-key (or ${API_KEY_ENV}): anyone who can reach this port can use the model")
    where = f"http://{host}:{port}"
    log(f"serving {model_path} ({engine.emitter.mode}, {options.decoding.method} decoding) on {where}"
        + ("; API key required" if key else ""))
    log(engine.batching)
    # uvicorn answers SIGTERM and Ctrl-C by finishing the requests in flight, then raises the
    # signal again under the handlers it found: these, so the process ends here with exit code 0
    # after closing the decoder processes, instead of being killed by the repeated signal
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run_server(app, host, port, request_timeout)
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.close()
    log("stopped")


class _Stopped(Exception):
    """SIGTERM or SIGINT after uvicorn's graceful shutdown."""


def _stop(_sig, _frame) -> None:
    raise _Stopped


def model_id(path: Path) -> str:
    """The name /v1/models lists: the checkpoint's file stem, or a model folder's name."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem
