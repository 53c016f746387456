"""A live stream over a websocket: PCM in, partial and final results out (protocol: docs/serve.md).

The audio is cut into the windows `w2v transcribe` runs (w2vcli/decode/emissions.py) with the
stream's chunk and context, by its rule: audio no longer than chunk + context is one pass over the
whole of it, so a stream that short is run once, at its end; beyond that, window k is run once the
audio passes chunk + context and reaches the window's right edge `c_k + chunk + context`, and its
kept centre adds `chunk` samples of final ("stable") frames. So the stable emissions of a stream
are exactly those of `transcribe --chunk-seconds CHUNK --context-seconds CONTEXT` on the whole
recording.

Segments are cut on the stable frames, where the model's best unit has been silent (the blank,
another special, or the word boundary) for `silence_seconds`, and for a letter vocabulary only
where that silence holds a word boundary, so no word is split and greedy decoding of the
segments gives the words of greedy decoding of the whole. Silence before a segment's first
letter is dropped. A segment that reaches `max_segment_seconds` ends after its last word
boundary (any silent frame for units without one); without one, after its last silent frame
(the word is split, no letter doubled), or else where it is. Each segment is decoded once, into a "final" message.

Partials: every `partial_seconds` of new audio, the open segment's stable frames plus the frames
of one provisional window over the audio not yet final (the next window's start to the end of
what has arrived) are decoded. Partials are previews; finals never depend on them.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass

import numpy as np
import soxr

from w2vcli.audio import SAMPLE_RATE
from w2vcli.decode.ctc import Hypothesis
from w2vcli.decode.emissions import Window, kept_frames, needs_chunking
from w2vcli.text import SPECIALS, Vocabulary

FORMATS = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 192000  # Hz a stream may declare


class StreamError(Exception):
    """Bad input on a stream: the message is sent to the client, then the socket is closed with 1008."""


@dataclass(frozen=True)
class Segment:
    start: int  # first frame (of the whole stream)
    log_probs: np.ndarray  # [T,V] of frames [start, start + T)

    @property
    def end(self) -> int:
        return self.start + len(self.log_probs)


class StreamState:
    """A stream's audio not yet run, its stable frames of the open segment, and the segment cutter
    (module docstring). Pure bookkeeping: the caller runs the model and the decoder."""

    def __init__(self, vocab: Vocabulary, frame_stride: int, chunk: int, context: int, receptive_field: int,
                 silence_frames: int, max_segment_frames: int):
        if chunk <= 0 or chunk % frame_stride or context % frame_stride:
            raise ValueError(f"chunk {chunk} and context {context} must be whole frames of {frame_stride} samples")
        self.fs, self.chunk, self.context, self.receptive_field = frame_stride, chunk, context, receptive_field
        self.silence_frames, self.max_segment_frames = max(1, silence_frames), max(1, max_segment_frames)
        self.silent = np.array([t in SPECIALS or t == vocab.word_boundary for t in vocab.tokens])  # [V]
        self.boundary = vocab.index.get(vocab.word_boundary) if vocab.word_boundary else None
        self.needs_boundary = vocab.units == "letters"
        self.V = len(vocab)
        self.buf = np.zeros(0, np.float32)  # audio from sample buf_start on
        self.buf_start = 0
        self.total = 0  # samples received (16 kHz)
        self.k = 0  # next window
        self.lp = np.zeros((0, self.V), np.float32)  # stable frames [lp_start, frames)
        self.ids = np.zeros(0, np.int64)  # their best unit
        self.lp_start = 0
        self.scan = 0  # next stable frame the cutter looks at
        self._reset(0)

    @property
    def frames(self) -> int:
        """Stable frames so far."""
        return self.lp_start + len(self.lp)

    def _reset(self, start: int) -> None:
        self.seg_start = start  # first frame of the open segment
        self.letters = False  # a letter (a unit that is not silent) since seg_start
        self.run_start: int | None = None  # first frame of the current silent run
        self.run_boundary = False  # the run holds a word boundary
        self.gap: int | None = None  # end of the last word boundary (any silent frame: no boundary unit) after a letter
        self.gap_silent: int | None = None  # end of the last silent frame after a letter

    def add(self, samples: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, samples]) if len(self.buf) else samples
        self.total += len(samples)

    def windows(self, eof: bool) -> list[Window]:
        """The windows whose audio has all arrived (at the end: all that are left), in order;
        the same windows as `transcribe` runs for the whole recording (Emitter.windows): a stream
        no longer than chunk + context is one pass over all of it, run at its end; a longer one,
        the windows `iter_windows` cuts, from the moment it passes that length."""
        if self.k == 0 and not needs_chunking(self.total, self.chunk, self.context):
            if not eof or not self.total:  # short so far: wait for the end, or for more audio
                return []
            self.k = 1
            return [Window(0, 0, None, self.buf[: self.total].copy())]
        out = []
        while True:
            c = self.k * self.chunk
            ws, we = max(0, c - self.context), c + self.chunk + self.context
            if (not eof and self.total < we) or (eof and c >= self.total):
                break
            last = eof and c + self.chunk >= self.total
            out.append(Window(ws, c, None if last else c + self.chunk,
                              self.buf[ws - self.buf_start : min(we, self.total) - self.buf_start].copy()))
            self.k += 1
            if last:
                break
        drop = max(0, self.k * self.chunk - self.context - self.buf_start)  # no later window needs it
        self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop
        return out

    def tail(self) -> Window | None:
        """A provisional window over the audio not yet final (for a partial), or None if too short."""
        c = self.k * self.chunk
        if self.total <= c or self.total - max(0, c - self.context) < self.receptive_field:
            return None
        ws = max(0, c - self.context)
        return Window(ws, c, None, self.buf[ws - self.buf_start : self.total - self.buf_start].copy())

    def add_emissions(self, windows: list[Window], log_probs: list[np.ndarray]) -> None:
        for win, lp in zip(windows, log_probs):
            kept = kept_frames(win, lp, self.fs)
            self.lp = np.concatenate([self.lp, kept])
            self.ids = np.concatenate([self.ids, kept.argmax(axis=-1) if len(kept) else np.zeros(0, np.int64)])

    def open_frames(self) -> np.ndarray:
        """Stable frames of the open segment [T,V]."""
        return self.lp[self.seg_start - self.lp_start :]

    def segments(self, eof: bool) -> list[Segment]:
        """Segments that have ended (module docstring); at the end of the stream, the open one too."""
        out: list[Segment] = []
        t, frames = self.scan, self.frames
        while t < frames:
            tok = int(self.ids[t - self.lp_start])
            if not self.silent[tok]:
                self.letters, self.run_start, self.run_boundary = True, None, False
            elif not self.letters:  # silence before the first letter: not part of the segment
                self._reset(t + 1)
            else:
                if self.run_start is None:
                    self.run_start, self.run_boundary = t, False
                self.run_boundary |= tok == self.boundary
                self.gap_silent = t + 1
                if tok == self.boundary or not self.needs_boundary:
                    self.gap = t + 1
                if t + 1 - self.run_start >= self.silence_frames and (self.run_boundary or not self.needs_boundary):
                    out.append(self._cut(t + 1))
                    t += 1
                    continue
            if self.letters and t + 1 - self.seg_start >= self.max_segment_frames:
                end = self.gap or self.gap_silent or t + 1
                out.append(self._cut(end))
                t = end  # frames after a cut at an earlier gap are scanned again, for the next segment
                continue
            t += 1
        self.scan = t
        if eof and self.letters and self.frames > self.seg_start:
            out.append(self._cut(self.frames))
        self._forget(self.seg_start)  # silence before the open segment: no longer needed
        return out

    def _forget(self, start: int) -> None:
        """Drop the stable frames before frame `start`."""
        drop = start - self.lp_start
        if drop > 0:
            self.lp, self.ids, self.lp_start = self.lp[drop:], self.ids[drop:], start

    def _cut(self, end: int) -> Segment:
        seg = Segment(self.seg_start, self.lp[self.seg_start - self.lp_start : end - self.lp_start])
        self._forget(end)
        self._reset(end)
        return seg


def words_json(hyp: Hypothesis, first_frame: int, frame_seconds: float) -> list[dict]:
    """A hypothesis's words with times in seconds from the start of the stream."""
    out = []
    for w in hyp.words:
        d = {"word": w.word, "start": round((first_frame + w.start) * frame_seconds, 3),
             "end": round((first_frame + w.end) * frame_seconds, 3)}
        if w.confidence is not None:
            d["confidence"] = round(w.confidence, 4)
        out.append(d)
    return out


def parse_control(text: str, started: bool) -> dict:
    """A client's text message: {"type": "start", "sample_rate", "format"} (before any audio) or {"type": "end"}."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise StreamError("a text message must be JSON: {\"type\": \"start\", ...} or {\"type\": \"end\"}") from None
    if not isinstance(msg, dict) or msg.get("type") not in ("start", "end"):
        raise StreamError("a text message must be {\"type\": \"start\", \"sample_rate\": N, \"format\": F} "
                          "or {\"type\": \"end\"}")
    if msg["type"] == "start":
        if started:
            raise StreamError("\"start\" must come first, before any audio")
        unknown = sorted(set(msg) - {"type", "sample_rate", "format"})
        if unknown:
            raise StreamError(f"unknown field {unknown[0]!r} in \"start\" (fields: sample_rate, format)")
        rate = msg.get("sample_rate", SAMPLE_RATE)
        if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            raise StreamError(f"sample_rate must be a whole number of Hz in [{MIN_RATE}, {MAX_RATE}], got {rate!r}")
        fmt = msg.get("format", "pcm_s16le")
        if fmt not in FORMATS:
            raise StreamError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return msg


def pcm_samples(data: bytes, fmt: str) -> np.ndarray:
    """A binary message of whole mono PCM samples as float32 [S] in [-1, 1]."""
    dtype = FORMATS[fmt]
    if len(data) % dtype.itemsize:
        raise StreamError(f"a binary message must hold whole {fmt} samples ({dtype.itemsize} bytes each), "
                          f"got {len(data)} bytes")
    x = np.frombuffer(data, dtype=dtype)
    if fmt == "pcm_s16le":
        return x.astype(np.float32) / 32768.0
    if not np.isfinite(x).all():
        raise StreamError("pcm_f32le samples must be finite numbers")
    return np.clip(x.astype(np.float32), -1.0, 1.0)


class Stream:
    """One websocket stream: reads the client's messages and sends its results (docs/serve.md).

    A reader task takes every message off the socket as it arrives, into the stream's own queue,
    so the socket is always read: the client's keepalive pings are answered however far the
    model is behind (a socket left unread while the model works closes with 1011 "keepalive ping
    timeout"). The queue holds at most `--max-stream-seconds` of audio, the stream's limit, checked
    as the audio arrives. The stream's work (model, decoder, results) takes the queued audio in order."""

    def __init__(self, ws, engine):
        self.ws, self.engine, self.opts = ws, engine, engine.serve
        em = engine.emitter
        fs = em.frame_stride
        chunk = max(1, round(self.opts.stream_chunk_seconds * SAMPLE_RATE / fs)) * fs  # whole frames
        context = max(round(self.opts.stream_context_seconds * SAMPLE_RATE / fs) * fs, em.receptive_field // fs * fs + fs)
        self.state = StreamState(engine.vocab, fs, chunk, context, em.receptive_field,
                                 math.ceil(self.opts.silence_seconds / em.frame_seconds),
                                 math.ceil(self.opts.max_segment_seconds / em.frame_seconds))
        self.fmt, self.rate, self.resampler = "pcm_s16le", SAMPLE_RATE, None
        self.last_partial = 0  # samples at the last partial
        self.inbox: asyncio.Queue = asyncio.Queue()  # audio [S] at `rate`, then None at the client's "end"
        self.error: BaseException | None = None  # what ended the reader (bad input, the client left)

    async def send(self, msg: dict) -> None:
        """Send one message; a client that does not read for `idle_seconds` is given up."""
        await asyncio.wait_for(self.ws.send_text(json.dumps(msg)), self.opts.idle_seconds)

    async def read(self) -> None:
        """Read the client's messages into `inbox` until its "end" (then None), or until bad input
        or its leaving (then `error`, and None to wake the stream)."""
        started, seconds = False, 0.0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), self.opts.idle_seconds)
                except asyncio.TimeoutError:
                    raise StreamError(f"no message for {self.opts.idle_seconds:g} s") from None
                if message["type"] == "websocket.disconnect":
                    raise ConnectionResetError("client left")
                if message.get("text") is not None:
                    msg = parse_control(message["text"], started)
                    started = True
                    if msg["type"] == "end":
                        break
                    self.fmt, self.rate = msg.get("format", self.fmt), msg.get("sample_rate", self.rate)
                elif message.get("bytes") is not None:
                    started = True
                    samples = pcm_samples(message["bytes"], self.fmt)
                    seconds += len(samples) / self.rate
                    if seconds > self.opts.max_stream_seconds:
                        raise StreamError(f"the stream is longer than this server's --max-stream-seconds "
                                          f"{self.opts.max_stream_seconds:g}")
                    self.inbox.put_nowait(samples)
        except Exception as exc:  # noqa: BLE001 - raised by the stream's own task (run), which answers for it
            self.error = exc
        self.inbox.put_nowait(None)

    async def run(self, stopping: asyncio.Event | None = None) -> bool:
        """Serve the stream until the client's "end" (then True, after "done"), or until `stopping`
        is set (the server is shutting down: then False, after the finals of the audio received)."""
        reader = asyncio.ensure_future(self.read())
        stop = asyncio.ensure_future((stopping or asyncio.Event()).wait())
        try:
            while True:
                get = asyncio.ensure_future(self.inbox.get())
                done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    break
                samples = get.result()
                if self.error is not None:  # bad input or a client gone: the audio still queued is not run
                    raise self.error
                if samples is None:
                    break
                await self.audio(samples)
                if stop.done():
                    break
            if stop.done():  # shutting down: the audio read so far gets its finals, nothing more is read
                reader.cancel()
                while not self.inbox.empty():
                    samples = self.inbox.get_nowait()
                    if samples is not None:
                        self.add(samples)
        finally:
            reader.cancel()
            stop.cancel()
        if self.resampler is not None:
            self.state.add(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        await self.advance(eof=True)
        if stop.done() and not stop.cancelled():
            return False
        await self.send({"type": "done"})
        return True

    def add(self, samples: np.ndarray) -> None:
        """Audio at the stream's rate, resampled to 16 kHz, into the stream's state."""
        if self.rate != SAMPLE_RATE:
            if self.resampler is None:
                self.resampler = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            samples = self.resampler.resample_chunk(samples, last=False)
        self.state.add(np.ascontiguousarray(samples, dtype=np.float32))

    async def audio(self, samples: np.ndarray) -> None:
        self.add(samples)
        await self.advance(eof=False)

    async def advance(self, eof: bool) -> None:
        """Run the windows that are complete, send the finals of ended segments, then maybe a partial."""
        engine, state = self.engine, self.state
        windows = state.windows(eof)
        if windows:
            state.add_emissions(windows, await engine.batcher.run([w.wav for w in windows]))
        fsec = engine.frame_seconds
        for seg in state.segments(eof):
            hyp = await engine.decoders.decode(seg.log_probs)
            if hyp.text:
                await self.send({"type": "final", "text": hyp.text, "start": round(seg.start * fsec, 3),
                                 "end": round(seg.end * fsec, 3), "words": words_json(hyp, seg.start, fsec)})
        if eof or state.total - self.last_partial < self.opts.partial_seconds * SAMPLE_RATE:
            return
        self.last_partial = state.total
        lp, tail = state.open_frames(), state.tail()
        if tail is not None:
            (tail_lp,) = await engine.batcher.run([tail.wav])
            lp = np.concatenate([lp, kept_frames(tail, tail_lp, state.fs)])
        hyp = await engine.decoders.decode(lp)
        await self.send({"type": "partial", "text": hyp.text, "start": round(state.seg_start * fsec, 3),
                         "end": round(state.total / SAMPLE_RATE, 3)})
