"""Load benchmark of `w2v serve` on loopback: REST and live streams, 1 to 64 clients, against
sequential `w2v transcribe` of the same files in the same run.

    python bench/studies/serve.py                                   # small and base, 1 4 16 64 clients
    python bench/studies/serve.py --presets small --clients 1 4 --md /tmp/serve.md

For each model preset (`small`: the demo's size, 2.3 M parameters; `base`: the paper's BASE,
95 M) a CTC checkpoint with random weights (seed 0) is made: throughput does not depend on
training, and a random model's letter salad, whose best letter often wins by a hair, makes "the
same transcript as alone" a sharp check (`--checkpoint` adds trained models, whose margins are
wider). The audio is tests/data/real-mini (ten real utterances, 49 s).

1. Baseline: `w2v transcribe MODEL FILES --batch-size 1` in its own process, the files one after
   another, `--repeat` times over (and, for reference, the default `--batch-size 8`); its own
   summary line gives the audio seconds per wall second, model loading excluded. Its
   transcripts are the "solo" ones. It runs again after the server's levels, and the ratios
   divide by the mean of the two (the machine is shared; both are printed).
2. `w2v serve MODEL` on a free loopback port, with its queue and stream limits raised to the
   largest client count (so the benchmark measures capacity, not admission; 503s are still
   counted and retried after Retry-After).
3. REST: N clients, each posting `--requests`/N files (at least 2) one after another; throughput
   = audio seconds answered / wall seconds of the level; latency = request sent to response read.
4. Streams: N websocket clients, each sending one file as pcm_s16le in 0.1 s messages paced at
   real time (message k leaves when its audio would have been recorded). Latency of a partial
   or final result = its arrival - the moment the audio up to its `end` was recorded, so 0 is
   "caught up with real time". The transcript (finals joined) is compared with the solo
   transcript of the file with the server's stream windows.

`--threads`, `--precision` (auto: bf16 on a CPU with native bf16) apply to the server and the
baseline alike; `--max-batch` is the server's (default: the server's own, 8 in fp32 and 1 in
bf16 or int8; 1: no batching across clients).
Client and server share the machine's cores (the client process averaged 1.6 % of a core over
a base-model run). Results: markdown tables on stdout (and --md FILE), one JSON line per level;
docs/benchmarks.md ("Serving") has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.common import cpu_model, load_average  # noqa: E402

REAL_MINI = REPO / "tests" / "data" / "real-mini"
CHUNK_SECONDS = 0.1  # s of audio per websocket message
RATE = 16000


def make_model(preset: str, out: Path) -> Path:
    """A CTC checkpoint of `preset` with random weights (seed 0), varied output."""
    import torch

    from w2vcli.model.checkpoint import build_model, save_checkpoint
    from w2vcli.model.config import get_preset
    from w2vcli.text import SPECIALS, Vocabulary

    vocab = Vocabulary(list(SPECIALS) + list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ"))
    torch.manual_seed(0)
    model = build_model("ctc", get_preset(preset), vocab)
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0)
        model.head.bias[vocab.index["|"]] += 1.0
    path = out / f"{preset}.pt"
    save_checkpoint(path, model)
    return path


def w2v(*args: str) -> list[str]:
    return [sys.executable, "-m", "w2vcli", *args]


@dataclass
class Baseline:
    name: str
    audio_per_s: float  # from the command's own summary (model loading excluded)
    mode: str  # how the model ran (fp32, bf16, int8), from the same line
    wall: float  # the whole process, model loading included
    texts: dict[str, str]


def baseline(model: Path, files: list[str], threads: int, precision: str, extra: list[str], name: str) -> Baseline:
    """`w2v transcribe` of `files` in one process; its throughput and transcripts."""
    t0 = time.perf_counter()
    res = subprocess.run(w2v("transcribe", str(model), *files, "--format", "jsonl", "--device", "cpu",
                             "--threads", str(threads), "--precision", precision, *extra), capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"w2v transcribe failed: {res.stderr[-2000:]}")
    m = re.search(r"\(([\d.]+) audio s per wall s; model(?: \((\w+)\))?", res.stderr)
    texts = {}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            texts[row["audio"]] = row["text"]
    return Baseline(name, float(m.group(1)) if m else float("nan"), (m.group(2) or "?") if m else "?", wall, texts)


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, args, log: Path) -> subprocess.Popen:
    cmd = w2v("serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
              "--threads", str(args.threads), "--max-queue", str(2 * max(args.clients)),
              "--max-streams", str(max(args.clients)), "--stream-chunk-seconds", str(args.stream_chunk),
              "--stream-context-seconds", str(args.stream_context), "--precision", args.precision,
              *(["--max-batch", str(args.max_batch)] if args.max_batch else []))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"w2v serve exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("w2v serve did not start within 180 s")


def wait_idle(url: str, seconds: float = 600) -> None:
    """Until the server has no request or stream left from the last level (an overloaded server
    is still working through the windows of streams whose clients have gone)."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/health", timeout=10) as res:
            health = json.loads(res.read())
        if health["requests"] == 0 and health["streams"] == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"the server still had work after {seconds:.0f} s: {health}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- clients ------------------------------------------------------------------------------------


@dataclass
class Level:
    mode: str  # rest | stream
    clients: int
    audio: float = 0.0  # s of audio answered
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)  # REST: request; stream: final results
    partials: list[float] = field(default_factory=list)  # stream: partial results
    server_errors: int = 0  # 5xx (REST), error messages or abnormal closes (streams)
    errors: list[str] = field(default_factory=list)  # streams: the server's error messages, close codes
    busy: int = 0  # 503 answers (retried) among server_errors
    differ: int = 0  # transcripts unlike the solo one
    differ_files: set[str] = field(default_factory=set)
    done: int = 0

    def row(self) -> dict:
        def pct(xs: list[float], q: float) -> float | None:
            return round(float(np.percentile(xs, q)), 3) if xs else None

        return {"mode": self.mode, "clients": self.clients, "transcripts": self.done, "audio_s": round(self.audio, 1),
                "wall_s": round(self.wall, 2), "audio_s_per_s": round(self.audio / self.wall, 2) if self.wall else None,
                "p50_final": pct(self.latencies, 50), "p95_final": pct(self.latencies, 95),
                "p50_partial": pct(self.partials, 50), "p95_partial": pct(self.partials, 95),
                "differ": self.differ, "differ_files": sorted(self.differ_files), "5xx": self.server_errors,
                "503": self.busy, "errors": sorted(set(self.errors))}  # fmt: skip


async def rest_level(url: str, files: list[tuple[str, bytes, float]], solo: dict[str, str], clients: int, per_client: int) -> Level:
    import httpx

    level = Level("rest", clients)

    async def client(i: int, http: httpx.AsyncClient) -> None:
        for k in range(per_client):
            path, data, seconds = files[(i + k) % len(files)]
            t0 = time.perf_counter()
            while True:
                res = await http.post(url + "/v1/audio/transcriptions", files={"file": (Path(path).name, data)},
                                      data={"model": "w2v", "response_format": "json"})  # fmt: skip
                if res.status_code == 503:
                    level.busy += 1
                    level.server_errors += 1
                    await asyncio.sleep(float(res.headers.get("retry-after", "1")))
                    continue
                break
            if res.status_code >= 500:
                level.server_errors += 1
                continue
            res.raise_for_status()
            level.latencies.append(time.perf_counter() - t0)
            level.audio += seconds
            level.done += 1
            if res.json()["text"] != solo[path]:
                level.differ += 1
                level.differ_files.add(Path(path).stem)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        level.wall = time.perf_counter() - t0
    return level


async def stream_one(url: str, pcm: np.ndarray, level: Level) -> str | None:
    """Stream `pcm` (int16) at real time; the transcript, or None after a server error (kept in
    `level.errors`: the error message, or the close code)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    step = int(CHUNK_SECONDS * RATE)
    finals: list[str] = []

    async def send(ws, t0: float) -> None:
        try:
            for k in range(0, len(pcm), step):
                chunk = pcm[k : k + step]
                await asyncio.sleep(max(0.0, t0 + (k + len(chunk)) / RATE - time.perf_counter()))
                await ws.send(chunk.tobytes())
            await ws.send(json.dumps({"type": "end"}))
        except ConnectionClosed:
            pass  # the receiving side reports why

    try:
        async with connect(url.replace("http", "ws", 1) + "/v1/stream", max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "format": "pcm_s16le"}))
            t0 = time.perf_counter()
            sender = asyncio.create_task(send(ws, t0))
            try:
                async for raw in ws:
                    m = json.loads(raw)
                    behind = time.perf_counter() - (t0 + float(m.get("end", 0.0)))
                    if m["type"] == "partial":
                        level.partials.append(behind)
                    elif m["type"] == "final":
                        level.latencies.append(behind)
                        if m["text"]:
                            finals.append(m["text"])
                    elif m["type"] == "done":
                        return " ".join(finals)
                    elif m["type"] == "error":
                        level.errors.append(m["message"])
                        return None
            finally:
                sender.cancel()
    except ConnectionClosed as exc:
        level.errors.append(f"closed {exc.rcvd.code} {exc.rcvd.reason!r}" if exc.rcvd else "closed without a close frame")
        return None
    level.errors.append("closed without done")
    return None


async def stream_level(url: str, files: list[tuple[str, bytes, float]], solo: dict[str, str], clients: int) -> Level:
    level = Level("stream", clients)
    pcms = [(path, sf.read(path, dtype="int16")[0].astype("<i2"), s) for path, _, s in files]  # the file's own samples

    async def client(i: int) -> None:
        path, pcm, seconds = pcms[i % len(pcms)]
        text = await stream_one(url, pcm, level)
        if text is None:
            level.server_errors += 1
        else:
            level.done += 1
            level.audio += seconds
            if text != solo[path]:
                level.differ += 1
                level.differ_files.add(Path(path).stem)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    level.wall = time.perf_counter() - t0
    return level


# --- the run ------------------------------------------------------------------------------------


def run_preset(preset: str, args, files: list[str], work: Path) -> tuple[list[Baseline], list[dict]]:
    """`preset`: a preset name (random weights) or a checkpoint's path (--checkpoint)."""
    model = Path(preset) if preset.endswith(".pt") else make_model(preset, work)
    print(f"## {preset}: load {load_average()}", flush=True)
    many = files * args.repeat  # long enough to time
    seq = baseline(model, many, args.threads, args.precision, ["--batch-size", "1"], "transcribe -b 1 (sequential)")
    batched = baseline(model, many, args.threads, args.precision, [], "transcribe -b 8 (default)")
    # the solo transcript of a stream: the same file through the server's stream windows
    stream_solo = baseline(model, files, args.threads, args.precision, ["--batch-size", "1", "--chunk-seconds", str(args.stream_chunk),
                                                        "--context-seconds", str(args.stream_context)], "stream windows")  # fmt: skip
    print(f"{seq.name}: {seq.audio_per_s:.2f} audio s/s; {batched.name}: {batched.audio_per_s:.2f}", flush=True)
    audio = [(f, Path(f).read_bytes(), sf.info(f).frames / sf.info(f).samplerate) for f in files]
    port = free_port()
    log = work / f"serve-{model.stem}.log"
    proc = start_server(model, port, args, log)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        asyncio.run(rest_level(url, audio[:1], seq.texts, 1, 1))  # warm-up
        for mode in args.modes:
            for n in args.clients:
                wait_idle(url)
                load = load_average()
                if mode == "rest":
                    level = asyncio.run(rest_level(url, audio, seq.texts, n, max(2, math.ceil(args.requests / n))))
                else:
                    level = asyncio.run(stream_level(url, audio, stream_solo.texts, n))
                row = {"preset": preset, **level.row(), "load_before": load, "load_after": load_average()}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        stop_server(proc)
        if any(r["errors"] or r["5xx"] for r in rows):
            print(f"the server's log (last lines):\n{''.join(log.read_text().splitlines(True)[-40:])}", flush=True)
    # the sequential baseline again after the server: the machine is shared, so its load drifts
    seq_after = baseline(model, many, args.threads, args.precision, ["--batch-size", "1"], "transcribe -b 1 (sequential), after")
    print(f"{seq_after.name}: {seq_after.audio_per_s:.2f} audio s/s", flush=True)
    return [seq, seq_after, batched], rows


def markdown(results: dict[str, tuple[list[Baseline], list[dict]]], args) -> str:
    out = [f"`python bench/studies/serve.py {' '.join(sys.argv[1:])}` (threads {args.threads}, server --max-batch {args.max_batch or 'default'}), "
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
           f"{os.cpu_count()} cores; load average at the end {load_average()}.", ""]  # fmt: skip
    for preset, (bases, rows) in results.items():
        what = "trained checkpoint" if preset.endswith(".pt") else "random weights"
        seq = (bases[0].audio_per_s + bases[1].audio_per_s) / 2  # before and after the server's levels
        out += [f"**{preset}** ({what}, runs in {bases[0].mode}). Baselines: "
                + "; ".join(f"`{b.name}` {b.audio_per_s:.2f} audio s/s" for b in bases)
                + f". \"x sequential\" divides by their mean before and after, {seq:.2f}.", ""]  # fmt: skip
        out += ["| mode | clients | audio s/s | x sequential | p50 / p95 final s | p50 / p95 partial s | transcripts | differ from solo | 5xx (503) | load before |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in rows:
            fin = f"{r['p50_final']} / {r['p95_final']}" if r["p50_final"] is not None else "-"
            par = f"{r['p50_partial']} / {r['p95_partial']}" if r["p50_partial"] is not None else "-"
            speed = r["audio_s_per_s"] or 0.0
            out.append(f"| {r['mode']} | {r['clients']} | {speed:.2f} | {speed / seq:.2f} | {fin} | {par} | "
                       f"{r['transcripts']} | {r['differ']} | {r['5xx']} ({r['503']}) | {r['load_before']} |")  # fmt: skip
        differ = [f"{r['mode']} x {r['clients']}: {', '.join(r['differ_files'])}" for r in rows if r["differ_files"]]
        out += ["", "Files whose transcript differed from solo: " + ("; ".join(differ) if differ else "none") + "."]
        errors = [f"{r['mode']} x {r['clients']}: {', '.join(r['errors'])}" for r in rows if r.get("errors")]
        if errors:
            out += ["", "Stream errors: " + "; ".join(errors) + "."]
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="*", default=["small", "base"], help="model presets, random weights")
    ap.add_argument("--checkpoint", nargs="*", default=[], help="also these trained CTC checkpoints (.pt)")
    ap.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 64])
    ap.add_argument("--modes", nargs="+", default=["rest", "stream"], choices=["rest", "stream"])
    ap.add_argument("--requests", type=int, default=60, help="REST requests per level (at least 2 per client)")
    ap.add_argument("--repeat", type=int, default=4, help="the baseline transcribes the files this many times")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="model threads, for the server and the baseline alike")
    ap.add_argument("--stream-chunk", type=float, default=2.0, help="the server's stream window centre (s), for the solo stream transcripts")
    ap.add_argument("--stream-context", type=float, default=1.0, help="the server's stream window context (s)")
    ap.add_argument("--max-batch", type=int, default=None, help="the server's --max-batch (default: the server's, 8 in fp32, "
                    "1 in bf16 or int8; 1: no batching)")
    ap.add_argument("--precision", default="auto", help="auto | fp32 | bf16, for the server and the baseline alike "
                    "(auto: bf16 on a CPU with native bf16, else fp32)")
    ap.add_argument("--md", type=Path, help="also write the markdown tables here")
    args = ap.parse_args()
    files = sorted(str(p) for p in REAL_MINI.rglob("*.flac"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in [*args.presets, *args.checkpoint]:
            results[preset] = run_preset(preset, args, files, Path(tmp))
    text = markdown(results, args)
    print(text)
    if args.md:
        args.md.write_text(text + "\n")


if __name__ == "__main__":
    main()
