"""`w2v serve` over HTTP: OpenAI's client unchanged, batched == solo under concurrent load, limits
and 503, bad input fuzzed (never a 5xx), the API key, CORS, and SIGTERM draining a request."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

import w2vcli
from w2vcli.decode.emissions import Emitter
from serve_helpers import same_words, server, tiny_model, transcribe_options

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def model():
    return tiny_model(0)


@pytest.fixture(scope="module")
def files(real_mini):
    return [str(p) for p in sorted(real_mini.rglob("*.flac"))]


@pytest.fixture(scope="module")
def solo(model, files):
    """What `w2v transcribe` gives each file alone (the library call it runs)."""
    return {f: w2vcli.transcribe(model, f, transcribe_options()).to_dict() for f in files}


@pytest.fixture(scope="module")
def url(model):
    with server(model, max_wait_ms=20) as where:
        yield where


def client(url: str, key: str = "unused") -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"http://{url}/v1", api_key=key, max_retries=0)


def test_openai_client_unchanged(url, files, solo):
    f = files[0]
    c = client(url)
    with open(f, "rb") as fh:
        assert c.audio.transcriptions.create(model="whisper-1", file=fh).text == solo[f]["text"]
    with open(f, "rb") as fh:
        text = c.audio.transcriptions.create(model="tiny", file=fh, response_format="text")
    assert text.strip() == solo[f]["text"]
    with open(f, "rb") as fh:
        v = c.audio.transcriptions.create(model="tiny", file=fh, response_format="verbose_json",
                                          timestamp_granularities=["word", "segment"])
    assert v.text == solo[f]["text"] and v.duration == solo[f]["duration"]
    assert [(w.word, w.start, w.end) for w in v.words] == [(w["word"], w["start"], w["end"]) for w in solo[f]["words"]]
    assert " ".join(s.text for s in v.segments) == solo[f]["text"]
    assert all(a.end <= b.start for a, b in zip(v.segments, v.segments[1:]))
    for fmt, head in (("srt", "1\n00:00:00,"), ("vtt", "WEBVTT\n\n00:00:00.")):
        with open(f, "rb") as fh:
            assert c.audio.transcriptions.create(model="tiny", file=fh, response_format=fmt).startswith(head)
    assert [m.id for m in c.models.list()] == ["tiny"]


def post_verbose(url: str, path: str) -> dict:
    """One upload with word times (verbose_json); a 200 is required."""
    with open(path, "rb") as fh:
        r = httpx.post(f"http://{url}/v1/audio/transcriptions", files={"file": fh},
                       data={"model": "tiny", "response_format": "verbose_json", "timestamp_granularities[]": "word"},
                       timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def test_concurrent_requests_equal_solo_and_are_batched(model, files, solo):
    """16 clients at once, the same file several times (equal lengths share forward passes) and
    different files: every transcript equals its solo transcription, words and times (and
    confidences to the float rounding of a batched pass)."""
    jobs = [files[i % 3] for i in range(16)]

    with server(model, max_wait_ms=300) as url, ThreadPoolExecutor(16) as pool:  # a wait that batches on a busy machine
        got = list(pool.map(lambda f: post_verbose(url, f), jobs))
        health = httpx.get(f"http://{url}/health").json()
    for f, r in zip(jobs, got):
        assert r["text"] == solo[f]["text"]
        assert same_words(r["words"], solo[f]["words"])
    assert health["waveforms"] == 16 and health["forward_passes"] < 16  # clients shared batches


def test_bf16_serves_each_client_alone_by_default(model, files, monkeypatch):
    """In bf16 (what --precision auto picks on a CPU with native bf16) a batched row rounds
    differently from the row alone and can change letters, so by default the server batches no
    waveforms across clients: 12 concurrent clients get exactly their solo transcripts. An
    explicit --max-batch still batches."""
    from w2vcli import cpu
    from w2vcli.serve.engine import ServeOptions

    monkeypatch.setattr(cpu, "cpu_features", lambda: cpu.CpuFeatures(bf16=True, amx=True, vnni=True, capability="AVX512"))
    monkeypatch.delenv("W2V_CPU_MODE", raising=False)  # tests pin fp32 (conftest): let auto choose bf16
    solo = {f: w2vcli.transcribe(model, f, transcribe_options()).to_dict() for f in files[:3]}
    jobs = [files[i % 3] for i in range(12)]

    with server(model, max_wait_ms=300) as url, ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda f: post_verbose(url, f), jobs))
        health = httpx.get(f"http://{url}/health").json()
    for f, r in zip(jobs, got):
        assert r["text"] == solo[f]["text"] and r["words"] == solo[f]["words"]  # to the bit: each ran alone
    assert health["forward_passes"] == health["waveforms"] == 12 and health["max_batch"] == 1
    with server(model, max_batch=4) as url:
        assert httpx.get(f"http://{url}/health").json()["max_batch"] == 4
    assert ServeOptions().batch_size("fp32")[0] == 8 and ServeOptions().batch_size("int8")[0] == 1
    assert "int8" in ServeOptions().batch_size("int8")[1] and ServeOptions(max_batch=3).batch_size("bf16")[0] == 3


def test_lm_beam_search_in_decoder_processes(model, files, tiny_lm):
    """--lm with --jobs 2: the beam search runs in two forked decoder processes, and concurrent
    requests get what the library gives each file alone."""
    from w2vcli.decode.ctc import DecodingOptions
    from w2vcli.decode.transcribe import TranscribeOptions

    options = TranscribeOptions(emission=transcribe_options().emission, jobs=2,
                                decoding=DecodingOptions(beam_size=8, lm=str(tiny_lm)))
    want = {f: w2vcli.transcribe(model, f, options).hyp.text for f in files[:4]}
    with server(model, options=options) as where:
        def one(f):
            with open(f, "rb") as fh:
                return client(where).audio.transcriptions.create(model="m", file=fh).text

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(one, files[:4])) == [want[f] for f in files[:4]]


def test_bad_input_is_a_4xx_json_error_never_5xx(url, files):
    """Fuzz: random bytes, truncated and damaged audio, wrong and missing fields, wrong methods."""
    rng = random.Random(0)
    good = Path(files[0]).read_bytes()
    wav = io.BytesIO()
    sf.write(wav, np.zeros(8000, np.float32), 16000, format="WAV", subtype="PCM_16")
    wav = wav.getvalue()
    bodies = [b"", b"RIFF", wav[:30], wav[:44], good[:200], good[: len(good) // 2],
              bytes(rng.getrandbits(8) for _ in range(3000)), b"fLaC" + bytes(rng.getrandbits(8) for _ in range(500)),
              b"\x00" * 1000, "é".encode() * 100]
    bodies += [bytes(b ^ (rng.random() < 0.01) * rng.getrandbits(8) for b in good[:4000]) for _ in range(5)]
    statuses = []
    for body in bodies:
        r = httpx.post(f"http://{url}/v1/audio/transcriptions", files={"file": ("a.wav", body)}, data={"model": "m"})
        statuses.append(r.status_code)
        assert r.status_code < 500, r.text
        if r.status_code != 200:  # a damaged file may still decode
            assert r.json()["error"]["message"] and "Traceback" not in r.text
    assert statuses[:6] == [400] * 6
    post = lambda **kw: httpx.post(f"http://{url}/v1/audio/transcriptions", **kw)  # noqa: E731
    cases = [
        post(files={"file": ("a.flac", good)}, data={"model": "m", "response_format": "xml"}),
        post(files={"file": ("a.flac", good)}, data={"model": "m", "timestamp_granularities[]": "letter",
                                                   "response_format": "verbose_json"}),
        post(files={"file": ("a.flac", good)}, data={"model": "m", "timestamp_granularities[]": "word"}),
        post(files={"file": ("a.flac", good)}, data={"model": "m", "temperature": "warm"}),
        post(files={"file": ("a.flac", good)}),  # no model
        post(data={"model": "m", "file": "/etc/passwd"}),  # a path instead of a file
        post(json={"model": "m", "file": "x"}),
        post(content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=x"}),
        httpx.get(f"http://{url}/v1/audio/transcriptions"),
        httpx.get(f"http://{url}/../../etc/passwd"),
        httpx.get(f"http://{url}/static/../../../etc/passwd"),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert r.json()["error"]["message"], r.text
        assert "root:" not in r.text
    assert cases[0].json()["error"]["param"] == "response_format"


def test_limits_and_a_full_queue(model, files):
    small = Path(files[0]).read_bytes()
    with server(model, max_upload_mb=0.05, max_audio_seconds=3.0) as where:
        r = httpx.post(f"http://{where}/v1/audio/transcriptions", files={"file": ("a.flac", small)}, data={"model": "m"})
        assert r.status_code == 413 and "--max-upload-mb" in r.json()["error"]["message"]
        # the same upload sent without a Content-Length (chunked): stopped as the bytes arrive
        body = httpx.Request("POST", "http://x", files={"file": ("a.flac", small)}, data={"model": "m"})
        r = httpx.post(f"http://{where}/v1/audio/transcriptions", content=iter([body.read()]),
                       headers={"content-type": body.headers["content-type"]})
        assert r.status_code == 413
        tiny_clip = io.BytesIO()
        sf.write(tiny_clip, np.zeros(16000 * 4, np.float32), 16000, format="FLAC")  # 4 s of silence: few bytes
        r = httpx.post(f"http://{where}/v1/audio/transcriptions", files={"file": ("s.flac", tiny_clip.getvalue())},
                       data={"model": "m"})
        assert r.status_code == 413 and "--max-audio-seconds" in r.json()["error"]["message"]
    # one request in flight at most, held in the batcher for 1.5 s: the second gets 503 and Retry-After
    with server(model, max_queue=1, max_wait_ms=1500) as where:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(httpx.post, f"http://{where}/v1/audio/transcriptions",
                                files={"file": ("a.flac", small)}, data={"model": "m"}, timeout=30)
            deadline = time.monotonic() + 10
            while httpx.get(f"http://{where}/health").json()["requests"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            r = httpx.post(f"http://{where}/v1/audio/transcriptions", files={"file": ("a.flac", small)}, data={"model": "m"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert first.result().status_code == 200
    with server(model, request_timeout=0.3, max_wait_ms=1500) as where:
        r = httpx.post(f"http://{where}/v1/audio/transcriptions", files={"file": ("a.flac", small)}, data={"model": "m"})
        assert r.status_code == 503 and "--request-timeout" in r.json()["error"]["message"]
        assert httpx.get(f"http://{where}/health").json()["requests"] == 0
        time.sleep(1.5)  # past the batcher's wait: the abandoned request's audio was never run
        assert httpx.get(f"http://{where}/health").json()["forward_passes"] == 0


def test_api_key_and_cors(model, files):
    key = "s3cret-key-123"
    with server(model, api_key=key) as where:
        with open(files[0], "rb") as fh:
            assert client(where, key).audio.transcriptions.create(model="m", file=fh).text
        for given in ("wrong-key-0000", ""):
            with pytest.raises(openai.AuthenticationError):
                with open(files[0], "rb") as fh:
                    client(where, given or "x").audio.transcriptions.create(model="m", file=fh)
        r = httpx.get(f"http://{where}/v1/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"http://{where}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(f"http://{where}/health").status_code == 200  # liveness needs no key
        preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        r = httpx.options(f"http://{where}/v1/audio/transcriptions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers  # CORS is off by default
    with server(model, cors=("http://app.example",)) as where:
        r = httpx.options(f"http://{where}/v1/audio/transcriptions",
                          headers={**preflight, "Origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = httpx.options(f"http://{where}/v1/audio/transcriptions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers


def test_page_and_its_files_and_nothing_else(model, monkeypatch, tmp_path):
    import w2vcli.serve.app as app_module

    (tmp_path / "secret.txt").write_text("root:x:0:0")
    static = tmp_path / "static"
    static.mkdir()
    monkeypatch.setattr(app_module, "STATIC", static)
    with server(model) as where:
        r = httpx.get(f"http://{where}/")
        assert r.status_code == 404 and "page" in r.json()["error"]["message"]
        (static / "index.html").write_text("<!doctype html><title>w2v</title>")
        (static / "app.js").write_text("let x = 1;")
        r = httpx.get(f"http://{where}/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "<title>w2v" in r.text
        assert httpx.get(f"http://{where}/static/app.js").text == "let x = 1;"
        for path in ("/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt", "/static/%2e%2e%2fsecret.txt"):
            r = httpx.get(f"http://{where}{path}")
            assert r.status_code == 404 and "root:" not in r.text


def serve_process(ckpt: Path, *args: str, **popen) -> tuple[subprocess.Popen, str]:
    """`w2v serve CKPT ARGS` in its own process on a free loopback port, once it answers /health:
    (the process, "http://127.0.0.1:PORT")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "w2vcli", "serve", str(ckpt), "--port", str(port), "--device", "cpu",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.stdout.read().decode())
        time.sleep(0.1)


def test_sigterm_finishes_the_request_in_flight(model, files, solo, tmp_path):
    """`w2v serve` in its own process: a request held in the batcher when SIGTERM arrives still
    gets its transcript, an open stream gets the finals of the audio it sent and close code 1012,
    then the server exits 0 and takes no new connection."""
    import asyncio

    import websockets
    from w2vcli.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model)
    proc, base = serve_process(ckpt, "--max-wait-ms", "1000")
    port = base.rsplit(":", 1)[1]
    try:
        result = {}

        def request():
            with open(files[0], "rb") as fh:
                result["r"] = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": fh}, data={"model": "m"},
                                         timeout=30)

        wav, _ = sf.read(files[1], dtype="int16")
        pcm = wav[: 2 * 16000].tobytes()  # 2 s

        async def live_stream():
            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                await ws.send(pcm)
                got = [json.loads(await ws.recv())]  # a partial: the audio is being transcribed
                t = threading.Thread(target=request)
                t.start()
                while httpx.get(f"{base}/health").json()["requests"] < 1:
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                try:
                    async for m in ws:
                        got.append(json.loads(m))
                except websockets.exceptions.ConnectionClosedError:
                    pass
                t.join(30)
                return got, ws.close_code

        got, code = asyncio.run(live_stream())
        assert got[0]["type"] == "partial" and code == 1012
        finals = [m for m in got if m["type"] == "final"]
        assert finals and abs(finals[-1]["end"] - 2.0) < 0.05  # every final, to the end of the audio sent
        assert result["r"].status_code == 200 and result["r"].json()["text"] == solo[files[0]]["text"]
        assert proc.wait(30) == 0
        # tests pin fp32 (conftest), where the server batches by default, and says so at start
        assert "batching: up to 8 waveforms a forward pass across clients (fp32" in proc.stdout.read().decode()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bf16_long_upload_runs_its_windows_as_transcribe_does(model, files, monkeypatch, tmp_path):
    """A long upload's windows go through in transcribe's groups of `batch_size` (here 3 windows
    a pass), never split, even where the server batches nothing across clients (bf16): so its
    transcript is transcribe's to the bit, whatever a batch does to a row's rounding."""
    from w2vcli import cpu

    monkeypatch.setattr(cpu, "cpu_features", lambda: cpu.CpuFeatures(bf16=True, amx=True, vnni=True, capability="AVX512"))
    monkeypatch.delenv("W2V_CPU_MODE", raising=False)  # tests pin fp32 (conftest): let auto choose bf16
    wav = np.concatenate([sf.read(f, dtype="float32")[0] for f in files[:3]])  # ~20 s
    long = tmp_path / "long.wav"
    sf.write(long, wav, 16000)
    options = transcribe_options(chunk_seconds=2.0, context_seconds=1.0, batch_size=3)
    want = w2vcli.transcribe(model, str(long), options).to_dict()
    windows = len(Emitter(model, options.emission).windows(wav))
    assert windows > 6
    with server(model, options=options) as url:
        got = post_verbose(url, str(long))
        health = httpx.get(f"http://{url}/health").json()
    assert got["text"] == want["text"] and got["words"] == want["words"]
    assert health["max_batch"] == 1 and health["waveforms"] == windows
    assert health["forward_passes"] == -(-windows // 3)  # the groups of transcribe, not one window a pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_whole_group_stops_server_and_decoder_processes(model, files, tiny_lm, tmp_path, sig):
    """`systemctl stop` sends SIGTERM to every process of the service, and Ctrl-C sends SIGINT to
    the terminal's whole process group: with --jobs 2 the decoder processes get it too. They used
    to die, be re-forked by the pool and leave the server hanging with three processes; now the
    server answers, drains and exits 0, and no decoder process outlives it."""
    from w2vcli.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model)
    proc, base = serve_process(ckpt, "--lm", str(tiny_lm), "--beam", "4", "--jobs", "2", start_new_session=True)
    try:
        with open(files[0], "rb") as fh:  # the decoder processes have worked
            assert httpx.post(f"{base}/v1/audio/transcriptions", files={"file": fh}, data={"model": "m"},
                              timeout=30).status_code == 200
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                   text=True).stdout.split()]
        assert len(children) == 2
        os.killpg(proc.pid, sig)
        assert proc.wait(30) == 0, proc.stdout.read().decode()
        time.sleep(0.5)
        alive = [c for c in children if os.path.exists(f"/proc/{c}") and "Z" not in open(f"/proc/{c}/stat").read().split()[2]]
        assert not alive, f"decoder processes {alive} outlived the server"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serve_command_checks_its_options_before_loading(tmp_path):
    from typer.testing import CliRunner

    from w2vcli.cli import app

    missing = tmp_path / "none.pt"
    for args, message in ((["--api-key", "short"], "at least 8 characters"), (["--max-upload-mb", "0"], "--max-upload-mb"),
                          (["--partial-seconds", "-1"], "--partial-seconds")):
        r = CliRunner().invoke(app, ["serve", str(missing), *args])
        assert r.exit_code == 1 and message in r.stderr, r.output
    r = CliRunner().invoke(app, ["serve", str(missing)], env={"W2V_API_KEY": "short"})
    assert r.exit_code == 1 and "at least 8 characters" in r.stderr
    r = CliRunner().invoke(app, ["serve", str(missing)])
    assert r.exit_code == 1 and "none.pt" in r.stderr
