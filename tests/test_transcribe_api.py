"""The in-memory library API: `w2vcli.transcribe(model, audio)` on arrays, tensors and paths,
`Transcriber` objects side by side, decoder pools owned by their callers, `w2v transcribe -`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import w2vcli
from w2vcli.audio import load_audio
from w2vcli.cli import app
from w2vcli.decode.ctc import DecoderPool, GreedyDecoder
from w2vcli.decode.emissions import EmissionOptions
from w2vcli.decode.transcribe import TranscribeOptions, Transcriber
from w2vcli.errors import W2VError
from w2vcli.text import SPECIALS, Vocabulary

from tiny_models import VOCAB, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_model(0)


@pytest.fixture(scope="module")
def flac(real_mini):
    return str(sorted(real_mini.rglob("*.flac"))[0])


def test_array_tensor_and_path_give_the_same_transcript(model, flac):
    wav = load_audio(flac)
    by_path = w2vcli.transcribe(model, flac).to_dict()
    assert by_path["text"]
    for audio in (wav, torch.from_numpy(wav), wav[None, :], wav.astype(np.float64)):
        got = w2vcli.transcribe(model, audio).to_dict()
        assert {k: got[k] for k in ("text", "words", "duration")} == {k: by_path[k] for k in ("text", "words", "duration")}


def test_long_array_is_chunked_like_the_file(model, real_mini, tmp_path):
    wav = np.concatenate([load_audio(p) for p in sorted(real_mini.rglob("*.flac"))[:3]])
    path = tmp_path / "long.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    opts = TranscribeOptions(emission=EmissionOptions(chunk_seconds=4, context_seconds=1, device="cpu"))
    from_file = w2vcli.transcribe(model, str(path), opts)
    in_memory = w2vcli.transcribe(model, load_audio(path), opts)
    assert in_memory.hyp == from_file.hyp and in_memory.num_samples == from_file.num_samples


def test_two_transcribers_side_by_side(model, flac):
    other = tiny_model(1)
    wav = load_audio(flac)
    with Transcriber(model) as a, Transcriber(other) as b:
        ta, tb, ta2 = a(wav).hyp.text, b(wav).hyp.text, a(wav).hyp.text
    assert ta == ta2 == w2vcli.transcribe(model, wav).hyp.text
    assert tb == w2vcli.transcribe(other, wav).hyp.text and tb != ta


def test_decoder_pools_keep_their_own_decoders():
    """Each pool's worker processes decode with the decoder that pool was given, while another
    pool with another vocabulary lives beside it."""
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(len(VOCAB)), size=50)).astype(np.float32)
    other = Vocabulary(list(SPECIALS) + list("|ZYXWVUTSRQPONMLKJIHGFEDCBA'"))
    want_a, want_b = GreedyDecoder(VOCAB).decode(lp).text, GreedyDecoder(other).decode(lp).text
    assert want_a != want_b
    with DecoderPool(GreedyDecoder(VOCAB), jobs=2) as a, DecoderPool(GreedyDecoder(other), jobs=2) as b:
        assert [h.text for h, _ in a.map([lp] * 3)] == [want_a] * 3
        assert [h.text for h, _ in b.map([lp] * 3)] == [want_b] * 3


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 16000), np.float32), "one channel"),
    (np.zeros(0, np.float32), "no audio samples"),
    (np.zeros(16000, np.int16), "floats"),
    (np.full(16000, np.nan, np.float32), "NaN"),
])  # fmt: skip
def test_bad_waveforms_are_one_line_errors(model, bad, message):
    with pytest.raises(W2VError, match=message):
        w2vcli.transcribe(model, bad)


def test_transcribe_reads_standard_input(model, flac, tmp_path):
    from w2vcli.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model)
    runner = CliRunner()
    want = runner.invoke(app, ["transcribe", str(ckpt), flac, "--device", "cpu", "-f", "jsonl"])
    wav_bytes = tmp_path / "a.wav"
    sf.write(wav_bytes, sf.read(flac)[0], 16000, subtype="PCM_16")  # the same samples as a WAV
    for data in (open(flac, "rb").read(), wav_bytes.read_bytes()):
        got = runner.invoke(app, ["transcribe", str(ckpt), "-", "--device", "cpu", "-f", "jsonl"], input=data)
        assert got.exit_code == 0, got.output
        row = json.loads(got.stdout.splitlines()[0])
        assert row["audio"] == "-"
        assert {**row, "audio": flac} == json.loads(want.stdout.splitlines()[0])
    bad = runner.invoke(app, ["transcribe", str(ckpt), "-", "--device", "cpu"], input=b"RIFF not audio")
    assert bad.exit_code == 1 and "-: not readable audio" in bad.stderr
