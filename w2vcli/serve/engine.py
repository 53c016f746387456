"""The server's model and decoders, shared by every client.

One thread runs the acoustic model for all clients (`Batcher`): requests and stream windows put
waveforms in one queue, and the thread takes up to `max_batch` of them, waiting at most
`max_wait_ms` after the first for others to arrive, then runs them through `Emitter.batch`. That
groups them into forward passes that change no row's result (equal lengths on a CPU, little
padding on a GPU, and group norm over each row's valid frames: w2vcli/decode/emissions.py), so a
client gets the emissions, and so the transcript, it would get alone. That holds in fp32; in
bf16, fp16 or int8 a batched row rounds differently enough to change letters, so there the
default `max_batch` is 1 (`ServeOptions.batch_size`).

Decoding runs off the event loop: greedy decoding and single-process beam search in one decoder
thread, and `--jobs N` beam search in N forked decoder processes (`DecoderPool`), forked when the
engine is built, before the server starts its threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from w2vcli.decode.ctc import DecoderPool, Hypothesis
from w2vcli.decode.emissions import Emitter, kept_frames
from w2vcli.decode.transcribe import Transcript, TranscribeOptions, model_decoder
from w2vcli.errors import W2VError


DEFAULT_MAX_BATCH = 8  # waveforms per forward pass across clients in fp32 (ServeOptions.batch_size)


@dataclass(frozen=True)
class ServeOptions:
    """Batching, limits and live-stream settings of `w2v serve`; validates itself."""

    max_batch: int | None = None  # waveforms (requests or windows) per forward pass, across clients; None: `batch_size`
    max_wait_ms: float = 5.0  # how long the first waiting waveform waits for others
    max_queue: int = 32  # REST requests admitted at once (uploading, waiting or running); more: 503
    max_streams: int = 16  # websocket streams open at once; more: closed with 1013 (try again later)
    max_upload_mb: float = 25.0  # largest upload (OpenAI's limit)
    max_audio_seconds: float = 1800.0  # longest audio of one request
    request_timeout: float = 300.0  # s from the request's arrival to its response
    max_stream_seconds: float = 3600.0  # longest audio of one websocket stream
    idle_seconds: float = 30.0  # a stream that sends nothing this long is closed
    stream_chunk_seconds: float = 2.0  # kept centre of a stream window (the stitched windows of `transcribe`)
    stream_context_seconds: float = 1.0  # audio on each side of a stream window's centre
    partial_seconds: float = 0.5  # a partial result after this much new audio
    silence_seconds: float = 0.6  # a segment ends after this much silence (blanks and word boundaries)
    max_segment_seconds: float = 20.0  # a segment longer than this ends at its last silent frame

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_streams"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise W2VError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("max_upload_mb", "max_audio_seconds", "request_timeout", "max_stream_seconds", "idle_seconds",
                     "stream_chunk_seconds", "partial_seconds", "silence_seconds", "max_segment_seconds"):
            if not getattr(self, name) > 0:
                raise W2VError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.stream_context_seconds < 0:
            raise W2VError("--max-wait-ms and --stream-context-seconds must be >= 0")

    def batch_size(self, mode: str) -> tuple[int, str]:
        """Waveforms per forward pass across clients, and why, for a model running in `mode`.

        Batching changes no row's result in fp32 (rows round differently only by ~1e-5, which
        moves no word); in bf16, fp16 or int8 a batched row rounds differently enough to change
        letters where the model hesitates (the load benchmark: 10 of 64 uploads of a base model
        at 16 clients in bf16, 0 of 312 in fp32). So by default only fp32 batches across clients;
        an explicit --max-batch is taken as it is."""
        if self.max_batch is not None:
            return self.max_batch, f"batching: up to {self.max_batch} waveforms a forward pass across clients (--max-batch)"
        if mode == "fp32":
            return DEFAULT_MAX_BATCH, (f"batching: up to {DEFAULT_MAX_BATCH} waveforms a forward pass across clients "
                                       "(fp32, where batching changes no transcript)")
        return 1, (f"batching: none across clients, as in {mode} a batched row rounds differently and can change "
                   "a transcript (--max-batch N batches anyway; --precision fp32 batches by default)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class Batcher:
    """Runs `emitter.batch` in one thread for waveforms from any number of clients (module docstring)."""

    def __init__(self, emitter: Emitter, max_batch: int, max_wait_ms: float):
        self.emitter, self.max_batch, self.max_wait = emitter, max_batch, max_wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="w2v-batcher", daemon=True)
        self._thread.start()
        self.passes = 0  # calls of emitter.batch, and the waveforms they took (for /health and tests)
        self.waveforms = 0

    async def run(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities [T_i,V] of each waveform [S_i] of one client, computed in batches with
        other clients'. The waveforms go in groups of the emitter's `batch_size`, as `w2v
        transcribe` runs the windows of a long file, and a group is never split: where a batched
        row rounds by its batch (bf16), a long upload still gets exactly transcribe's result."""
        futures = [concurrent.futures.Future() for _ in wavs]
        size = self.emitter.options.batch_size
        for i in range(0, len(wavs), size):
            self._queue.put(list(zip(wavs[i:i + size], futures[i:i + size])))
        # a client that goes away (or runs out of time) cancels its waveforms not yet run
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    def _loop(self) -> None:
        held = None  # a group taken from the queue that did not fit the last pass
        while True:
            first = held if held is not None else self._queue.get()
            held = None
            if first is None:
                return
            items = list(first)
            deadline = time.monotonic() + self.max_wait
            while len(items) < self.max_batch:
                try:
                    group = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if group is None:
                    self._queue.put(None)  # stop after this batch
                    break
                if len(items) + len(group) > self.max_batch:
                    held = group  # whole groups only: it starts the next pass
                    break
                items.extend(group)
            items = [(w, f) for w, f in items if f.set_running_or_notify_cancel()]
            if not items:
                continue
            try:
                outs = self.emitter.batch([w for w, _ in items])
            except Exception as exc:  # noqa: BLE001 - handed to the waiting clients, who answer for it
                for _, f in items:
                    f.set_exception(exc)
                continue
            self.passes += 1
            self.waveforms += len(items)
            for (_, f), lp in zip(items, outs):
                f.set_result(lp)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Decoders:
    """Decoding off the event loop: one decoder thread, or a `DecoderPool` of forked processes."""

    def __init__(self, decoder, jobs: int):
        self.decoder = decoder
        self.pool = DecoderPool(decoder, jobs) if jobs > 1 else None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="w2v-decoder")

    async def decode(self, log_probs: np.ndarray) -> Hypothesis:
        if self.pool is None:
            return await asyncio.wrap_future(self._thread.submit(self.decoder.decode, log_probs))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(result) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(result[0]))

        def failed(exc) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

        self.pool.submit(log_probs, callback=done, error_callback=failed)
        return await fut

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self.pool is not None:
            self.pool.close()


class Engine:
    """A model ready to serve: its emitter, batcher and decoders, shared by every client."""

    def __init__(self, model, options: TranscribeOptions, serve: ServeOptions, model_id: str):
        self.model, self.options, self.serve, self.model_id = model, options, serve, model_id
        self.emitter = Emitter(model, options.emission)
        self.decoders = Decoders(model_decoder(model, options.decoding),
                                 options.jobs if options.decoding.method == "beam" else 1)
        self.max_batch, self.batching = serve.batch_size(str(self.emitter.mode))  # and the line logged at start
        self.batcher = Batcher(self.emitter, self.max_batch, serve.max_wait_ms)
        self.vocab = model.vocab
        self.created = int(time.time())

    @property
    def frame_seconds(self) -> float:
        return self.emitter.frame_seconds

    async def emissions(self, wav: np.ndarray) -> np.ndarray:
        """Log-probabilities [T,V] of a waveform [S]: the windows `transcribe` would run (one for
        short audio), batched with other clients', their kept centres stitched."""
        windows = self.emitter.windows(wav)
        lps = await self.batcher.run([w.wav for w in windows])
        pieces = [kept_frames(w, lp, self.emitter.frame_stride) for w, lp in zip(windows, lps)]
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    async def transcribe(self, wav: np.ndarray, name: str = "") -> Transcript:
        """What `w2v transcribe` writes for this audio, with the same options."""
        hyp = await self.decoders.decode(await self.emissions(wav))
        return Transcript(name, hyp, len(wav), self.frame_seconds, self.options.timestamps == "char")

    def close(self) -> None:
        self.batcher.close()
        self.decoders.close()
