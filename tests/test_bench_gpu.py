"""bench/gpu/harness.py without a GPU: its dry run writes every field, its time limits hold, its FLOP
count agrees with torch's FLOP counter, and its largest-batch search and peak table are right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.gpu import harness as gpu
from bench.gpu.flops import conv_frames, forward_flops, peak_bf16_tflops, train_step_flops
from bench.gpu.measure import Settings, largest_batch

REPO = Path(__file__).resolve().parents[1]
LM_ROWS = {"transcribe_base_lm", "transcribe_large_lm"}


@pytest.fixture(scope="module")
def lm_or_none(lm_text, tmp_path_factory) -> Path | None:
    """A small 3-gram for the LM runs, or None without KenLM's programs (those rows are then skipped)."""
    from w2vcli.decode.lm import LMBuildConfig, build_lm
    from w2vcli.errors import W2VError

    out = tmp_path_factory.mktemp("lm") / "lm.bin"
    try:
        build_lm(LMBuildConfig(texts=(lm_text,), out=out, order=3, memory="50M"))
    except W2VError:
        return None
    return out


def test_dry_run_writes_every_field(tmp_path, real_mini, lm_or_none):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench.gpu", "--dry-run", "--out", str(out), "--audio", str(real_mini),
           "--peak-tflops", "1"] + (["--lm", str(lm_or_none)] if lm_or_none else [])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=gpu.DRY_BUDGET_S + 60)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / "gpu-bench.json").read_text())
    assert report["dry_run"] and report["wall_s"] < report["budget_s"]
    assert report["peak_bf16_tflops"] == 1.0 and report["machine"]["device_name"] == "cpu (dry run)"
    assert set(report["children"].values()) == {"ok"}
    planned = [(name, kind) for child in gpu.PLAN for name, kind in child.measurements]
    assert [(r["name"], r["kind"]) for r in report["results"]] == planned
    for r in report["results"]:
        assert list(r) == [*gpu.COMMON, *gpu.FIELDS[r["kind"]]], r["name"]
        if r["name"] in LM_ROWS and lm_or_none is None:
            assert r["status"] == "skipped" and "LM" in r["reason"]
            continue
        assert r["status"] == "ok", r
        missing = [k for k in gpu.FIELDS[r["kind"]] if r[k] is None and k != "note"]
        assert not missing, (r["name"], missing)
    by = {r["name"]: r for r in report["results"]}
    assert by["pretrain_base_w2v"]["mfu"] == pytest.approx(by["pretrain_base_w2v"]["tflops"])  # peak 1 TFLOP/s
    assert by["max_batch_base_w2v"]["max_batch"] == 4 and by["max_batch_base_w2v"]["capped"]  # the dry run's limit
    assert set(report["targets"]) == {"base_tokens_per_s", "w2v_over_transformers", "base_mfu", "vs_nvidia_a100"}
    assert report["targets"]["w2v_over_transformers"]["value"] > 0
    md = (out / "gpu-bench.md").read_text()
    for name, _ in planned:
        if name not in ("gemm_bf16", "max_batch_base_w2v", "max_batch_base_hf"):  # those are columns
            assert f"| {name} |" in md, name
    assert "| pretrain_base_w2v | w2v | tiny(base) | 2 |" in md and "≥4" in md
    assert md in res.stdout  # the tables are printed last


def test_children_are_stopped_at_their_time_limit(tmp_path, monkeypatch):
    """A child past its limit is killed with its process group; what it did not record is a timeout.
    A child that would get less than its minimum is not started."""
    slow = gpu.Child("compile", 0.3, 0.0, (("compile_infer_base", "compile"), ("compile_train_base", "compile")))
    never = gpu.Child("w2v_large", 100, 50, (("pretrain_large_w2v", "train"),))
    monkeypatch.setattr(gpu, "PLAN", (slow, never))
    settings = Settings.for_run(True, str(tmp_path), None, 1)
    t0 = time.perf_counter()
    ended = gpu.run_children(settings, 10.0, tmp_path / "records.jsonl", None)
    assert time.perf_counter() - t0 < 5
    assert ended["compile"] == "timeout after 0.3 s"  # python cannot even import torch in that time
    assert ended["w2v_large"].startswith("skipped: ") and ended["w2v_large"].endswith("needs 50 s")
    rows = gpu.collect(gpu.read_records(tmp_path / "records.jsonl"), ended, None)
    assert [(r["name"], r["status"]) for r in rows] == [("compile_infer_base", "timeout"),
                                                        ("compile_train_base", "timeout"),
                                                        ("pretrain_large_w2v", "skipped")]  # fmt: skip
    assert all(set(r) == {*gpu.COMMON, *gpu.FIELDS[r["kind"]]} for r in rows)


@pytest.mark.parametrize("variant", ["tiny", "tiny-layer", "small"])
def test_flop_count_matches_torch_counter(variant):
    """The forward count equals torch's FlopCounterMode on a real forward pass; forward +
    backward is 3x, less block 0's input gradient (the waveform needs none). (Grouped convolutions
    are left out: torch's counter ignores the groups in their weight gradient.)"""
    from torch.utils.flop_counter import FlopCounterMode

    from w2vcli.model.config import small, tiny
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    cfg = {"tiny": tiny(), "small": small(),
           "tiny-layer": tiny().replace(feature_norm="layer", layer_norm_first=True, conv_bias=True)}[variant]
    cfg = cfg.replace(pos_conv_groups=1, layer_drop=0.0)
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(cfg).train()
    S = 24000
    wav, lengths = torch.randn(2, S), torch.tensor([S, S])
    with FlopCounterMode(display=False) as fwd:
        out = model(wav, lengths)
    assert int(model.wav2vec2.frame_lengths(lengths)[0]) == 74
    assert fwd.get_total_flops() / 2 == pytest.approx(forward_flops(cfg, S).total, rel=1e-3)
    with FlopCounterMode(display=False) as both:
        model(wav, lengths).loss.backward()
    block0 = 2.0 * conv_frames(cfg, S)[0] * cfg.conv_dim[0] * cfg.conv_kernel[0]
    assert both.get_total_flops() / 2 == pytest.approx(train_step_flops(cfg, S) - block0, rel=1e-3)
    del out


def test_flop_count_of_ctc_fine_tuning():
    from torch.utils.flop_counter import FlopCounterMode

    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.config import tiny

    cfg = tiny().replace(pos_conv_groups=1, feature_grad_mult=0.0, mask_time_prob=0.0)
    model = build_model("ctc", cfg, librispeech_vocab()).train()
    model.freeze_feature_encoder()
    S = 24000
    with FlopCounterMode(display=False) as both:
        logits, _ = model(torch.randn(2, S), torch.tensor([S, S]))
        logits.sum().backward()
    expected = train_step_flops(cfg, S, head="ctc", vocab=32, frozen_feature_encoder=True)
    assert both.get_total_flops() / 2 == pytest.approx(expected, rel=1e-3)


def test_base_flops_per_crop():
    """BASE on a 15.6 s crop: 779 frames; the numbers docs/benchmarks.md quotes."""
    from w2vcli.model.config import base

    f = forward_flops(base(), 249_600)
    assert round(f.feature_encoder / 1e9, 1) == 76.6 and round(f.transformer / 1e9, 1) == 154.7
    assert round(f.total / 1e9) == 240 and round(train_step_flops(base(), 249_600) / 1e9) == 721


def test_largest_batch_search():
    for limit_fits in (1, 7, 8, 9, 100, 300):
        tried = []

        def fits(b):
            tried.append(b)
            return b <= limit_fits

        best, capped, tries = largest_batch(fits, 8, 512, time.perf_counter() + 60)
        assert tries == len(tried) <= 14
        assert limit_fits - max(1, limit_fits // 16) <= best <= limit_fits and not capped, (limit_fits, tried)
    assert largest_batch(lambda b: True, 8, 64, time.perf_counter() + 60) == (64, True, 4)  # 8 16 32 64
    assert largest_batch(lambda b: False, 8, 64, time.perf_counter() + 60)[0] == 0
    assert largest_batch(lambda b: True, 8, 64, time.perf_counter() - 1) == (0, True, 0)  # out of time


def test_peak_lookup_by_device_name():
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA L40S") == 362.0 and peak_bf16_tflops("NVIDIA L4") == 121.0
    assert peak_bf16_tflops("NVIDIA GeForce RTX 3090") is None
