"""`w2v transcribe`'s richer transcripts: unit (character) times, word confidence, n-best lists
equal to pyctcdecode's own beams, and `--lexicon --strict`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from test_decode import VOCAB, _spell
from w2vcli.cli import app
from w2vcli.decode.ctc import BeamSearchDecoder, DecodingOptions, GreedyDecoder, word_confidence
from w2vcli.errors import W2VError


def test_greedy_units_and_confidence():
    lp = _spell("THE CAT", {4: {"C": 0.6, "K": 0.38}})  # letter 4 (the C of CAT) is unsure
    hyp = GreedyDecoder(VOCAB).decode(lp)
    the, cat = hyp.words
    assert [(u.unit, u.start, u.end) for u in the.units] == [("T", 0, 1), ("H", 2, 3), ("E", 4, 5)]
    assert [u.unit for u in cat.units] == list("CAT") and cat.units[0].start == 8
    # the definition: product over units of the unit's best probability within the word's frames
    p = np.exp(lp)
    assert the.confidence == pytest.approx(float(p[0, VOCAB.index["T"]] * p[2, VOCAB.index["H"]] * p[4, VOCAB.index["E"]]), rel=1e-5)
    assert cat.confidence == pytest.approx(word_confidence(lp, [VOCAB.index[c] for c in "CAT"], cat.start, cat.end))
    assert cat.confidence < 0.7 < the.confidence


def test_beam_units_agree_with_greedy_on_clear_emissions():
    lp = _spell("A BIG DOG RAN")
    greedy = GreedyDecoder(VOCAB).decode(lp)
    beam = BeamSearchDecoder(VOCAB, DecodingOptions(beam_size=8, unit_times=True)).decode(lp)
    assert beam.text == greedy.text
    for g, b in zip(greedy.words, beam.words):
        assert b.units == g.units and b.confidence == pytest.approx(g.confidence, rel=1e-5)


def test_nbest_equals_pyctcdecodes_beams(tiny_lm):
    lp = _spell("HE SAW THE WHITE WHALE", {17: {"V": 0.5, "W": 0.45}, 2: {"S": 0.5, "Z": 0.45}})
    opts = DecodingOptions(beam_size=16, lm=str(tiny_lm), nbest=5)
    dec = BeamSearchDecoder(VOCAB, opts)
    hyp = dec.decode(lp)
    beams = dec._decoder.decode_beams(dec._relabel(lp), beam_width=16, beam_prune_logp=opts.beam_prune_logp,
                                      token_min_logp=opts.token_min_logp)  # fmt: skip
    assert len(hyp.nbest) == min(5, len(beams)) >= 2
    assert hyp.nbest == [(b[0], pytest.approx(b[4])) for b in beams[:5]]
    assert hyp.nbest[0][0] == hyp.text and [s for _, s in hyp.nbest] == sorted((s for _, s in hyp.nbest), reverse=True)


def test_strict_lexicon_makes_other_words_impossible(tiny_lm, tmp_path):
    lp = _spell("HE SAW THE WHITE QWHALE")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("HE\nSAW\nTHE\nWHITE\nWHALE\n")
    loose = BeamSearchDecoder(VOCAB, DecodingOptions(beam_size=32, lm=str(tiny_lm), unigrams=str(lexicon)))
    assert "QWHALE" in loose.decode(lp).text.split()  # only penalised: the acoustics win
    strict = BeamSearchDecoder(VOCAB, DecodingOptions(beam_size=32, lm=str(tiny_lm), unigrams=str(lexicon), strict=True))
    hyp = strict.decode(lp)
    assert hyp.text and set(hyp.text.split()) <= {"HE", "SAW", "THE", "WHITE", "WHALE"}
    with pytest.raises(W2VError, match="--strict needs --lm"):
        DecodingOptions(beam_size=4, strict=True)
    with pytest.raises(W2VError, match="--nbest 3 needs beam search"):
        DecodingOptions(nbest=3)


def test_transcribe_command_options(tmp_path, real_mini):
    import torch

    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    torch.manual_seed(0)
    model = build_model("ctc", tiny(), VOCAB)
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0)
        model.head.bias[VOCAB.index["|"]] += 1.0
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model)
    audio = str(sorted(real_mini.rglob("*.flac"))[0])

    def run(*args):
        res = CliRunner().invoke(app, ["transcribe", str(ckpt), audio, "--device", "cpu", *map(str, args)])
        assert res.exit_code == 0, res.output
        return res.stdout

    row = json.loads(run("--format", "jsonl", "--timestamps", "char").splitlines()[0])
    assert row["words"]
    for w in row["words"]:
        assert "".join(c["char"] for c in w["chars"]) == w["word"]
        assert w["start"] == w["chars"][0]["start"] and w["end"] == w["chars"][-1]["end"]
        assert 0 <= w["confidence"] <= 1
    srt = run("--format", "srt", "--confidence")
    w0 = row["words"][0]
    assert f"{w0['word']} ({w0['confidence']:.2f})" in srt
    row = json.loads(run("--format", "jsonl", "--nbest", "3").splitlines()[0])
    assert len(row["nbest"]) == 3 and row["nbest"][0]["text"] == row["text"]
    assert all(not math.isnan(b["score"]) for b in row["nbest"])
