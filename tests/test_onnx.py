"""ONNX export (`w2v export --to onnx`) against torch on real speech, and `.onnx` models in `w2v transcribe`.

Two tiny models with random weights: BASE-style (group-norm conv stack, post-LN; exported through
the CLI) and LARGE-style (layer-norm conv stack with bias, pre-LN, normalised input; a character
vocabulary without word boundary and lower-case text rules, which must travel with the file).
Each torch.onnx export takes tens of seconds, so each model is exported once per module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from w2vcli.cli import app  # noqa: E402
from w2vcli.text import SPECIALS, TextRules, Vocabulary  # noqa: E402

LETTERS = Vocabulary(list(SPECIALS) + list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ"))
CHARS = Vocabulary(list(SPECIALS) + list("etaonihsrdlumwcfgypbvk'xjqz"), word_boundary=None, pieces=False)
CROPS = [(0, 3.0), (1, 2.13), (2, 1.37)]  # (file, seconds): three different lengths of real speech


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def build(style: str):
    from w2vcli.model.build import build_model
    from w2vcli.model.config import tiny

    torch.manual_seed(0 if style == "group" else 1)
    if style == "group":
        return build_model("ctc", tiny(), LETTERS).eval()
    config = tiny().replace(feature_norm="layer", conv_bias=True, layer_norm_first=True, normalize_waveform=True,
                            dropout=0.0, attention_dropout=0.0, feature_dropout=0.0)  # fmt: skip
    return build_model("ctc", config, CHARS, TextRules(case="lower", word_boundary=False)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{style: (torch model, checkpoint path, .onnx path)}: group through the CLI, layer through the library."""
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.onnx import export_onnx

    tmp = tmp_path_factory.mktemp("onnx")
    out = {}
    for style in ("group", "layer"):
        model = build(style)
        with torch.no_grad():  # peaked, varied output: greedy transcripts with words
            model.head.weight.normal_(0, 2.0)
        ckpt, path = tmp / f"{style}.pt", tmp / f"{style}.onnx"
        save_checkpoint(ckpt, model)
        if style == "group":
            w2v("export", ckpt, "--to", "onnx", "--out", path)
        else:
            export_onnx(model, path)
        out[style] = (model, ckpt, path)
    return out


@pytest.fixture(scope="module")
def crops(real_mini) -> list[np.ndarray]:
    from w2vcli.audio import load_audio

    files = sorted(str(p) for p in real_mini.rglob("*.flac"))
    return [load_audio(files[i])[: int(s * 16000)] for i, s in CROPS]


def padded(wavs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in wavs])
    x = torch.zeros(len(wavs), int(lengths.max()))
    for b, w in enumerate(wavs):
        x[b, : len(w)] = torch.from_numpy(w)
    return x, lengths


@pytest.mark.parametrize("style", ["group", "layer"])
def test_onnxruntime_logits_equal_torch_on_real_speech(exported, crops, style):
    from w2vcli.model.onnx import load_onnx

    model, _, path = exported[style]
    onnx_model = load_onnx(path)
    for wav in crops:
        x, lengths = padded([wav])
        got, frames = onnx_model(x, lengths)
        with torch.no_grad():
            exp, exp_frames = model(x, lengths)
        assert frames.tolist() == exp_frames.tolist() and got.shape == exp.shape
        torch.testing.assert_close(got, exp, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("style", ["group", "layer"])
def test_padded_batch_gives_each_row_its_own_logits(exported, crops, style):
    """Different lengths in one zero-padded batch: each row's valid frames equal the row run alone."""
    from w2vcli.model.onnx import load_onnx

    model, _, path = exported[style]
    onnx_model = load_onnx(path)
    x, lengths = padded(crops)
    batch, frames = onnx_model(x, lengths)
    assert frames.tolist() == model.wav2vec2.frame_lengths(lengths).tolist()
    for b, wav in enumerate(crops):
        alone, _ = onnx_model(*padded([wav]))
        torch.testing.assert_close(batch[b, : frames[b]], alone[0], atol=2e-4, rtol=1e-4)


def test_metadata_carries_vocabulary_rules_and_config(exported):
    import w2vcli

    for style, vocab in (("group", LETTERS), ("layer", CHARS)):
        model, _, path = exported[style]
        loaded = w2vcli.load_model(path)
        assert type(loaded).__name__ == "OnnxCTCModel" and loaded.quantize == "none"
        assert loaded.vocab.tokens == vocab.tokens and loaded.vocab.units == vocab.units
        assert loaded.vocab.word_boundary == vocab.word_boundary
        assert loaded.text_rules == model.text_rules and loaded.config == model.config
    assert w2vcli.load_model(exported["layer"][2]).text_rules == TextRules(case="lower", word_boundary=False)
    names = [(i.name, i.type.tensor_type.elem_type) for i in onnx.load(str(exported["group"][2])).graph.input]
    assert names == [("waveform", onnx.TensorProto.FLOAT), ("lengths", onnx.TensorProto.INT64)]


def test_int8_export_quantizes_the_transformer(exported, crops, tmp_path):
    from w2vcli.model.onnx import _transformer_matmuls, load_onnx, quantize_onnx

    model, _, path = exported["group"]
    int8 = quantize_onnx(path, tmp_path / "int8.onnx")
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    layers = model.config.num_layers
    assert ops.count("MatMulInteger") == 6 * layers  # q, k, v, out, fc1, fc2 per block
    assert not _transformer_matmuls(proto)  # none left in fp32; the projection and the head are
    assert ops.count("MatMul") >= 2 and ops.count("Conv") == 8
    q, ref = load_onnx(int8), load_onnx(path)
    assert q.quantize == "int8" and q.vocab.tokens == ref.vocab.tokens
    x, lengths = padded(crops)
    got, frames = q(x, lengths)
    exp, _ = ref(x, lengths)
    valid = torch.arange(got.shape[1])[None, :] < frames[:, None]
    p, r = got.softmax(-1)[valid], exp.softmax(-1)[valid]
    assert (p.argmax(-1) == r.argmax(-1)).float().mean() > 0.9 and (p - r).abs().max() < 0.2
    with pytest.raises(Exception, match="already quantized"):
        quantize_onnx(int8, tmp_path / "again.onnx")


def test_transcribe_runs_onnx_like_the_checkpoint(exported, real_mini, tiny_lm):
    """Greedy, LM beam search and chunked long audio: the .onnx file transcribes as its checkpoint does."""
    _, ckpt, path = exported["group"]
    files = sorted(str(p) for p in real_mini.rglob("*.flac"))[:3]
    for extra in ([], ["--lm", tiny_lm, "--beam", "8"], ["--chunk-seconds", "2", "--context-seconds", "0.5"]):
        ours = w2v("transcribe", ckpt, *files, "--device", "cpu", *extra)
        exported_text = w2v("transcribe", path, *files, *extra)
        texts = [line for line in exported_text.splitlines() if "\t" in line]
        assert len(texts) == 3 and all(t.split("\t")[1].strip() for t in texts)
        assert texts == [line for line in ours.splitlines() if "\t" in line]


def test_onnx_models_refuse_what_they_cannot_do(exported, real_mini, tmp_path):
    from w2vcli.model.build import build_model
    from w2vcli.model.config import tiny
    from w2vcli.model.onnx import export_onnx

    _, _, path = exported["group"]
    audio = str(sorted(real_mini.rglob("*.flac"))[0])
    for args, message in (
        (["transcribe", path, audio, "--quantize", "int8"], "ONNX model runs as exported"),
        (["transcribe", path, audio, "--precision", "fp16"], "ONNX model runs as exported"),
        (["transcribe", path, audio, "--device", "cuda"], ""),
        (["export", path, "--to", "hf", "--out", tmp_path / "hf"], "cannot be converted further"),
        (["export", exported["group"][1], "--to", "hf", "--quantize", "int8", "--out", tmp_path / "x"], "applies to --to onnx"),
    ):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    with pytest.raises(Exception, match="exports CTC models"):
        export_onnx(build_model("pretrain", tiny()), tmp_path / "pt.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "junk.onnx"), audio])
    assert result.exit_code == 1 and "junk.onnx" in result.output
