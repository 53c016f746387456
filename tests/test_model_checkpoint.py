"""Checkpoints: w2v format, Hugging Face export, fairseq layouts, and refusing malicious pickles."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import pytest
import torch
from typer.testing import CliRunner

import w2vcli
from w2vcli.errors import W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, export_hf, get_preset, save_checkpoint
from w2vcli.text import Vocabulary

VOCAB = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N"])


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9600, 6400])
    wav = torch.randn(2, 9600, generator=g) * (torch.arange(9600)[None, :] < lengths[:, None])
    return wav, lengths


def _tiny(kind: str, variant: str = "base_like", seed: int = 0):
    torch.manual_seed(seed)
    cfg = get_preset("tiny")
    if variant == "large_like":
        cfg = cfg.replace(feature_norm="layer", layer_norm_first=True, conv_bias=True)
    model = Wav2Vec2ForPreTraining(cfg) if kind == "pretrain" else Wav2Vec2ForCTC(cfg, VOCAB)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _pretrain_outputs(model, seed=0):
    wav, lengths = _batch(seed)
    g = torch.Generator().manual_seed(seed)
    from w2vcli.model.masking import sample_negatives, span_mask

    frames = model.wav2vec2.frame_lengths(lengths)
    mask = span_mask(frames, int(frames.max()), 0.5, 3, 2, generator=g)
    neg = sample_negatives(mask, 5, generator=g)
    with torch.no_grad():
        return model(wav, lengths, mask, neg)


# --- w2v format and Hugging Face ---------------------------------------------------------------


def test_w2v_checkpoint_round_trip(tmp_path):
    model = _tiny("pretrain")
    save_checkpoint(tmp_path / "pt.pt", model, update=7)
    ckpt = torch.load(tmp_path / "pt.pt", weights_only=True)
    assert ckpt["format"] == "w2v" and ckpt["kind"] == "pretrain" and ckpt["update"] == 7
    again = w2vcli.load_model(tmp_path / "pt.pt")
    a, b = _pretrain_outputs(model), _pretrain_outputs(again)
    torch.testing.assert_close(a.loss, b.loss)
    assert again.config == model.config


@pytest.mark.parametrize("variant", ["base_like", "large_like"])
def test_export_hf_loads_in_transformers(tmp_path, variant):
    transformers = pytest.importorskip("transformers")
    ctc = _tiny("ctc", variant)
    export_hf(ctc, tmp_path / "ctc")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "ctc").eval()
    wav, lengths = _batch()
    attention_mask = (torch.arange(9600)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        ours, frames = ctc(wav, lengths)
        ref = hf(wav, attention_mask=attention_mask).logits
    torch.testing.assert_close(ours[0], ref[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(ours[1, : frames[1]], ref[1, : frames[1]], atol=2e-5, rtol=1e-4)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ctc")
    assert tok.convert_ids_to_tokens(list(range(len(VOCAB)))) == VOCAB.tokens
    # and back: the exported directory loads into w2v with the same weights
    again = w2vcli.load_model(tmp_path / "ctc")
    assert again.vocab.tokens == VOCAB.tokens
    with torch.no_grad():  # the inference path, as `ours` (training's group norm rounds differently)
        torch.testing.assert_close(again(wav, lengths)[0], ours)

    pt = _tiny("pretrain", variant)
    export_hf(pt, tmp_path / "pt")
    hf_pt = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "pt")
    ours_state = w2vcli.load_model(tmp_path / "pt").state_dict()
    for k, v in pt.state_dict().items():
        torch.testing.assert_close(ours_state[k], v)
    torch.testing.assert_close(hf_pt.quantizer.codevectors.view(2, 8, -1), pt.quantizer.codevectors)


def test_hf_do_normalize_and_blank_last(tmp_path):
    """preprocessor_config.json's do_normalize is honoured; a vocab with "[PAD]" last gets its blank moved to 0."""
    transformers = pytest.importorskip("transformers")
    import json

    ctc = _tiny("ctc")
    export_hf(ctc, tmp_path)
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path).eval()
    # rewrite as an HF-tutorial style model: letters first, "[PAD]" (the blank) last
    tokens = ["|", "E", "T", "A", "O", "N", "[UNK]", "<s>", "</s>", "[PAD]"]
    order = [4, 5, 6, 7, 8, 9, 3, 1, 2, 0]  # row of our head each new index takes
    with torch.no_grad():
        hf.lm_head.weight.copy_(hf.lm_head.weight[order].clone())
        hf.lm_head.bias.copy_(hf.lm_head.bias[order].clone())
    hf.config.pad_token_id = 9
    hf.save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**pre, "do_normalize": True}))
    ours = w2vcli.load_model(tmp_path)
    assert ours.config.normalize_waveform is True
    assert ours.vocab.tokens == ["<pad>", "|", "E", "T", "A", "O", "N", "<unk>", "<s>", "</s>"]
    wav, lengths = _batch()
    wav = 3.0 * wav + 0.5 * (torch.arange(9600)[None, :] < lengths[:, None])
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    inputs = fe([wav[0].numpy(), wav[1, :6400].numpy()], sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(inputs.input_values, attention_mask=inputs.attention_mask).logits[0]
        got = ours(wav, lengths)[0][0]
    torch.testing.assert_close(got[:, 0], ref[:, 9], atol=1e-4, rtol=1e-4)  # blank
    torch.testing.assert_close(got[:, 1:], ref[:, :9], atol=1e-4, rtol=1e-4)  # the others, in order


# --- fairseq -------------------------------------------------------------------------------------


def _to_fairseq(state: dict, config, ctc: bool) -> dict:
    """w2v weights renamed to fairseq's wav2vec 2.0 layout (written independently of w2vcli's table)."""
    layer_norm_convs = config.feature_norm == "layer"
    out = {}
    for k, v in state.items():
        k = k.removeprefix("wav2vec2.")
        parts = k.split(".")
        if k.startswith("feature_encoder.blocks."):
            i, what, p = parts[2], parts[3], parts[4]
            k = f"feature_extractor.conv_layers.{i}." + ("0." if what == "conv" else ("2.1." if layer_norm_convs else "2.")) + p
        elif k.startswith("feature_projection.layer_norm."):
            k = "layer_norm." + parts[-1]
        elif k.startswith("feature_projection.projection."):
            k = "post_extract_proj." + parts[-1]
        elif k == "mask_embedding":
            k = "mask_emb"
        elif k.startswith("encoder.pos_conv."):
            k = "encoder.pos_conv.0." + parts[-1]
        elif k.startswith("encoder.layers."):
            sub = {"attention": "self_attn", "attn_norm": "self_attn_layer_norm", "ffn_norm": "final_layer_norm"}
            rest = parts[3:]
            if rest[0] == "ffn":
                rest = rest[1:]
            else:
                rest[0] = sub.get(rest[0], rest[0])
            k = ".".join(parts[:3] + rest)
        elif k == "quantizer.codevectors":
            k, v = "quantizer.vars", v.reshape(1, -1, v.shape[-1])
        elif k.startswith("project_hid."):
            k = "final_proj." + parts[-1]
        elif k.startswith("head."):
            out["w2v_encoder.proj." + parts[-1]] = v
            continue
        out[("w2v_encoder.w2v_model." if ctc else "") + k] = v
    return out


def _fairseq_model_args(config) -> dict:
    layers = " + ".join(f"[({c}, {k}, {s})]" for c, k, s in zip(config.conv_dim, config.conv_kernel, config.conv_stride))
    return dict(
        _name="wav2vec2", extractor_mode="default" if config.feature_norm == "group" else "layer_norm",
        conv_feature_layers=layers, conv_bias=config.conv_bias, encoder_layers=config.num_layers,
        encoder_embed_dim=config.hidden_size, encoder_ffn_embed_dim=config.ffn_dim,
        encoder_attention_heads=config.num_heads, layer_norm_first=config.layer_norm_first,
        conv_pos=config.pos_conv_kernel, conv_pos_groups=config.pos_conv_groups, latent_vars=config.codebook_size,
        latent_groups=config.num_codebooks, latent_dim=config.codevector_dim, final_dim=config.proj_dim,
        quantize_targets=True, latent_temp="(2,0.5,0.999995)", feature_grad_mult=0.1, mask_prob=0.65,
        num_negatives=100, dropout=0.1, attention_dropout=0.1, dropout_input=0.1, dropout_features=0.1,
        encoder_layerdrop=0.05, logit_temp=0.1,
    )  # fmt: skip


class _FakeOmegaConf:
    """Stand-ins for omegaconf's DictConfig and AnyNode, pickled under omegaconf's module names."""

    def __init__(self):
        dictconfig, nodes = types.ModuleType("omegaconf.dictconfig"), types.ModuleType("omegaconf.nodes")

        class DictConfig:
            def __init__(self, content):
                self._content = {k: (DictConfig(v) if isinstance(v, dict) else AnyNode(v)) for k, v in content.items()}

            def __getstate__(self):
                return {"_content": self._content, "_metadata": None, "_parent": None}

        class AnyNode:
            def __init__(self, value):
                self._val = value

            def __getstate__(self):
                return {"_val": self._val, "_metadata": None, "_parent": None}

        DictConfig.__module__, AnyNode.__module__ = "omegaconf.dictconfig", "omegaconf.nodes"
        DictConfig.__qualname__, AnyNode.__qualname__ = "DictConfig", "AnyNode"
        dictconfig.DictConfig, nodes.AnyNode = DictConfig, AnyNode
        self.modules = {"omegaconf": types.ModuleType("omegaconf"), "omegaconf.dictconfig": dictconfig, "omegaconf.nodes": nodes}
        self.DictConfig = DictConfig

    def __enter__(self):
        sys.modules.update(self.modules)
        return self

    def __exit__(self, *exc):
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.mark.parametrize("variant,zipfile", [("base_like", False), ("large_like", True)])
def test_fairseq_pretraining_checkpoint(tmp_path, variant, zipfile):
    """wav2vec_small.pt style: an argparse.Namespace `args`, fairseq parameter names (2020's legacy torch.save format too)."""
    model = _tiny("pretrain", variant)
    args = argparse.Namespace(**_fairseq_model_args(model.config), loss_weights="[0.1, 10]", normalize=False,
                              arch="wav2vec2", task="audio_pretraining")  # fmt: skip
    ckpt = {"args": args, "model": _to_fairseq(model.state_dict(), model.config, ctc=False),
            "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "num_updates": 400000}],
            "extra_state": {"epoch": 3}, "last_optimizer_state": None}  # fmt: skip
    torch.save(ckpt, tmp_path / "wav2vec_small.pt", _use_new_zipfile_serialization=zipfile)
    loaded = w2vcli.load_model(tmp_path / "wav2vec_small.pt")
    assert isinstance(loaded, Wav2Vec2ForPreTraining)
    for field in ("conv_dim", "feature_norm", "layer_norm_first", "conv_bias", "hidden_size", "codevector_dim"):
        assert getattr(loaded.config, field) == getattr(model.config, field)
    assert loaded.config.layer_drop == 0.05 and loaded.config.feature_penalty_weight == 10.0
    a, b = _pretrain_outputs(model), _pretrain_outputs(loaded)
    torch.testing.assert_close(a.contrastive_loss, b.contrastive_loss)
    torch.testing.assert_close(a.code_perplexity, b.code_perplexity)


def test_fairseq_ctc_checkpoint_with_omegaconf_cfg(tmp_path):
    """wav2vec_small_960h.pt style (newer fairseq): an omegaconf `cfg` with w2v_args, dict.ltr.txt beside it."""
    ctc = _tiny("ctc")
    model_args = _fairseq_model_args(ctc.config)
    with _FakeOmegaConf() as oc:
        cfg = oc.DictConfig({
            "model": {"_name": "wav2vec_ctc", "final_dropout": 0.0, "mask_prob": 0.5, "layerdrop": 0.1,
                      "feature_grad_mult": 0.0, "w2v_args": {"model": model_args, "task": {"normalize": False}}},
            "task": {"_name": "audio_finetuning", "normalize": False, "labels": "ltr"},
        })  # fmt: skip
        state = _to_fairseq(ctc.state_dict(), ctc.config, ctc=True)
        torch.save({"cfg": cfg, "model": state, "args": None}, tmp_path / "wav2vec_small_960h.pt")
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{t} {100 - i}\n" for i, t in enumerate(VOCAB.tokens[4:])))
    assert "omegaconf" not in sys.modules
    loaded = w2vcli.load_model(tmp_path / "wav2vec_small_960h.pt")
    assert "omegaconf" not in sys.modules, "the loader must not import the classes named in the pickle"
    assert isinstance(loaded, Wav2Vec2ForCTC) and loaded.vocab.tokens == VOCAB.tokens
    assert loaded.config.mask_time_prob == 0.5 and loaded.config.layer_drop == 0.1
    wav, lengths = _batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(wav, lengths)[0], ctc(wav, lengths)[0])


def test_fairseq_ctc_checkpoint_without_dict_ltr(tmp_path, capsys):
    """No dict.ltr.txt beside it: --vocab supplies one; only a 32-output head is read as LibriSpeech's letters, loudly."""
    from w2vcli.model.build import librispeech_vocab

    def save(model, name):
        cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": {"model": _fairseq_model_args(model.config), "task": {}}},
               "task": {"normalize": False}}  # fmt: skip
        torch.save({"cfg": cfg, "model": _to_fairseq(model.state_dict(), model.config, ctc=True)}, tmp_path / name)
        return tmp_path / name

    path = save(_tiny("ctc"), "ft.pt")
    with pytest.raises(W2VError, match=r"no dict.ltr.txt beside it for its CTC head of 10 outputs; give .* --vocab"):
        w2vcli.load_model(path)
    VOCAB.save(tmp_path / "vocab.json")
    assert w2vcli.load_model(path, vocab=tmp_path / "vocab.json").vocab.tokens == VOCAB.tokens
    torch.manual_seed(0)
    released = save(Wav2Vec2ForCTC(get_preset("tiny"), librispeech_vocab()), "wav2vec_small_960h.pt")
    capsys.readouterr()
    assert w2vcli.load_model(released).vocab.tokens == librispeech_vocab().tokens
    assert "assuming the letter order of fairseq's LibriSpeech dictionary" in capsys.readouterr().err


# --- security ------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func", [os.system, eval])
def test_malicious_pickle_is_refused(tmp_path, func):
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    path = tmp_path / "evil.pt"
    torch.save({"format": "w2v", "model": {"x": torch.zeros(1)}, "cfg": _Payload(func, command)}, path)
    with pytest.raises(W2VError, match="refusing to load"):
        w2vcli.load_model(path)
    assert not marker.exists()
    # the CLI reports it as one clean error line
    from w2vcli.cli import app

    result = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "refusing to load" in result.output
    assert not marker.exists()


def test_export_command(tmp_path):
    from w2vcli.cli import app

    ctc = _tiny("ctc")
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "ctc.pt"), "--to", "hf", "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "vocab.json").is_file()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "hf"), "--to", "w2v", "--out", str(tmp_path / "back.pt")])
    assert result.exit_code == 0, result.output
    wav, lengths = _batch()
    torch.testing.assert_close(w2vcli.load_model(tmp_path / "back.pt")(wav, lengths)[0], ctc(wav, lengths)[0])


def test_export_dtype_float16_halves_the_file_and_loads_back_in_float32(tmp_path):
    """`w2v export --dtype float16` (how the demo's shipped checkpoint is written): half the bytes,
    the weights rounded to float16, read back into a float32 model by w2v, and by transformers."""
    from w2vcli.cli import app

    pt = _tiny("pretrain")
    save_checkpoint(tmp_path / "pt.pt", pt)
    for to, out in (("w2v", tmp_path / "half.pt"), ("hf", tmp_path / "half-hf")):
        result = CliRunner().invoke(app, ["export", str(tmp_path / "pt.pt"), "--to", to, "--dtype", "float16", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "storing the weights as float16" in result.output
        again = w2vcli.load_model(out)
        assert {p.dtype for p in again.parameters()} == {torch.float32}
        for k, v in pt.state_dict().items():
            if v.is_floating_point():
                torch.testing.assert_close(again.state_dict()[k], v.half().float(), rtol=0, atol=0)
    stored = torch.load(tmp_path / "half.pt", weights_only=True)["model"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    full = torch.load(tmp_path / "pt.pt", weights_only=True)["model"]
    assert sum(v.nbytes for v in stored.values()) < 0.55 * sum(v.nbytes for v in full.values())
    assert json.loads((tmp_path / "half-hf" / "config.json").read_text())["torch_dtype"] == "float16"
    transformers = pytest.importorskip("transformers")
    hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "half-hf")  # in float16 (v5) or float32 (4.x)
    torch.testing.assert_close(hf.quantizer.codevectors.view(2, 8, -1).float(), pt.quantizer.codevectors.half().float())
    # what it refuses
    result = CliRunner().invoke(app, ["export", str(tmp_path / "pt.pt"), "--dtype", "int8", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--dtype must be one of float32, float16, bfloat16" in result.output
