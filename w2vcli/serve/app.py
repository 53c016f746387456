"""The HTTP and websocket routes of `w2v serve` (FastAPI on uvicorn; protocol and limits: docs/serve.md).

    POST /v1/audio/transcriptions   OpenAI's transcription call: multipart `file`, `model`,
                                    `response_format`, `timestamp_granularities[]`
    GET  /v1/models, GET /health     the one model; liveness and load
    WS   /v1/stream                  live PCM in, partial and final results out (stream.py)
    GET  /, /static/...              the browser page (static/index.html) and its files

Every error is JSON in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with a
4xx status for anything the client can fix; no route reads a path a request names.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import soundfile as sf
import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from w2vcli.audio import SAMPLE_RATE, load_audio_bytes
from w2vcli.decode.formats import cues, to_srt, to_vtt
from w2vcli.errors import W2VError
from w2vcli.serve.engine import Engine
from w2vcli.serve.stream import Stream, StreamError

STATIC = Path(__file__).parent / "static"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
TRANSCRIBE_PATH = "/v1/audio/transcriptions"
log = logging.getLogger("w2v.serve")


class APIError(HTTPException):
    """An error answered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(status, message, headers)
        self.param, self.kind = param, kind


def error_json(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
               headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status, headers=headers)


class Admission:
    """Pure ASGI middleware in front of the transcription route: the API key, the upload size
    (Content-Length, then the bytes as they arrive), the bounded number of requests in flight
    (503 with Retry-After beyond it) and the request time limit. It runs before the multipart
    body is parsed, so a request that is refused costs no upload."""

    def __init__(self, engine: Engine, api_key: str | None):
        self.app = None  # the app inside it, set when FastAPI builds its middleware stack (_Outer)
        self.engine, self.api_key = engine, api_key
        self.inflight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or (scope["type"] == "http" and not scope["path"].startswith("/v1/")):
            return await self.app(scope, receive, send)
        if self.api_key is not None and not authorized(scope, self.api_key):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong API key"})
            return await error_json(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                                    kind="authentication_error", headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope["type"] == "websocket" or scope["path"] != TRANSCRIBE_PATH:
            return await self.app(scope, receive, send)
        opts = self.engine.serve
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > opts.max_upload_bytes:
            return await too_large(opts)(scope, receive, send)
        if self.inflight >= opts.max_queue:
            return await error_json(503, f"the server is busy ({opts.max_queue} requests in flight); retry shortly",
                                    kind="server_busy", headers={"Retry-After": "1"})(scope, receive, send)
        self.inflight += 1
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > opts.max_upload_bytes:
                raise APIError(413, too_large_message(opts), "file")
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, counted_receive, tracked_send), opts.request_timeout)
        except asyncio.TimeoutError:
            if not started:
                await error_json(503, f"the request took longer than this server's --request-timeout "
                                      f"{opts.request_timeout:g} s", kind="timeout",
                                 headers={"Retry-After": "1"})(scope, receive, send)
        finally:
            self.inflight -= 1


def too_large_message(opts) -> str:
    return f"the upload is larger than this server's --max-upload-mb {opts.max_upload_mb:g}"


def too_large(opts) -> JSONResponse:
    return error_json(413, too_large_message(opts), "file")


def authorized(scope, api_key: str) -> bool:
    """`Authorization: Bearer KEY` (what OpenAI's clients send), or for a websocket from a browser,
    which cannot set headers, `?api_key=KEY`; compared in constant time."""
    headers = dict(scope["headers"])
    given = headers.get(b"authorization", b"")
    token = given[7:].strip() if given[:7].lower() == b"bearer " else b""
    if not token and scope["type"] == "websocket":
        token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key", [""])[0].encode()
    return hmac.compare_digest(token, api_key.encode())


def decode_upload(data: bytes, max_seconds: float) -> np.ndarray:
    """An uploaded file as 16 kHz mono float32 [S]; its length is checked from the header first."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - anything soundfile cannot open; load_audio_bytes words it
        info = None
    if info is not None and info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
        raise APIError(413, f"the audio is {info.frames / info.samplerate:.0f} s long; this server takes at most "
                            f"{max_seconds:g} s (--max-audio-seconds)", "file")
    try:
        wav = load_audio_bytes(data, "file")
    except W2VError as exc:
        raise APIError(400, f"{exc} (formats: whatever libsndfile reads: wav, flac, ogg, mp3, ...)", "file") from None
    if len(wav) > max_seconds * SAMPLE_RATE:
        raise APIError(413, f"the audio is {len(wav) / SAMPLE_RATE:.0f} s long; this server takes at most "
                            f"{max_seconds:g} s (--max-audio-seconds)", "file")
    return wav


def verbose_json(t: dict, words: bool, segments: bool) -> dict:
    """OpenAI's verbose_json: duration, text, and words and/or segments with times in seconds."""
    out = {"task": "transcribe", "language": "unknown", "duration": t["duration"], "text": t["text"]}
    if words:
        out["words"] = t["words"]
    if segments:
        out["segments"] = []
        for i, (start, end, text) in enumerate(cues(t["words"])):
            inside = [w for w in t["words"] if start <= w["start"] and w["end"] <= end and "confidence" in w]
            logp = float(np.mean([np.log(max(w["confidence"], 1e-9)) for w in inside])) if inside else 0.0
            out["segments"].append({"id": i, "seek": 0, "start": start, "end": end, "text": text, "tokens": [],
                                    "temperature": 0.0, "avg_logprob": round(logp, 4)})
    return out


def create_app(engine: Engine, api_key: str | None = None, cors_origins: tuple[str, ...] = ()) -> FastAPI:
    """The app serving `engine`; `api_key`: required on /v1/ routes; `cors_origins`: browsers'
    origins allowed to call it (none by default)."""
    app = FastAPI(title="w2v", docs_url=None, redoc_url=None, openapi_url=None)
    admission = Admission(engine, api_key)
    app.state.streams = 0
    app.state.stopping = asyncio.Event()  # set at shutdown: streams send their finals and close

    @app.exception_handler(APIError)
    async def api_error(_request, exc: APIError):
        return error_json(exc.status_code, exc.detail, exc.param, exc.kind, exc.headers)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's too, and Starlette's 404 and 405
    async def http_error(_request, exc: StarletteHTTPException):
        return error_json(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = str(first.get("loc", ["", "?"])[-1])
        return error_json(400, f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):  # a bug: logged here, never a traceback to the client
        log.exception("unexpected error")
        return error_json(500, "internal error (see the server's log)", kind="server_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.model_id, "requests": admission.inflight,
                "streams": app.state.streams, "forward_passes": engine.batcher.passes,
                "waveforms": engine.batcher.waveforms, "max_batch": engine.max_batch}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.model_id, "object": "model", "created": engine.created,
                                            "owned_by": "w2v"}]}

    @app.post(TRANSCRIBE_PATH)
    async def transcriptions(
        file: UploadFile = File(...),
        model: str = Form(...),
        response_format: str = Form("json"),
        timestamp_granularities: list[str] = Form([], alias="timestamp_granularities[]"),
        language: str | None = Form(None),
        prompt: str | None = Form(None),
        temperature: float | None = Form(None),
    ):
        """OpenAI's `POST /v1/audio/transcriptions`. `model` is required, as OpenAI's is, and may
        be any name (there is one model); `language`, `prompt` and `temperature` are accepted and
        do not change the result."""
        if response_format not in RESPONSE_FORMATS:
            raise APIError(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}",
                           "response_format")
        bad = [g for g in timestamp_granularities if g not in GRANULARITIES]
        if bad:
            raise APIError(400, f"timestamp_granularities[] must be word or segment, got {bad[0]!r}", "timestamp_granularities[]")
        if timestamp_granularities and response_format != "verbose_json":
            raise APIError(400, "timestamp_granularities[] needs response_format verbose_json", "timestamp_granularities[]")
        data = await file.read()
        wav = await asyncio.to_thread(decode_upload, data, engine.serve.max_audio_seconds)
        t = (await engine.transcribe(wav, file.filename or "")).to_dict()
        if response_format == "json":
            return {"text": t["text"]}
        if response_format == "text":
            return PlainTextResponse(t["text"] + "\n")
        if response_format == "srt":
            return PlainTextResponse(to_srt(t))
        if response_format == "vtt":
            return PlainTextResponse(to_vtt(t), media_type="text/vtt")
        granular = set(timestamp_granularities) or {"segment"}
        return verbose_json(t, "word" in granular, "segment" in granular)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        if app.state.streams >= engine.serve.max_streams:
            await ws.accept()
            await ws.send_text(json.dumps({"type": "error", "message": f"the server is busy ({engine.serve.max_streams} "
                                           "streams open); retry shortly"}))
            return await ws.close(1013)
        app.state.streams += 1
        try:
            await ws.accept()
            ended = await Stream(ws, engine).run(app.state.stopping)
            await ws.close(1000 if ended else 1012)  # 1012: service restart
        except StreamError as exc:
            await _close_with(ws, str(exc))
        except (WebSocketDisconnect, OSError, asyncio.TimeoutError, RuntimeError):
            pass  # the client left, or stopped reading: nothing more to say to it
        finally:
            app.state.streams -= 1

    @app.get("/", include_in_schema=False)
    async def page():
        index = STATIC / "index.html"
        if not index.is_file():
            raise APIError(404, "this installation has no browser page (w2vcli/serve/static/index.html)")
        return FileResponse(index)

    if STATIC.is_dir():  # the page's own files (scripts, styles), if it has any; nothing outside the folder
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_Outer, admission=admission)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


class _Outer:
    """Puts `Admission` in the middleware stack (FastAPI builds the stack itself)."""

    def __init__(self, app, admission: Admission):
        admission.app = app
        self.admission = admission

    async def __call__(self, scope, receive, send):
        await self.admission(scope, receive, send)


def run_server(app: FastAPI, host: str, port: int, drain_seconds: float) -> None:
    """Serve `app` with uvicorn until SIGTERM or Ctrl-C. Then: no new connections; open streams
    send the finals of the audio they have and close with 1012; requests in flight finish (each
    wait at most `drain_seconds`); then the server returns."""
    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            for server in self.servers:  # stop accepting while the streams finish
                server.close()
            app.state.stopping.set()
            deadline = asyncio.get_running_loop().time() + drain_seconds
            while app.state.streams and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=drain_seconds,
                            ws_max_size=1 << 20)
    Server(config).run()


async def _close_with(ws: WebSocket, message: str) -> None:
    try:
        await ws.send_text(json.dumps({"type": "error", "message": message}))
        await ws.close(1008)
    except (WebSocketDisconnect, RuntimeError):
        pass
