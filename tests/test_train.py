"""The training engine through `w2v pretrain` / `w2v finetune` on a tiny tone corpus (CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from train_data import make_corpus, read_metrics
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.errors import W2VError
from w2vcli.train.config import FinetuneConfig, PretrainConfig, read_toml, resolve
from w2vcli.train.config import PolynomialDecay, TriStage

TINY = ["--preset", "tiny", "--max-tokens", "64000", "--num-workers", "0", "--seed", "3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return make_corpus(root, "train", 24, seed=0), make_corpus(root, "dev", 6, seed=1)


def w2v(*args: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"w2v {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}") from result.exception


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# --- schedules and configuration ------------------------------------------------------------------


def test_schedules():
    poly = PolynomialDecay(1e-3, warmup_updates=10, total_updates=110)
    assert poly(5) == pytest.approx(5e-4) and poly(10) == pytest.approx(1e-3)
    assert poly(60) == pytest.approx(5e-4) and poly(110) == 0.0 and poly(500) == 0.0
    tri = TriStage(1e-3, total_updates=100)  # 10 warmup, 40 hold, 50 decay
    assert tri(0) == pytest.approx(1e-5) and tri(10) == pytest.approx(1e-3) and tri(49) == pytest.approx(1e-3)
    assert tri(100) == pytest.approx(5e-5) and tri(75) == pytest.approx(1e-3 * math.sqrt(0.05))


def test_config_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('lr = 1\nmax_updates = 7\nwarmup_updates = 3\n[model]\nhidden_size = 64\n')
    cfg = resolve(PretrainConfig, "tiny", [read_toml(toml, PretrainConfig), {"max_updates": 9}])
    assert (cfg.lr, cfg.max_updates, cfg.warmup_updates, cfg.max_sample_size) == (1.0, 9, 3, 48000)
    assert cfg.model == {"hidden_size": 64}
    base = resolve(FinetuneConfig, "base", [])
    assert base.max_tokens == 3_200_000 and base.freeze_updates == 10_000
    toml.write_text("max_updatez = 3\n")
    with pytest.raises(W2VError, match="unknown option 'max_updatez'"):
        read_toml(toml, PretrainConfig)
    toml.write_text('max_updates = "many"\n')
    with pytest.raises(W2VError, match="max_updates"):
        read_toml(toml, PretrainConfig)


# --- pretraining ----------------------------------------------------------------------------------


def test_old_spellings_of_masking_and_layer_drop_are_read_with_a_warning(tmp_path, capsys):
    """FinetuneConfig spells mask_time_prob / layer_drop as ModelConfig does; a TOML file with the
    old mask_prob / layerdrop still sets them, and the warning names the new spelling."""
    old = tmp_path / "old.toml"
    old.write_text("mask_prob = 0.3\nlayerdrop = 0.2\n")
    cfg = resolve(FinetuneConfig, "tiny", [read_toml(old, FinetuneConfig), {"init": "none"}])
    assert (cfg.mask_time_prob, cfg.layer_drop) == (0.3, 0.2)
    err = capsys.readouterr().err
    assert "'mask_prob' is now spelled 'mask_time_prob'" in err and "'layerdrop' is now spelled 'layer_drop'" in err
    new = tmp_path / "new.toml"
    new.write_text("mask_time_prob = 0.3\nlayer_drop = 0.2\n")
    assert read_toml(new, FinetuneConfig) == {"mask_time_prob": 0.3, "layer_drop": 0.2}
    assert "spelled" not in capsys.readouterr().err
    with pytest.raises(W2VError, match="unknown option 'mask_prob'"):  # pretraining never had it
        read_toml(old, PretrainConfig)


def test_pretrain_loss_falls_and_checkpoints_load(corpus, tmp_path):
    train, dev = corpus
    out = tmp_path / "pt"
    w2v("pretrain", "--train", train, "--valid", dev, "--out", out, *TINY, "--max-updates", 40,
        "--lr", "2e-3", "--warmup-updates", 5, "--log-interval", 5, "--valid-interval", 20)
    rows = read_metrics(out)
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"] - 0.1
    for key in ("contrastive", "diversity", "accuracy", "code_perplexity", "temperature", "lr", "grad_norm",
                "samples_per_s", "data_time", "step_time", "skipped"):
        assert key in train_rows[-1], key
    assert [r["update"] for r in rows if "valid_loss" in r] == [20, 40]
    ckpt = load(out / "last.pt")
    assert ckpt["format"] == "w2v" and ckpt["kind"] == "pretrain" and ckpt["update"] == 40
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "data", "train_config", "model_config"):
        assert key in ckpt, key
    assert {"python", "numpy", "torch"} <= set(ckpt["rng"][0])
    from w2vcli import load_model

    assert type(load_model(out / "best.pt")).__name__ == "Wav2Vec2ForPreTraining"
    assert read_toml(out / "config.toml", PretrainConfig)["max_updates"] == 40


def test_exact_resume_is_bit_identical(corpus, tmp_path):
    train, dev = corpus
    common = ["pretrain", "--train", train, "--valid", dev, *TINY, "--num-workers", 1, "--lr", "2e-3",
              "--warmup-updates", 5, "--schedule-updates", 20, "--valid-interval", 7, "--log-interval", 5]
    w2v(*common, "--out", tmp_path / "one", "--max-updates", 20)
    w2v(*common, "--out", tmp_path / "two", "--max-updates", 10)
    # --resume takes --train and --valid from two/config.toml
    w2v("pretrain", *common[5:], "--out", tmp_path / "two", "--max-updates", 20, "--resume")
    a, b = load(tmp_path / "one" / "last.pt"), load(tmp_path / "two" / "last.pt")
    assert a["update"] == b["update"] == 20 and a["data"] == b["data"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_nan_steps_are_skipped_and_counted(corpus, tmp_path):
    train, _ = corpus
    bad = tmp_path / "nan.wav"
    sf.write(bad, np.full(16000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows.append({"id": "nan", "audio": str(bad), "num_samples": 16000, "sample_rate": 16000})
    manifest = tmp_path / "with_nan.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pt"
    w2v("pretrain", "--train", manifest, "--out", out, *TINY, "--max-updates", 12, "--log-interval", 4)
    ckpt = load(out / "last.pt")
    assert ckpt["update"] == 12 and ckpt["skipped"] >= 1
    assert read_metrics(out)[-1]["skipped_total"] == ckpt["skipped"]
    # the windows with a NaN batch are not misread as a collapse or a blow-up (diagnostics)
    assert not [r["diagnostic"] for r in read_metrics(out) if "diagnostic" in r]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # nothing but NaN: stops with a clear message
    only = tmp_path / "only_nan.jsonl"
    only.write_text(json.dumps(rows[-1]) + "\n")
    result = CliRunner().invoke(app, ["pretrain", "--train", str(only), "--out", str(tmp_path / "x"), *TINY])
    assert result.exit_code == 1 and "non-finite steps in a row" in result.output


# --- fine-tuning ----------------------------------------------------------------------------------


def test_finetune_from_pretraining_checkpoint_keeps_best(corpus, tmp_path):
    train, dev = corpus
    pt = tmp_path / "pt"
    w2v("pretrain", "--train", train, "--out", pt, *TINY, "--max-updates", 5)
    ft = tmp_path / "ft"
    w2v("finetune", "--init", pt / "last.pt", "--train", train, "--valid", dev, "--out", ft, *TINY,
        "--max-updates", 40, "--lr", "3e-3", "--valid-interval", 10, "--log-interval", 5, "--mask-prob", "0.2")
    rows = read_metrics(ft)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    valid = [r for r in rows if "valid_wer" in r]
    assert [r["update"] for r in valid] == [10, 20, 30, 40]
    best = min(valid, key=lambda r: (r["valid_wer"], r["valid_cer"], r["valid_loss"]))
    assert load(ft / "best.pt")["update"] == best["update"]
    assert [r["update"] for r in valid if r["valid_best"]][-1] == best["update"]
    last = load(ft / "last.pt")
    assert last["kind"] == "ctc" and last["vocab"][:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"]
    # the encoder started from the pretrained weights: the conv stack stayed frozen
    enc = load(pt / "last.pt")["model"]
    k = next(k for k in last["model"] if "feature_encoder" in k)
    assert torch.equal(last["model"][k], enc[k])
    from w2vcli import load_model

    assert load_model(ft / "best.pt").vocab.tokens == last["vocab"]


def test_finetune_from_transformers_directory(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    train, _ = corpus
    config = transformers.Wav2Vec2Config(
        conv_dim=(32,) * 7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_codevector_groups=2,
        num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=16)
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForPreTraining(config)
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "ft"
    w2v("finetune", "--init", tmp_path / "hf", "--train", train, "--out", out, *TINY, "--max-updates", 6,
        "--log-interval", 3)
    ckpt = load(out / "last.pt")
    assert ckpt["update"] == 6 and ckpt["model_config"]["hidden_size"] == 32
    key = "wav2vec2.feature_encoder.blocks.0.conv.weight"
    hf_key = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(ckpt["model"][key], hf.state_dict()[hf_key])  # frozen, so still HF's weights


def test_finetune_from_scratch_with_sentencepiece(corpus, tmp_path):
    train, dev = corpus
    out = tmp_path / "ft"
    w2v("finetune", "--from-scratch", "--train", train, "--valid", dev, "--out", out, *TINY,
        "--train-spm", 12, "--max-updates", 4, "--log-interval", 2)
    ckpt = load(out / "last.pt")
    assert (out / "spm.model").is_file() and ckpt["vocab_word_boundary"] is None
    assert any(t.startswith("\u2581") for t in ckpt["vocab"])
    import w2vcli

    model = w2vcli.load_model(out / "last.pt")  # decoding must see sentencepiece units, not letters
    assert model.vocab.word_boundary is None
    assert model.vocab.decode([model.vocab.index[t] for t in ckpt["vocab"][4:6]]) != ""


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(corpus, tmp_path, precision):
    train, _ = corpus
    out = tmp_path / precision
    w2v("pretrain", "--train", train, "--out", out, *TINY, "--max-updates", 3, "--precision", precision)
    ckpt = load(out / "last.pt")
    assert ckpt["update"] == 3 and all(v.dtype != torch.bfloat16 for v in ckpt["model"].values())
    assert (ckpt["scaler"] is not None) == (precision == "fp16")
    if precision == "fp16":
        assert ckpt["scaler"]["scale"] > 0


def test_finetune_defaults_follow_the_checkpoint_width(tmp_path):
    from w2vcli.model import Wav2Vec2ForPreTraining, get_preset, save_checkpoint
    from w2vcli.train.config import FinetuneConfig, resolve

    cfg = get_preset("tiny").replace(hidden_size=768, num_heads=12, num_layers=1, ffn_dim=64, pos_conv_kernel=4)
    save_checkpoint(tmp_path / "wide.pt", Wav2Vec2ForPreTraining(cfg))
    resolved = resolve(FinetuneConfig, None, [{"init": str(tmp_path / "wide.pt")}])
    assert resolved.preset == "base" and resolved.lr == 5e-5
    assert resolve(FinetuneConfig, "small", [{"init": str(tmp_path / "wide.pt")}]).preset == "small"
    assert resolve(FinetuneConfig, None, [{"init": "none"}]).preset == "small"


def test_optimizer_is_fused_where_supported():
    from w2vcli.train.engine import make_optimizer

    opt = make_optimizer([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert opt.param_groups[0]["fused"] and opt.defaults["betas"] == (0.9, 0.98)
    meta = make_optimizer([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=1e-3)  # no fused kernel
    assert not meta.param_groups[0]["fused"]
