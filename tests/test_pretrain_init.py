"""`w2v pretrain --init CKPT`: continued pretraining from a w2v, Hugging Face or fairseq checkpoint.

The Hugging Face directories are written by transformers' own `save_pretrained` (random tiny
weights); the fairseq files carry fairseq's parameter names and config, as fairseq writes them.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from train_data import make_corpus, read_metrics
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.errors import W2VError
from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, get_preset, load_model, save_checkpoint
from w2vcli.model.config import ModelConfig
from w2vcli.model.convert import HF_CONFIG_FIELDS
from w2vcli.train.config import PretrainConfig, resolve
from w2vcli.train.distributed import Dist
from w2vcli.train.tasks import PretrainTask, load_init

QUIET = ["--num-workers", "0", "--max-tokens", "64000", "--seed", "3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tones"), "train", 8, seed=0)


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"w2v {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}") from result.exception
    return result.output


def w2v_fails(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # rich wraps long lines


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# --- Hugging Face Wav2Vec2ForPreTraining directories ----------------------------------------------


def hf_pretraining_dir(tmp_path, variant: str):
    """A tiny random Wav2Vec2ForPreTraining written by transformers' save_pretrained; returns (model, dir)."""
    pytest.importorskip("transformers")
    import transformers
    from test_model_parity import hf_config, randomize

    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForPreTraining(hf_config(variant))
    randomize(hf, 1)
    out = tmp_path / f"hf-{variant}"
    hf.save_pretrained(out)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(out)  # raw input, as transformers' model
    return hf, out


@pytest.mark.parametrize("variant", ["base_like", "large_like"])
def test_loss_equals_transformers(tmp_path, corpus, variant):
    """The model `pretrain --init HFDIR` trains gives transformers' loss for the same weights,
    mask, distractors and Gumbel temperature (the task's temperature at update 5000)."""
    from test_model_parity import _mask_and_negatives, batch

    hf, hf_dir = hf_pretraining_dir(tmp_path, variant)
    init_model = load_init("pretrain", str(hf_dir))
    cfg = resolve(PretrainConfig, None, [{"train": str(corpus), "out": str(tmp_path / "out"), "init": str(hf_dir)}],
                  init_model.config)
    task = PretrainTask(cfg, Dist(), init_model)
    ours = task.model
    assert ours is not init_model and ours.training
    assert ours.config == load_model(hf_dir).config

    wav, lengths, attention_mask = batch(1)
    mask, negatives = _mask_and_negatives(hf, lengths, attention_mask)
    temperature = task.temperature(5000)
    assert 0.5 < temperature < 2.0
    hf.train()
    hf.set_gumbel_temperature(temperature)
    torch.manual_seed(123)  # the Gumbel noise is the only random draw in either forward
    ref = hf(wav, attention_mask=attention_mask, mask_time_indices=mask, sampled_negative_indices=negatives)
    torch.manual_seed(123)
    got = ours(wav, lengths, mask_indices=mask, negative_indices=negatives, temperature=temperature)
    torch.testing.assert_close(got.loss, ref.loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.contrastive_loss, ref.contrastive_loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.diversity_loss * mask.sum(), ref.diversity_loss, rtol=1e-4, atol=1e-5)
    # and the gradients the first update would take agree too
    got.loss.backward()
    ref.loss.backward()
    torch.testing.assert_close(ours.project_hid.weight.grad, hf.project_hid.weight.grad, rtol=1e-3, atol=1e-5)


def test_cli_from_hf_dir_keeps_its_config(tmp_path, corpus, monkeypatch):
    from w2vcli.model import load as loader
    from w2vcli.train import tasks

    _, hf_dir = hf_pretraining_dir(tmp_path, "large_like")
    loads = []
    counted = lambda *a, **k: loads.append(a) or load_model(*a, **k)  # noqa: E731
    for module in (loader, tasks):  # tasks.load_init's binding, and the loader's for everyone else
        monkeypatch.setattr(module, "load_model", counted)
    out = tmp_path / "cpt"
    w2v("pretrain", "--init", hf_dir, "--train", corpus, "--out", out, "--max-updates", 3)
    assert len(loads) == 1  # one load serves the training defaults, the checks and the weights
    monkeypatch.undo()
    ckpt = load(out / "last.pt")
    assert ckpt["kind"] == "pretrain" and ckpt["update"] == 3
    hf = json.loads((hf_dir / "config.json").read_text())
    saved = ckpt["model_config"]
    for hf_key, field in HF_CONFIG_FIELDS.items():
        want = hf[hf_key]
        assert saved[field] == (list(want) if isinstance(want, (list, tuple)) else want), field
    assert ModelConfig.from_dict(saved) == load_model(hf_dir).config
    # fresh optimizer and schedule: the polynomial warmup starts from 0 at update 0
    assert ckpt["scheduler"]["update"] == 3 and len(read_metrics(out)) >= 1
    toml = (out / "config.toml").read_text()
    assert f'init = "{hf_dir}"' in toml and 'preset = "small"' in toml  # 32 wide: small's defaults
    # the weights moved from the checkpoint's
    start = load_model(hf_dir).state_dict()
    assert any(not torch.equal(start[k], ckpt["model"][k]) for k in start)


def test_init_then_resume_is_exact_and_reads_last_pt(tmp_path, corpus):
    _, hf_dir = hf_pretraining_dir(tmp_path, "base_like")
    common = ["pretrain", "--train", corpus, *QUIET, "--warmup-updates", 2, "--schedule-updates", 6,
              "--log-interval", 2]
    w2v(*common, "--init", hf_dir, "--out", tmp_path / "one", "--max-updates", 6)
    w2v(*common, "--init", hf_dir, "--out", tmp_path / "two", "--max-updates", 3)
    hf_dir.rename(tmp_path / "gone")  # resuming needs only OUT/last.pt
    w2v(*common, "--out", tmp_path / "two", "--max-updates", 6, "--resume")
    a, b = load(tmp_path / "one" / "last.pt"), load(tmp_path / "two" / "last.pt")
    assert a["update"] == b["update"] == 6 and a["model_config"] == b["model_config"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_training_fields_may_change_architecture_may_not(tmp_path, corpus):
    _, hf_dir = hf_pretraining_dir(tmp_path, "base_like")
    ok = tmp_path / "ok.toml"
    ok.write_text("[model]\nmask_time_prob = 0.3\ngumbel_start = 0.5\nlayer_drop = 0.1\nfeature_penalty_weight = 10\n")
    out = tmp_path / "ok"
    w2v("pretrain", "--init", hf_dir, "--train", corpus, "--out", out, "--config", ok, *QUIET, "--max-updates", 1)
    saved = load(out / "last.pt")["model_config"]
    assert (saved["mask_time_prob"], saved["gumbel_start"], saved["layer_drop"]) == (0.3, 0.5, 0.1)
    assert saved["feature_penalty_weight"] == 10.0 and saved["hidden_size"] == 32
    assert read_metrics(out)[-1]["temperature"] == pytest.approx(0.5)  # gumbel_end of the HF default

    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nnum_layers = 3\n")
    message = w2v_fails("pretrain", "--init", hf_dir, "--train", corpus, "--out", tmp_path / "bad", "--config", bad)
    assert "[model] num_layers = 3 contradicts --init" in message and "which has num_layers = 2" in message
    message = w2v_fails("pretrain", "--init", hf_dir, "--train", corpus, "--out", tmp_path / "bad", "--preset", "base")
    assert "--preset base contradicts --init" in message and "hidden_size, num_layers" in message
    assert "conv_dim is [512, 512, 512, 512, 512, 512, 512] in the preset, [32, 32, 32, 32, 32, 32, 32]" in message
    assert not (tmp_path / "bad").exists()


# --- w2v checkpoints, and what cannot be continued --------------------------------------------------


def test_from_w2v_checkpoint_with_its_preset(tmp_path, corpus):
    torch.manual_seed(0)
    start = Wav2Vec2ForPreTraining(get_preset("tiny"))
    save_checkpoint(tmp_path / "pt.pt", start)
    out = tmp_path / "cpt"
    w2v("pretrain", "--init", tmp_path / "pt.pt", "--preset", "tiny", "--train", corpus, "--out", out, *QUIET,
        "--max-updates", 2)
    ckpt = load(out / "last.pt")
    assert ModelConfig.from_dict(ckpt["model_config"]) == start.config and ckpt["update"] == 2


def test_ctc_and_encoder_only_checkpoints_are_refused(tmp_path, corpus):
    from w2vcli.text import Vocabulary

    ctc = Wav2Vec2ForCTC(get_preset("tiny"), Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B"]))
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    message = w2v_fails("pretrain", "--init", tmp_path / "ctc.pt", "--train", corpus, "--out", tmp_path / "o")
    assert "a fine-tuned CTC model has no quantizer" in message and "contrastive loss cannot be continued" in message

    transformers = pytest.importorskip("transformers")
    from test_model_parity import hf_config

    encoder_dir = tmp_path / "encoder"
    transformers.Wav2Vec2Model(hf_config("base_like")).save_pretrained(encoder_dir)
    message = w2v_fails("pretrain", "--init", encoder_dir, "--train", corpus, "--out", tmp_path / "o")
    assert "an encoder-only model (Hugging Face Wav2Vec2Model) has no quantizer" in message
    with pytest.raises(W2VError, match="no such file"):
        load_init("pretrain", str(tmp_path / "missing"))


# --- fairseq pretraining checkpoints: BASE (wav2vec_small.pt) and LARGE / XLS-R layouts ------------


def _wide(variant: str, width: int) -> Wav2Vec2ForPreTraining:
    """A one-layer model `width` wide (so the training defaults are BASE's / LARGE's), random norms."""
    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(hidden_size=width, num_heads=width // 64, num_layers=1, pos_conv_kernel=4,
                                     pos_conv_groups=16)
    if variant == "xlsr":  # wav2vec2_large_librivox.yaml / XLS-R: layer norm in every conv block, pre-LN
        cfg = cfg.replace(feature_norm="layer", layer_norm_first=True, conv_bias=True, normalize_waveform=True)
    model = Wav2Vec2ForPreTraining(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    return model


def _write_fairseq(model: Wav2Vec2ForPreTraining, variant: str, path) -> None:
    """As fairseq saves a pretraining checkpoint: its parameter names, and its config (an
    argparse.Namespace in 2020's wav2vec_small.pt; an omegaconf `cfg` in XLS-R's xlsr2_300m.pt)."""
    from test_model_checkpoint import _fairseq_model_args, _FakeOmegaConf, _to_fairseq

    state = _to_fairseq(model.state_dict(), model.config, ctc=False)
    model_args = _fairseq_model_args(model.config)
    if variant == "base":
        args = argparse.Namespace(**model_args, loss_weights="[0.1, 10]", normalize=False, arch="wav2vec2")
        torch.save({"args": args, "model": state, "optimizer_history": [{"num_updates": 400000}]}, path)
        return
    model_args.update(latent_temp=[2.0, 0.1, 0.999995], feature_grad_mult=1.0, dropout=0.0, attention_dropout=0.0,
                      dropout_input=0.0, dropout_features=0.0, encoder_layerdrop=0.0)
    with _FakeOmegaConf() as oc:
        cfg = oc.DictConfig({
            "model": model_args,
            "task": {"_name": "audio_pretraining", "normalize": True, "max_sample_size": 320000},
            "criterion": {"_name": "wav2vec", "infonce": True, "loss_weights": [0.1, 0.0]},
        })  # fmt: skip
        torch.save({"cfg": cfg, "model": state, "args": None, "extra_state": {"epoch": 40}}, path)


@pytest.mark.parametrize("variant,width,preset", [("base", 768, "base"), ("xlsr", 1024, "large")])
def test_fairseq_pretraining_checkpoint(tmp_path, corpus, variant, width, preset):
    model = _wide(variant, width)
    path = tmp_path / f"{variant}.pt"
    _write_fairseq(model, variant, path)
    loaded = load_init("pretrain", str(path))
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    c = loaded.config
    if variant == "xlsr":
        assert (c.feature_norm, c.layer_norm_first, c.conv_bias, c.normalize_waveform) == ("layer", True, True, True)
        assert (c.gumbel_end, c.feature_penalty_weight, c.feature_grad_mult) == (0.1, 0.0, 1.0)
    else:
        assert (c.feature_norm, c.layer_norm_first, c.feature_penalty_weight) == ("group", False, 10.0)
    cfg = resolve(PretrainConfig, None, [{"train": str(corpus), "out": "o", "init": str(path)}], loaded.config)
    assert cfg.preset == preset and cfg.lr == (5e-4 if preset == "base" else 3e-4)

    short = tmp_path / "short.toml"  # the tone corpus is shorter than BASE/LARGE's 2 s minimum
    short.write_text("min_sample_size = 4000\n")
    out = tmp_path / "cpt"
    w2v("pretrain", "--init", path, "--train", corpus, "--out", out, "--config", short, *QUIET,
        "--warmup-updates", 1, "--max-updates", 2)
    ckpt = load(out / "last.pt")
    assert ckpt["update"] == 2 and ModelConfig.from_dict(ckpt["model_config"]) == loaded.config
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not torch.equal(ckpt["model"]["project_hid.weight"], model.state_dict()["project_hid.weight"])
