"""CPU inference modes: the auto rule, bf16 and int8 against fp32 on a trained model (tone corpus).

bf16 is emulated on CPUs without native bf16 (slow but numerically the same), so the tests
that run it declare the CPU bf16-capable (`native_bf16`): the numbers are what a bf16 CPU gives.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from train_data import make_corpus
from typer.testing import CliRunner

from w2vcli import cpu
from w2vcli.cli import app
from w2vcli.cpu import CpuFeatures, Mode, auto_inference_mode, auto_train_precision
from w2vcli.decode.ctc import GreedyDecoder
from w2vcli.decode.emissions import EmissionOptions, Emitter
from w2vcli.errors import W2VError

NATIVE = CpuFeatures(bf16=True, amx=True, vnni=True, capability="AVX512")
AVX2 = CpuFeatures(bf16=False, amx=False, vnni=False, capability="AVX2")
# stated bounds for a trained model's greedy transcripts on its dev set, each mode against fp32
MIN_AGREEMENT = 0.85  # share of utterances whose transcript is identical
MAX_CER_CHANGE = 0.02  # |CER(mode) - CER(fp32)|, absolute (2 points)


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_features", lambda: NATIVE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CTC model trained from scratch on the tone corpus to a few % CER, and its dev set."""
    from w2vcli import load_model

    root = tmp_path_factory.mktemp("tones")
    train, dev = make_corpus(root, "train", 24, seed=0), make_corpus(root, "dev", 16, seed=1)
    out = root / "ft"
    args = ["finetune", "--from-scratch", "--preset", "tiny", "--train", train, "--valid", dev, "--out", out,
            "--max-tokens", "64000", "--num-workers", "0", "--seed", "3", "--max-updates", "160", "--lr", "5e-3",
            "--mask-prob", "0.05", "--valid-interval", "160", "--precision", "fp32"]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    from w2vcli.data.manifest import read_manifest

    return load_model(out / "last.pt"), read_manifest(dev)


def transcripts(model, rows, **options) -> tuple[list[str], list[np.ndarray]]:
    from w2vcli.audio import load_audio

    emitter = Emitter(model, EmissionOptions(device="cpu", **options))
    emissions = emitter.batch([load_audio(r["audio"]) for r in rows])
    greedy = GreedyDecoder(model.vocab)
    return [greedy.decode(e).text for e in emissions], emissions


def cer(rows, hyps) -> float:
    from w2vcli.score import score_texts

    return score_texts({r["id"]: r["text"] for r in rows}, {r["id"]: h for r, h in zip(rows, hyps)}).cer


# --- the rule -------------------------------------------------------------------------------------


def test_auto_rule_follows_the_cpu(monkeypatch, tmp_path):
    monkeypatch.delenv(cpu.MODE_ENV, raising=False)
    assert auto_inference_mode(NATIVE) == Mode("bf16") and auto_inference_mode(AVX2) == Mode("fp32")
    assert auto_train_precision(NATIVE) == "bf16" and auto_train_precision(AVX2) == "fp32"
    monkeypatch.setenv(cpu.MODE_ENV, "int8")  # a pin wins over the CPU
    assert auto_inference_mode(NATIVE) == Mode("fp32", "int8") and auto_train_precision(NATIVE) == "fp32"
    monkeypatch.setenv(cpu.MODE_ENV, "fp16")
    with pytest.raises(W2VError, match="W2V_CPU_MODE"):
        auto_inference_mode(NATIVE)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\n")
    assert {"avx512_bf16", "avx512_vnni"} <= cpu._cpuinfo_flags(str(info))
    assert cpu._cpuinfo_flags(str(tmp_path / "missing")) == set()


def test_options_resolve_per_device(monkeypatch, native_bf16):
    from w2vcli.decode.emissions import resolve_mode

    monkeypatch.delenv(cpu.MODE_ENV, raising=False)
    dev = torch.device("cpu")
    assert resolve_mode(dev, "auto") == Mode("bf16")  # native bf16: auto takes it
    assert resolve_mode(dev, "auto", "int8") == Mode("fp32", "int8")
    assert resolve_mode(dev, "fp32") == Mode("fp32") and resolve_mode(dev, "bf16") == Mode("bf16")
    assert resolve_mode(dev, "auto", exported="int8") == Mode("fp32", "int8")  # an ONNX file runs as exported
    with pytest.raises(W2VError, match="ONNX model runs as exported"):
        resolve_mode(dev, "bf16", exported="none")
    with pytest.raises(W2VError, match="fp16 is for CUDA"):
        resolve_mode(dev, "fp16")
    with pytest.raises(W2VError, match="drop --precision bf16"):
        EmissionOptions(precision="bf16", quantize="int8")


def test_bf16_is_refused_where_the_cpu_would_emulate_it(monkeypatch, trained, tmp_path):
    monkeypatch.setattr(cpu, "cpu_features", lambda: AVX2)
    model, rows = trained
    with pytest.raises(W2VError, match="no native bfloat16"):
        Emitter(model, EmissionOptions(device="cpu", precision="bf16"))
    from w2vcli.model.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", model)
    result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "m.pt"), rows[0]["audio"], "--precision", "bf16"])
    assert result.exit_code == 1 and "no native bfloat16" in result.output and "Traceback" not in result.output


# --- the parts ------------------------------------------------------------------------------------


def test_int8_quantizes_the_transformer_linears_only(trained):
    from w2vcli.model.quantize import _is_dynamic_int8, is_quantized, quantize_int8

    model, _ = trained
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = quantize_int8(model)
    assert not [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))], caught
    assert is_quantized(q) and not is_quantized(model)  # the caller's model is left alone
    layer = q.wav2vec2.encoder.layers[0]
    for lin in (layer.attention.q_proj, layer.attention.out_proj, layer.ffn.fc1, layer.ffn.fc2):
        assert _is_dynamic_int8(lin) and lin.weight().dtype == torch.qint8
    assert type(q.head) is torch.nn.Linear and type(q.wav2vec2.feature_projection.projection) is torch.nn.Linear


def test_bf16_emitter_runs_a_copy_with_bf16_weights(trained, native_bf16):
    """Weights cast once (not by autocast on every pass); the first conv block and norms stay fp32."""
    model, rows = trained
    emitter = Emitter(model, EmissionOptions(device="cpu", precision="bf16"))
    run = emitter.model.wav2vec2
    assert run.encoder.layers[0].ffn.fc1.weight.dtype == torch.bfloat16 and emitter.model.head.weight.dtype == torch.bfloat16
    assert run.feature_encoder.blocks[1].conv.weight.dtype == torch.bfloat16
    assert run.feature_encoder.blocks[0].conv.weight.dtype == torch.float32
    assert run.encoder.layers[0].attn_norm.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's model is untouched
    from w2vcli.audio import load_audio

    wav = load_audio(rows[0]["audio"])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 weights, autocast; as the Emitter runs it
        logits, _ = model(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), valid_group_norm=True)
    np.testing.assert_array_equal(emitter.batch([wav])[0], torch.log_softmax(logits.float(), -1)[0].numpy())


@pytest.mark.parametrize("grad", [False, True])
def test_first_conv_block_stays_fp32_under_cpu_autocast(grad):
    """Block 0 (1 input channel, k=10; group norm over all frames) runs in fp32 under bf16
    autocast, on both the inference (channels first) and training (matmul) paths; block 1 in bf16."""
    from w2vcli.model import Wav2Vec2ForPreTraining, get_preset

    torch.manual_seed(0)
    enc = Wav2Vec2ForPreTraining(get_preset("tiny")).wav2vec2.feature_encoder
    wav = torch.randn(2, 8000)
    x = wav[:, :, None] if grad else wav[:, None, :]
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
        first = enc.blocks[0].forward_matmul(x) if grad else enc.blocks[0](x)
        second = enc.blocks[1].forward_matmul(first) if grad else enc.blocks[1](first)
    assert first.dtype == torch.float32 and second.dtype == torch.bfloat16
    with torch.set_grad_enabled(grad):
        exact = enc.blocks[0].forward_matmul(x) if grad else enc.blocks[0](x)
    torch.testing.assert_close(first, exact)


@pytest.mark.parametrize(("dim", "kernel", "groups"), [(32, 16, 4), (192, 64, 16), (768, 128, 16)])
def test_positional_conv_under_cpu_bf16_autocast_is_fp32_to_rounding(dim, kernel, groups):
    """The tiny, small and BASE positional convs in bf16 (training with gradients, and inference)
    against fp32: output and every gradient within bf16 rounding. Measured here 0.003-0.004
    relative error; oneDNN's AMX 1-D kernel gave 1.07-1.17 on the first two (BF16PosConv)."""
    from w2vcli.model.transformer import PositionalConvEmbedding

    torch.manual_seed(0)
    conv = PositionalConvEmbedding(dim, kernel, groups)
    x = torch.randn(2, 50, dim, requires_grad=True)
    ref = conv(x)
    go = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [x, *conv.parameters()], go)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x)
    grads = torch.autograd.grad(got, [x, *conv.parameters()], go)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        inferred = conv(x.detach())

    def rel(a, b):
        return float((a.float() - b).norm() / b.norm())

    assert got.dtype == torch.bfloat16 and all(g.dtype == torch.float32 for g in grads)
    errors = [rel(got.detach(), ref.detach()), rel(inferred, ref.detach())] + [rel(g, r) for g, r in zip(grads, ref_grads)]
    assert max(errors) < 0.02, errors  # 5x the measured bf16 error, 1/50 of the broken kernel's


# --- accuracy on a trained model ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_mode_transcripts_agree_with_fp32(trained, native_bf16, mode):
    """Greedy transcripts of the dev set in bf16 / int8 against fp32: agreement and CER change
    within the stated bounds, and log-probabilities close."""
    model, rows = trained
    ref, ref_lp = transcripts(model, rows, precision="fp32", quantize="none")
    options = {"precision": "bf16"} if mode == "bf16" else {"precision": "auto", "quantize": "int8"}
    got, got_lp = transcripts(model, rows, **options)
    base = cer(rows, ref)
    assert base < 0.15 and sum(bool(t) for t in ref) == len(rows), (base, ref)  # the model really transcribes
    agreement = np.mean([a == b for a, b in zip(ref, got)])
    change = abs(cer(rows, got) - base)
    print(f"{mode}: agreement {agreement:.3f}, CER {base:.4f} -> {cer(rows, got):.4f}")
    assert agreement >= MIN_AGREEMENT and change <= MAX_CER_CHANGE, (agreement, change, ref, got)
    diffs = [np.abs(np.exp(a) - np.exp(b)).max() for a, b in zip(ref_lp, got_lp)]  # in probability
    assert max(diffs) < 0.2 and np.mean(diffs) < 0.1, diffs


def test_transcribe_cli_reports_the_mode(trained, native_bf16, monkeypatch, tmp_path):
    from w2vcli.model.checkpoint import save_checkpoint

    monkeypatch.delenv(cpu.MODE_ENV, raising=False)  # auto on a (declared) native-bf16 CPU: bf16
    model, rows = trained
    save_checkpoint(tmp_path / "m.pt", model)
    for args, shown in ((["--device", "cpu"], "model (bf16)"), (["--quantize", "int8"], "model (int8)")):
        result = CliRunner().invoke(app, ["transcribe", str(tmp_path / "m.pt"), rows[0]["audio"], *args])
        assert result.exit_code == 0 and shown in result.output, result.output
