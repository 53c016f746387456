"""Decoding: greedy parity with transformers, LM beam search, chunked long audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from w2vcli.audio import load_audio
from w2vcli.decode.ctc import BeamSearchDecoder, DecodingOptions, GreedyDecoder, make_decoder
from w2vcli.decode.emissions import EmissionOptions, Emitter, iter_windows
from w2vcli.errors import W2VError
from w2vcli.score import score_texts
from w2vcli.text import SPECIALS, Vocabulary

LETTERS = list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ")
VOCAB = Vocabulary(list(SPECIALS) + LETTERS)


def real_files(real_mini) -> list[str]:
    files = sorted(str(p) for p in real_mini.rglob("*.flac"))
    assert len(files) == 10
    return files


def make_hf_ctc_dir(path, feat_norm: str, calibration: np.ndarray) -> None:
    """A random Wav2Vec2ForCTC saved like a released model (weights, vocab.json, preprocessor_config.json).

    The head's bias is set from the logits on `calibration` audio so that every letter, the
    word boundary and the blank win some frames: varied output, words of a few letters.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm=feat_norm, do_stable_layer_norm=feat_norm == "layer", pad_token_id=0,
    )  # fmt: skip
    model = Wav2Vec2ForCTC(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 3.0)
        model.lm_head.bias.zero_()
        x = torch.from_numpy(calibration)[None]
        x = (x - x.mean()) / x.std()
        logits = model(x).logits[0]  # [T,V]
        model.lm_head.bias.copy_(-logits.mean(0) / 1.0)
        model.lm_head.bias[VOCAB.index["|"]] += 1.5 * logits.std()
        model.lm_head.bias[VOCAB.index["<pad>"]] += 1.0 * logits.std()
        model.lm_head.bias[1:4] = -1e4  # <s> </s> <unk>: transformers would print them literally
    model.save_pretrained(path)
    VOCAB.save(path / "vocab.json")
    Wav2Vec2CTCTokenizer(str(path / "vocab.json"), word_delimiter_token="|").save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=feat_norm == "layer").save_pretrained(path)


@pytest.mark.slow
@pytest.mark.parametrize("feat_norm,batch_size", [("group", 1), ("layer", 4)])
def test_greedy_equals_transformers_argmax(tmp_path, real_mini, feat_norm, batch_size):
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    import w2vcli
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files

    files = real_files(real_mini)
    make_hf_ctc_dir(tmp_path, feat_norm, load_audio(files[0]))
    hf = Wav2Vec2ForCTC.from_pretrained(tmp_path).eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    tok = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    expected = []
    for i in range(0, len(files), batch_size):  # transformers batched the same way (padding + mask)
        wavs = [load_audio(f) for f in files[i : i + batch_size]]
        inputs = fe(wavs, sampling_rate=16000, return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = hf(inputs.input_values, attention_mask=inputs.get("attention_mask")).logits
        lengths = hf._get_feat_extract_output_lengths(torch.tensor([len(w) for w in wavs]))
        for row, t in zip(logits.argmax(-1), lengths.tolist()):
            expected.append(tok.decode(row[:t], output_word_offsets=True))

    got = []
    opts = TranscribeOptions(emission=EmissionOptions(batch_size=batch_size, device="cpu"))
    transcribe_files(w2vcli.load_model(tmp_path), files, opts, lambda t: got.append(t.to_dict()))
    assert [g["audio"] for g in got] == files
    n_words = 0
    frame = 320 / 16000
    for g, e in zip(got, expected):
        assert g["text"] == " ".join(e.text.split())
        assert [w["word"] for w in g["words"]] == [o["word"] for o in e.word_offsets]
        assert [(w["start"], w["end"]) for w in g["words"]] == [
            (round(o["start_offset"] * frame, 3), round(o["end_offset"] * frame, 3)) for o in e.word_offsets
        ]
        n_words += len(g["words"])
    assert n_words > 100  # the comparison is not trivial


def test_greedy_collapses_repeats_drops_specials_and_times_words():
    frames = ["T", "T", "<pad>", "H", "E", "E", "|", "|", "<pad>", "<s>", "C", "<pad>", "C", "<unk>", "A", "T", "<pad>"]
    lp = np.full((len(frames), len(VOCAB)), -10.0, dtype=np.float32)
    for t, tok in enumerate(frames):
        lp[t, VOCAB.index[tok]] = 0.0
    hyp = GreedyDecoder(VOCAB).decode(lp)
    assert hyp.text == "THE CCAT"
    assert [(w.word, w.start, w.end) for w in hyp.words] == [("THE", 0, 6), ("CCAT", 10, 16)]
    assert GreedyDecoder(VOCAB).decode(np.zeros((0, len(VOCAB)))).text == ""


def test_greedy_sentencepiece_units():
    vocab = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "\u2581THE", "\u2581CA", "T", "\u2581"], word_boundary=None)
    ids = [4, 0, 5, 6, 6, 0, 7, 5]
    lp = np.eye(len(vocab), dtype=np.float32)[ids]
    hyp = GreedyDecoder(vocab).decode(lp)
    assert hyp.text == "THE CAT CA"
    assert [(w.start, w.end) for w in hyp.words] == [(0, 1), (2, 5), (7, 8)]


def _spell(words: str, ambiguous: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """Log-probs [T,V] spelling `words` (one frame per letter, a blank after each); `ambiguous`
    maps a letter position to its distribution over tokens."""
    letters = list("|".join(words.split()))
    rows = []
    for i, ch in enumerate(letters):
        probs = np.full(len(VOCAB), 1e-4)
        for tok, p in (ambiguous or {}).get(i, {ch: 0.97}).items():
            probs[VOCAB.index[tok]] = p
        rows.append(probs / probs.sum())
        blank = np.full(len(VOCAB), 1e-4)
        blank[0] = 0.97
        rows.append(blank / blank.sum())
    return np.log(np.stack(rows)).astype(np.float32)


def test_lm_beam_search_fixes_a_spelling_greedy_gets_wrong(tiny_lm):
    ref = "HE SAW THE WHITE WHALE"
    pos = len("HE|SAW|THE|WHITE|")  # the W of WHALE: acoustically more like a V
    lp = _spell(ref, {pos: {"V": 0.55, "W": 0.43}})
    greedy = GreedyDecoder(VOCAB).decode(lp).text
    assert greedy == "HE SAW THE WHITE VHALE"
    no_lm = make_decoder(VOCAB, DecodingOptions(beam_size=16)).decode(lp).text
    assert no_lm == greedy  # without an LM the beam agrees with the acoustics
    beam = make_decoder(VOCAB, DecodingOptions(beam_size=16, lm=str(tiny_lm), alpha=0.5, beta=1.0))
    hyp = beam.decode(lp)
    assert hyp.text == ref
    assert [w.word for w in hyp.words] == ref.split() and hyp.words[-1].end == len(lp) - 1
    assert score_texts({"u": ref}, {"u": hyp.text}).wer <= score_texts({"u": ref}, {"u": greedy}).wer
    beam.set_lm_weights(0.0, 0.0)  # LM switched off: back to the acoustic choice
    assert beam.decode(lp).text == greedy


def test_beam_search_merges_specials_into_blank_and_uses_hotwords():
    lp = _spell("THE CAT")
    lp[1] = np.log(np.full(len(VOCAB), 1e-4) + np.eye(len(VOCAB))[VOCAB.index["<s>"]] * 0.97)  # <s> between letters
    dec = BeamSearchDecoder(VOCAB, DecodingOptions(beam_size=8))
    assert dec.decode(lp).text == GreedyDecoder(VOCAB).decode(lp).text == "THE CAT"
    amb = _spell("THE CAT", {4: {"K": 0.6, "C": 0.38}})
    assert dec.decode(amb).text == "THE KAT"
    hot = BeamSearchDecoder(VOCAB, DecodingOptions(beam_size=8, hotwords=("CAT",), hotword_weight=10.0))
    assert hot.decode(amb).text == "THE CAT"


def test_decoding_options_validate_themselves(tmp_path):
    with pytest.raises(W2VError, match="--lm needs beam search"):
        DecodingOptions(lm=str(tmp_path))
    with pytest.raises(W2VError, match="language model not found"):
        DecodingOptions(beam_size=4, lm=str(tmp_path / "nope.bin"))
    with pytest.raises(W2VError, match="--beam must be >= 0"):
        DecodingOptions(beam_size=-1)
    with pytest.raises(W2VError, match="hotwords needs beam search"):
        DecodingOptions(hotwords=("X",))


# --- chunked long audio ------------------------------------------------------------------------


class LocalCTC(nn.Module):
    """A CTC model whose frames see only their 25 ms receptive field: the paper's conv stack
    (no normalisation) and a linear head. Chunking with context >= the receptive field must
    reproduce its unchunked emissions exactly."""

    def __init__(self, vocab: Vocabulary):
        super().__init__()
        from w2vcli.model.config import tiny

        self.config, self.vocab = tiny(), vocab
        layers, c_in = [], 1
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            layers += [nn.Conv1d(c_in, 16, k, s), nn.GELU()]
            c_in = 16
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(16, len(vocab))
        torch.manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0, 0.5)
            self.head.weight.normal_(0, 40.0)
            self.head.bias[1:4] = -100.0

    def forward(self, wav, lengths):  # [B,S], [B] -> [B,T,V], [B]
        x = self.conv(wav[:, None, :] * 20.0).transpose(1, 2)  # [B,T,C]
        for k, s in zip(self.config.conv_kernel, self.config.conv_stride):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return self.head(x), lengths


@pytest.fixture(scope="module")
def long_file(real_mini, tmp_path_factory):
    wav = np.concatenate([load_audio(f) for f in real_files(real_mini)] * 2)  # ~98 s
    assert len(wav) > 60 * 16000
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, wav, 16000, subtype="PCM_16")
    return str(path)


@pytest.mark.slow
def test_chunked_emissions_equal_unchunked(long_file):
    model = LocalCTC(VOCAB)
    whole = Emitter(model, EmissionOptions(chunk_seconds=0, device="cpu")).batch([load_audio(long_file)])[0]
    emitter = Emitter(model, EmissionOptions(batch_size=3, chunk_seconds=7.3, context_seconds=0.5, device="cpu"))
    assert emitter.needs_chunking(len(load_audio(long_file)))
    stitched, n = emitter.long_file(long_file)
    assert n == len(load_audio(long_file))
    assert stitched.shape == whole.shape
    # The logits reach ~8e5 here, and fp32 rounding depends on the conv's input shape (a prefix run
    # alone already differs from the whole file by ~5e-2): a tolerance relative to that scale.
    np.testing.assert_allclose(stitched, whole, atol=2e-4 + 1e-7 * np.abs(whole).max())
    greedy = GreedyDecoder(VOCAB)
    a, b = greedy.decode(whole), greedy.decode(stitched)
    assert len(a.words) > 30 and a.words == b.words  # same words and frames: none lost or doubled


@pytest.mark.slow
def test_chunked_transcription_of_long_file_equals_unchunked(long_file):
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files

    model = LocalCTC(VOCAB)
    runs = {}
    for chunk in (0.0, 20.0):
        out = []
        opts = TranscribeOptions(emission=EmissionOptions(batch_size=2, chunk_seconds=chunk, context_seconds=2.0, device="cpu"))
        transcribe_files(model, [long_file], opts, lambda t: out.append(t.to_dict()))
        runs[chunk] = out[0]
    assert runs[20.0]["words"] == runs[0.0]["words"] and runs[20.0]["text"].split() == runs[0.0]["text"].split()
    assert runs[20.0]["duration"] == runs[0.0]["duration"] > 60


@pytest.mark.parametrize("block", [1, 999, 4096, 100_000])
def test_windows_tile_the_file(block):
    total, chunk, context = 50_017, 6400, 960
    signal = np.arange(total, dtype=np.float32)
    blocks = (signal[i : i + block] for i in range(0, total, block))
    wins = list(iter_windows(blocks, chunk, context))
    kept = []
    for w in wins:
        assert w.start == max(0, w.keep_from - context)
        np.testing.assert_array_equal(w.wav, signal[w.start : w.start + len(w.wav)])
        stop = total if w.keep_to is None else w.keep_to
        assert w.start + len(w.wav) >= min(total, stop + context)
        kept.append((w.keep_from, stop))
    assert kept[0][0] == 0 and kept[-1][1] == total and wins[-1].keep_to is None
    assert all(a[1] == b[0] for a, b in zip(kept, kept[1:]))


def test_context_shorter_than_receptive_field_is_refused():
    with pytest.raises(W2VError, match="receptive field"):
        Emitter(LocalCTC(VOCAB), EmissionOptions(chunk_seconds=10, context_seconds=0.01, device="cpu"))


def test_tiny_inputs_give_empty_emissions():
    out = Emitter(LocalCTC(VOCAB), EmissionOptions(device="cpu")).batch([np.zeros(100, np.float32), np.zeros(4000, np.float32)])
    assert out[0].shape == (0, len(VOCAB)) and out[1].shape[0] == 12
    empty = GreedyDecoder(VOCAB).decode(out[0])
    assert empty.text == "" and empty.words == []


@pytest.mark.parametrize("feature_norm", ["group", "layer"])
def test_batch_equals_each_utterance_alone(real_mini, feature_norm):
    """`Emitter.batch` on different lengths gives each utterance its emissions when run alone
    (with zero padding and statistics over the padded time axis, a group-norm encoder would not)."""
    from w2vcli.model.build import build_model
    from w2vcli.model.config import tiny

    torch.manual_seed(0)
    model = build_model("ctc", tiny().replace(feature_norm=feature_norm), VOCAB)
    audio = load_audio(real_files(real_mini)[0])
    lengths = [16000, 23456, 16000, 9000, 300, 17000, 23456]  # 300: shorter than one frame
    wavs = [audio[i * 1000 : i * 1000 + n] for i, n in enumerate(lengths)]
    emitter = Emitter(model, EmissionOptions(device="cpu", max_padding=0.1))  # as on a GPU: padded passes
    batched = emitter.batch(wavs)
    assert emitter.model_seconds > 0
    for wav, got in zip(wavs, batched):
        alone = emitter.batch([wav])[0]
        assert got.shape == alone.shape and (len(wav) < 400) == (len(got) == 0)
        np.testing.assert_allclose(got, alone, atol=1e-4)
    groups = emitter.sub_batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert any(len({lengths[i] for i in g}) > 1 for g in groups)  # some pass really is padded
    with torch.no_grad():  # the model's own default stays the reference's: statistics over the padding
        x = torch.zeros(2, lengths[1])
        x[0], x[1, : lengths[0]] = torch.from_numpy(wavs[1]), torch.from_numpy(wavs[0])
        logits, _ = model(x, torch.tensor([lengths[1], lengths[0]]))
    default = torch.log_softmax(logits[1, : len(batched[0])], -1).numpy()
    assert np.allclose(default, batched[0], atol=1e-3) == (feature_norm == "layer")
    cpu = Emitter(model, EmissionOptions(device="cpu")).sub_batches(lengths)  # a CPU pads nothing
    assert all(len({lengths[i] for i in g}) == 1 for g in cpu)
