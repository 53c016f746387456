"""`w2v serve`'s websocket: the stream's windows are `transcribe`'s, segments split no word, finals
equal the file's transcription, concurrent streams equal solo ones, bad input closes with 1008."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import soundfile as sf

import w2vcli
from serve_helpers import VOCAB, same_words, server, tiny_model, transcribe_options
from w2vcli.audio import load_audio
from w2vcli.decode.ctc import GreedyDecoder
from w2vcli.decode.emissions import Window, iter_windows, needs_chunking
from w2vcli.text import SPECIALS

websockets = pytest.importorskip("websockets")
pytest.importorskip("fastapi")
from w2vcli.serve.stream import StreamState, words_json  # noqa: E402

STREAM = dict(stream_chunk_seconds=1.0, stream_context_seconds=0.5, silence_seconds=0.06, partial_seconds=0.5)


@pytest.fixture(scope="module")
def model():
    return tiny_model(0)


@pytest.fixture(scope="module")
def pcm(real_mini):
    """Two utterances as 16-bit PCM (what a stream sends), and the same samples as a WAV file's bytes."""
    wav = np.concatenate([load_audio(p) for p in sorted(real_mini.rglob("*.flac"))[:2]])
    s16 = np.round(np.clip(wav, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    sf.write(buf, s16, 16000, format="WAV", subtype="PCM_16")
    return s16.tobytes(), buf.getvalue()


def state(chunk=320 * 10, context=320 * 3, silence=3, max_segment=10_000) -> StreamState:
    return StreamState(VOCAB, 320, chunk, context, 400, silence, max_segment)


def transcribe_windows(wav: np.ndarray, chunk: int, context: int) -> list[Window]:
    """The windows `transcribe` runs for this audio (Emitter.windows): one pass if it is short."""
    return list(iter_windows([wav], chunk, context)) if needs_chunking(len(wav), chunk, context) else [Window(0, 0, None, wav)]


@pytest.mark.parametrize("seed, length", [(s, None) for s in range(4)] + [(4, -320), (5, -1), (6, 0), (7, 1), (8, 320)])
def test_stream_windows_are_the_windows_of_the_whole(seed, length):
    """Random lengths, and lengths about chunk + context, where `transcribe` stops running one pass."""
    rng = np.random.default_rng(seed)
    chunk, context = 320 * int(rng.integers(1, 20)), 320 * int(rng.integers(0, 8))
    n = int(rng.integers(1, 40_000)) if length is None else chunk + context + length
    wav = rng.standard_normal(n).astype(np.float32)
    st = state(chunk, context)
    got: list[Window] = []
    at = 0
    while at < len(wav):
        n = int(rng.integers(1, 5000))
        st.add(wav[at : at + n])
        at += n
        got += st.windows(eof=False)
    got += st.windows(eof=True)
    want = transcribe_windows(wav, chunk, context)
    assert [(w.start, w.keep_from, w.keep_to) for w in got] == [(w.start, w.keep_from, w.keep_to) for w in want]
    assert all(np.array_equal(a.wav, b.wav) for a, b in zip(got, want))
    assert len(st.buf) <= chunk + 2 * context + 5000  # only what later windows need is kept


def one_hot(ids: list[int]) -> np.ndarray:
    lp = np.full((len(ids), len(VOCAB)), -10.0, np.float32)
    lp[np.arange(len(ids)), ids] = -0.01
    return lp


def feed(st: StreamState, lp: np.ndarray, rng) -> list:
    """Stable frames in pieces of random size, as windows would bring them; then the end."""
    segs, at = [], 0
    while at < len(lp):
        n = int(rng.integers(1, 30))
        piece = lp[at : at + n]
        st.add_emissions([Window(at * 320, at * 320, None, np.zeros(0, np.float32))], [piece])
        at += len(piece)
        segs += st.segments(eof=False)
    return segs + st.segments(eof=True)


def random_ids(rng) -> list[int]:
    """Words of letters; between letters nothing, blanks, or a word boundary and blanks."""
    letters = [VOCAB.index[c] for c in "ETAONIHS"]
    ids = []
    for _ in range(60):
        ids += [int(rng.choice(letters))] * int(rng.integers(1, 4))
        r = rng.random()
        ids += [0] * int(rng.integers(0, 6)) if r < 0.5 else [VOCAB.index["|"]] * int(r < 0.8) + [0] * int(rng.integers(0, 8))
    return ids


@pytest.mark.parametrize("seed", range(4))
def test_segments_split_no_word_and_decode_like_the_whole(seed):
    """Segments end only in silence holding a word boundary, and their greedy words, with their
    times, are those of the whole."""
    rng = np.random.default_rng(seed)
    ids = random_ids(rng)
    lp = one_hot(ids)
    segs = feed(state(silence=3), lp, rng)
    greedy = GreedyDecoder(VOCAB)
    got = [w for s in segs for w in words_json(greedy.decode(s.log_probs), s.start, 0.02)]
    assert got == words_json(greedy.decode(lp), 0, 0.02)
    assert len(segs) > 5
    bar = VOCAB.index["|"]
    for a, b in zip(segs, segs[1:]):
        assert a.end <= b.start
        tail = ids[a.end - 3 : a.end]
        assert bar in tail and all(VOCAB.tokens[i] in ("|", *SPECIALS) for i in tail)


def test_silence_is_not_kept():
    """An hour of silence (blanks and boundaries) keeps no frames and sends no segment."""
    st, bar = state(silence=3, max_segment=500), VOCAB.index["|"]
    piece = one_hot(([0] * 9 + [bar]) * 10)  # 2 s of frames
    for k in range(1800):
        st.add_emissions([Window(k * 32000, k * 32000, None, np.zeros(0, np.float32))], [piece])
        assert st.segments(eof=False) == [] and len(st.lp) == 0
    assert st.segments(eof=True) == [] and st.frames == 180_000


@pytest.mark.parametrize("seed", range(4))
def test_long_segments_end_at_their_last_word_boundary(seed):
    rng = np.random.default_rng(seed)
    ids = random_ids(rng)
    max_segment = int(rng.integers(15, 60))
    segs = feed(state(silence=10_000, max_segment=max_segment), one_hot(ids), rng)
    assert len(segs) > 3 and all(len(s.log_probs) <= max_segment for s in segs)
    bar = VOCAB.index["|"]
    for s in segs[:-1]:
        if bar in ids[s.start : s.end]:  # a boundary to end at: the segment ends on it
            assert ids[s.end - 1] == bar
    greedy = GreedyDecoder(VOCAB)  # no letter is lost or doubled (every long run of letters has a blank)
    assert "".join(greedy.decode(s.log_probs).text.replace(" ", "") for s in segs) == greedy.decode(one_hot(ids)).text.replace(" ", "")


def solo_words(model, wav_bytes: bytes, **emission) -> dict:
    return w2vcli.transcribe(model, load_audio_bytes(wav_bytes), transcribe_options(**emission)).to_dict()


def load_audio_bytes(data: bytes) -> np.ndarray:
    from w2vcli.audio import load_audio_bytes as load

    return load(data)


async def stream(url: str, pcm: bytes, step: int = 6400, start: dict | None = None, headers=None, query="") -> tuple:
    """Send `pcm` in messages of `step` bytes, then "end"; all messages received and the close code."""
    async with websockets.connect(f"ws://{url}/v1/stream{query}", additional_headers=headers) as ws:
        if start is not None:
            await ws.send(json.dumps(start))

        async def sender():
            for i in range(0, len(pcm), step):
                await ws.send(pcm[i : i + step])
            await ws.send(json.dumps({"type": "end"}))

        task = asyncio.create_task(sender())
        got = await receive_all(ws)
        await task
        return got, ws.close_code


async def receive_all(ws) -> list[dict]:
    """Every message until the server closes (an error close ends the iteration with an exception)."""
    got = []
    try:
        async for m in ws:
            got.append(json.loads(m))
    except websockets.exceptions.ConnectionClosedError:
        pass
    return got


def finals(msgs: list[dict]) -> list[dict]:
    return [m for m in msgs if m["type"] == "final"]


def test_stream_finals_equal_the_transcript_of_the_file(model, pcm):
    raw, wav_bytes = pcm
    want = solo_words(model, wav_bytes, chunk_seconds=1.0, context_seconds=0.5)
    with server(model, **STREAM) as url:
        msgs, code = asyncio.run(stream(url, raw, start={"type": "start", "sample_rate": 16000, "format": "pcm_s16le"}))
    assert code == 1000 and msgs[-1] == {"type": "done"}
    fin = finals(msgs)
    assert len(fin) > 1  # the stream was cut into segments
    assert " ".join(m["text"] for m in fin) == want["text"]
    # the same words and times; confidences to rounding (transcribe runs 8 windows a pass, the stream one)
    assert same_words([w for m in fin for w in m["words"]], want["words"])
    assert all(a["end"] <= b["start"] for a, b in zip(fin, fin[1:]))
    partials = [m for m in msgs if m["type"] == "partial"]
    assert all(set(m) == {"type", "text", "start", "end"} for m in partials)
    ends = [0.0] + [m["end"] for m in partials]
    # a partial once 0.5 s of new audio has arrived, in messages of 0.2 s
    assert all(0.5 <= b - a <= 0.5 + 0.2 + 1e-6 for a, b in zip(ends, ends[1:]))
    assert len(raw) / 2 / 16000 - ends[-1] < 0.7


def test_short_streams_equal_transcribe_which_runs_them_in_one_pass(model, real_mini):
    """Real speech cut just under, at and just over chunk + context (1.5 s here): `transcribe`
    runs up to that length in one pass and beyond it in windows; a stream's finals follow it."""
    wav = load_audio(min(real_mini.rglob("*.flac")))
    threshold = int(1.5 * 16000)
    with server(model, **STREAM) as url:
        for n in (threshold - 320, threshold, threshold + 1, threshold + 320):
            s16 = np.round(np.clip(wav[:n], -1, 1) * 32767).astype("<i2")
            buf = io.BytesIO()
            sf.write(buf, s16, 16000, format="WAV", subtype="PCM_16")
            want = solo_words(model, buf.getvalue(), chunk_seconds=1.0, context_seconds=0.5)
            msgs, code = asyncio.run(stream(url, s16.tobytes(), step=3200))
            assert code == 1000 and msgs[-1] == {"type": "done"}
            assert " ".join(m["text"] for m in finals(msgs)) == want["text"], n
            assert same_words([w for m in finals(msgs) for w in m["words"]], want["words"]), n


@pytest.mark.parametrize("max_batch", [8, 1])
def test_concurrent_streams_and_requests_equal_solo(model, pcm, real_mini, max_batch):
    """Six streams and an upload at once: each stream's finals are those it gets alone, the same
    words and times; with --max-batch 8 its windows share forward passes with other streams', so
    confidences agree to float rounding; with --max-batch 1 they are the same to the bit."""
    raw, wav_bytes = pcm
    other = np.round(load_audio(sorted(real_mini.rglob("*.flac"))[5]) * 32767).astype("<i2").tobytes()
    with server(model, max_wait_ms=10, max_batch=max_batch, **STREAM) as url:
        alone = [finals(asyncio.run(stream(url, x))[0]) for x in (raw, other)]

        async def load():
            import httpx

            async with httpx.AsyncClient() as client:
                rest = client.post(f"http://{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes)},
                                   data={"model": "m", "response_format": "verbose_json",
                                         "timestamp_granularities[]": "word"}, timeout=60)
                return await asyncio.gather(*(stream(url, x, step=3200 + 640 * i) for i, x in enumerate([raw, other] * 3)),
                                            rest)

        *streams, rest = asyncio.run(load())
    for i, (msgs, code) in enumerate(streams):
        got, want = finals(msgs), alone[i % 2]
        assert code == 1000 and [m["text"] for m in got] == [m["text"] for m in want]
        for g, w in zip(got, want):
            assert (g["start"], g["end"]) == (w["start"], w["end"])
            assert g["words"] == w["words"] if max_batch == 1 else same_words(g["words"], w["words"])
    assert same_words(rest.json()["words"], solo_words(model, wav_bytes)["words"])


def test_a_stream_behind_the_model_keeps_its_connection(model, pcm, monkeypatch):
    """A model slower than the client sends: the server still reads the socket (into the stream's
    own buffer), so the client's keepalive pings are answered, the connection is not closed with
    1011 "keepalive ping timeout", and the finals are those of the whole file."""
    import time

    from w2vcli.decode.emissions import Emitter

    raw, wav_bytes = pcm
    want = solo_words(model, wav_bytes, chunk_seconds=1.0, context_seconds=0.5)
    batch = Emitter.batch

    def slow(self, wavs):
        time.sleep(0.2)
        return batch(self, wavs)

    monkeypatch.setattr(Emitter, "batch", slow)

    async def run(url):  # 10 ms a message, as fast as it goes; a ping every 0.1 s, answered within 1 s
        async with websockets.connect(f"ws://{url}/v1/stream", ping_interval=0.1, ping_timeout=1.0) as ws:
            async def sender():
                for i in range(0, len(raw), 320):
                    await ws.send(raw[i : i + 320])
                await ws.send(json.dumps({"type": "end"}))

            task = asyncio.create_task(sender())
            got = await receive_all(ws)
            try:
                await task
            except websockets.exceptions.ConnectionClosed:
                pass
            return got, ws.close_code, ws.close_reason

    with server(model, **STREAM) as url:
        msgs, code, reason = asyncio.run(run(url))
    assert code == 1000 and msgs[-1] == {"type": "done"}, (code, reason)
    assert " ".join(m["text"] for m in finals(msgs)) == want["text"]


def test_other_rates_and_float_samples(model, pcm):
    import soxr

    raw, _ = pcm
    wav = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    at8k = soxr.resample(wav, 16000, 8000).astype("<f4").tobytes()
    with server(model, **STREAM) as url:
        msgs, code = asyncio.run(stream(url, at8k, start={"type": "start", "sample_rate": 8000, "format": "pcm_f32le"}))
    assert code == 1000 and finals(msgs) and msgs[-1]["type"] == "done"
    assert abs(finals(msgs)[-1]["end"] - len(wav) / 16000) < 0.1


@pytest.mark.parametrize("messages, error", [
    ([b"\x00" * 3], "whole pcm_s16le samples"),
    (["not json"], "must be JSON"),
    (['{"type": "begin"}'], "a text message must be"),
    (['{"type": "start", "sample_rate": 0}'], "sample_rate"),
    (['{"type": "start", "format": "mp3"}'], "format must be"),
    (['{"type": "start", "path": "/etc/passwd"}'], "unknown field"),
    ([b"\x00\x00" * 100, '{"type": "start"}'], "must come first"),
    (['{"type": "start", "format": "pcm_f32le"}', np.full(4, np.nan, "<f4").tobytes()], "finite"),
])  # fmt: skip
def test_bad_stream_input_is_an_error_and_1008(model, messages, error):
    async def run(url):
        async with websockets.connect(f"ws://{url}/v1/stream") as ws:
            for m in messages:
                await ws.send(m)
            got = await receive_all(ws)
            return got, ws.close_code

    with server(model) as url:
        got, code = asyncio.run(run(url))
    assert code == 1008 and got[-1]["type"] == "error" and error in got[-1]["message"]


def test_stream_limits_and_api_key(model, pcm):
    raw, _ = pcm

    async def silent_client(url):
        async with websockets.connect(f"ws://{url}/v1/stream") as ws:
            got = await receive_all(ws)
            return got, ws.close_code

    with server(model, idle_seconds=0.3, max_stream_seconds=1.0, max_streams=1) as url:
        got, code = asyncio.run(silent_client(url))
        assert code == 1008 and "no message for 0.3 s" in got[-1]["message"]
        got, code = asyncio.run(stream(url, raw))
        assert code == 1008 and "--max-stream-seconds" in got[-1]["message"]

        async def two():  # the second stream while the first is open
            async with websockets.connect(f"ws://{url}/v1/stream") as first:
                await first.send(b"\x00\x00" * 1600)
                second = await silent_client(url)
                await first.send(json.dumps({"type": "end"}))
                return second, await receive_all(first)

        (got, code), first = asyncio.run(two())
        assert code == 1013 and "busy" in got[-1]["message"] and first[-1] == {"type": "done"}
    key = "stream-key-42"
    with server(model, api_key=key) as url:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            asyncio.run(stream(url, raw[:3200]))
        with pytest.raises(websockets.exceptions.InvalidStatus):
            asyncio.run(stream(url, raw[:3200], query="?api_key=wrong"))
        for kw in ({"headers": {"Authorization": f"Bearer {key}"}}, {"query": f"?api_key={key}"}):
            msgs, code = asyncio.run(stream(url, raw[:32000], **kw))
            assert code == 1000 and msgs[-1] == {"type": "done"}


def test_a_flooding_stream_and_a_client_that_never_reads_starve_no_one(model, pcm):
    """One client sends audio as fast as it can, without end, another never reads what it is
    sent: a stream and an upload beside them still get their solo results, and the flood is
    stopped at --max-stream-seconds."""
    raw, wav_bytes = pcm
    with server(model, max_stream_seconds=len(raw) / 2 / 16000 + 1, **STREAM) as url:
        alone = finals(asyncio.run(stream(url, raw))[0])

        async def flood():
            async with websockets.connect(f"ws://{url}/v1/stream") as ws:
                reader = asyncio.create_task(receive_all(ws))
                try:
                    while True:
                        await ws.send(raw[:3200])
                        await asyncio.sleep(0)  # let the reader run
                except websockets.exceptions.ConnectionClosed:
                    pass
                return await reader, ws.close_code

        async def deaf():
            async with websockets.connect(f"ws://{url}/v1/stream", max_queue=None) as ws:
                for i in range(0, len(raw), 6400):
                    await ws.send(raw[i : i + 6400])
                await asyncio.sleep(1.0)  # never reads: its partials wait in the socket

        async def load():
            import httpx

            flooder, _ = asyncio.create_task(flood()), asyncio.create_task(deaf())
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient() as client:
                rest = await client.post(f"http://{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav_bytes)},
                                         data={"model": "m", "response_format": "verbose_json",
                                               "timestamp_granularities[]": "word"}, timeout=60)
            normal = await stream(url, raw)
            return rest, normal, await flooder

        rest, (msgs, code), (last, flood_code) = asyncio.run(load())
    assert code == 1000 and [m["text"] for m in finals(msgs)] == [m["text"] for m in alone]
    assert all(same_words(a["words"], b["words"]) for a, b in zip(finals(msgs), alone))
    assert same_words(rest.json()["words"], solo_words(model, wav_bytes)["words"])
    assert flood_code == 1008 and "--max-stream-seconds" in last[-1]["message"]
