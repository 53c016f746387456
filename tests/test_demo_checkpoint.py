"""The demo's shipped pretrained checkpoint, recipes/demo/pretrained/commands/: the file git carries
is the one its SHA256SUMS and README describe, it is the network conf/pretrain.toml builds, trained
on conf/pretrain.toml's schedule, it is pretrained (not random: it picks the true quantized target
on real speech it never heard far above chance), and `w2v finetune` starts from it as stage 3 does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import w2vcli
from w2vcli.cli import app
from w2vcli.model.build import build_model
from w2vcli.model.config import get_preset
from w2vcli.train.config import PretrainConfig, read_toml, resolve

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "demo"
SHIPPED = DEMO / "pretrained" / "commands"


def _conf() -> PretrainConfig:
    return resolve(PretrainConfig, None, [read_toml(DEMO / "conf" / "pretrain.toml", PretrainConfig), {"train": "t", "out": "o"}])


def test_the_file_is_the_one_its_checksum_and_readme_name():
    digest, name = (SHIPPED / "SHA256SUMS").read_text().split()
    assert name.lstrip("*") == "model.pt"
    model = SHIPPED / "model.pt"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest, "model.pt changed without SHA256SUMS"
    assert model.stat().st_size < 6_000_000  # "a few MB": float16 storage of a 2.2 M-parameter network
    readme = (SHIPPED.parent / "README.md").read_text()
    made = [line for line in (SHIPPED / "README.md").read_text().splitlines() if line.startswith("made: ")]
    assert len(made) == 1  # run.sh and results.py quote this line
    assert digest in readme and "--dtype float16" in readme and "w2v pretrain --config recipes/demo/conf/pretrain.toml" in readme


def test_it_is_the_network_and_schedule_of_conf_pretrain_toml():
    cfg = _conf()
    ckpt = torch.load(SHIPPED / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "w2v" and ckpt["kind"] == "pretrain"
    assert "optimizer" not in ckpt  # weights only, no training state
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float16}
    model = w2vcli.load_model(SHIPPED / "model.pt")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config == get_preset(cfg.preset).replace(**cfg.model)
    assert all(torch.isfinite(v.float()).all() for v in ckpt["model"].values())
    # the run it came from: conf/pretrain.toml's settings, all of its updates
    run = read_toml(SHIPPED / "config.toml", PretrainConfig)
    for key in ("max_updates", "lr", "warmup_updates", "max_tokens", "max_sample_size", "preset"):
        assert run[key] == getattr(cfg, key), key
    rows = [json.loads(line) for line in (SHIPPED / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert max(r["update"] for r in rows if "accuracy" in r) == cfg.max_updates
    valid = [r for r in rows if "valid_accuracy" in r]
    assert valid[-1]["valid_accuracy"] > 4 / (model.config.num_negatives + 1)  # left chance long ago


def test_it_is_pretrained_on_real_speech_it_never_heard(real_mini):
    """Ten real LibriSpeech utterances (the shipped model heard only synthetic commands): the share of
    masked frames whose true quantized target it picks among K+1, against a random network's."""
    files = sorted(real_mini.rglob("*.flac"))
    wav = torch.stack([torch.tensor(sf.read(f, dtype="float32")[0][:32000]) for f in files])
    lengths = torch.full((len(files),), 32000)
    shipped = w2vcli.load_model(SHIPPED / "model.pt")
    torch.manual_seed(0)
    random = build_model("pretrain", shipped.config, None, None).eval()
    chance = 1 / (shipped.config.num_negatives + 1)
    acc = {}
    for name, model in (("shipped", shipped), ("random", random)):
        torch.manual_seed(0)  # the same masks and distractors for both
        with torch.no_grad():
            acc[name] = model(wav, lengths, temperature=0.5).accuracy.item()
    assert acc["shipped"] > 3 * chance and acc["shipped"] > 1.8 * acc["random"], acc  # 0.176 against 0.078 at 10k updates


def test_stage_3_fine_tunes_from_it(real_mini, tmp_path):
    """`w2v finetune --config conf/finetune.toml --init model.pt`, two updates: the frozen conv
    encoder keeps the shipped weights, the four Transformer blocks start afresh, as it says."""
    runner = CliRunner()
    prep = runner.invoke(app, ["prepare", "librispeech", str(real_mini), "--out", str(tmp_path / "data")])
    assert prep.exit_code == 0, prep.output
    manifest = tmp_path / "data" / "test-real.jsonl"
    result = runner.invoke(app, [
        "finetune", "--config", str(DEMO / "conf" / "finetune.toml"), "--init", str(SHIPPED / "model.pt"),
        "--train", str(manifest), "--valid", str(manifest), "--out", str(tmp_path / "ft"), "--max-updates", "2",
        "--num-workers", "0", "--threads", "2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "all of its 4 Transformer layers initialised afresh" in result.output
    ft = torch.load(tmp_path / "ft" / "last.pt", map_location="cpu", weights_only=True)
    shipped = torch.load(SHIPPED / "model.pt", map_location="cpu", weights_only=True)["model"]
    conv = [k for k in shipped if k.startswith("wav2vec2.feature_encoder.") and k.endswith("weight")]
    assert conv and all(torch.equal(ft["model"][k], shipped[k].float()) for k in conv)
    block = next(k for k in shipped if k.startswith("wav2vec2.encoder.layers.0.") and k.endswith("weight") and shipped[k].dim() == 2)
    assert not torch.allclose(ft["model"][block], shipped[block].float(), atol=1e-2)
