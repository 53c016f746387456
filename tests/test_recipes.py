"""Recipes: their TOML configs load through the training config loader, `w2v prepare subset`,
recipes/librispeech/run.sh's stages on a LibriSpeech-layout tree made from tests/data/real-mini
(with tiny training overrides), recipes/demo/run.sh --quick end to end, and its results page from hand-made score files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.model.config import get_preset
from w2vcli.train.config import FinetuneConfig, PretrainConfig, read_toml, resolve

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo"
LIBRI = REPO / "recipes" / "librispeech"
runner = CliRunner()

# ModelConfig fields that define the network (as opposed to its training-time behaviour)
ARCHITECTURE = {"conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feature_norm", "hidden_size", "num_layers",
                "num_heads", "ffn_dim", "layer_norm_first", "pos_conv_kernel", "pos_conv_groups"}
# ModelConfig fields that only the pretraining objective reads
PRETRAIN_ONLY = {"num_codebooks", "codebook_size", "codevector_dim", "proj_dim", "quantizer_dropout", "num_negatives",
                 "cross_sample_negatives", "logit_temperature", "diversity_weight", "feature_penalty_weight",
                 "gumbel_start", "gumbel_end", "gumbel_decay"}


def _load(path: Path, cls):
    """Resolve a recipe TOML as `w2v pretrain/finetune --config` does, and build its model config."""
    layer = read_toml(path, cls)
    cfg = resolve(cls, None, [layer, {"train": "x.jsonl", "out": "o", "init": "none"} if cls is FinetuneConfig
                              else {"train": "x.jsonl", "out": "o"}])
    cfg.check()
    model = get_preset(cfg.preset).replace(**cfg.model)
    return layer, cfg, model


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{REPO / 'tools' / 'kenlm' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _need_kenlm():
    if not (shutil.which("lmplz") or (REPO / "tools" / "kenlm" / "bin" / "lmplz").exists()):
        pytest.skip("KenLM's lmplz is not built (scripts/install_kenlm.sh)")


# --- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("conf", ["conf", "conf/quick"])
def test_demo_configs_load_and_the_baseline_matches(conf):
    d = DEMO / conf
    _, pt, pt_model = _load(d / "pretrain.toml", PretrainConfig)
    ft_layer, ft, _ = _load(d / "finetune.toml", FinetuneConfig)
    sc_layer, sc, sc_model = _load(d / "finetune-scratch.toml", FinetuneConfig)
    assert pt.max_updates >= 1 and ft.max_updates >= 1
    # the baseline differs only in what a random init needs and in its masking and peak lr, which
    # each row takes from its own dev WER (finetune.toml): same labels/updates/schedule/augmentation
    masking = {"mask_time_prob", "mask_channel_prob"}
    extra = {"preset", "freeze_feature_encoder", "reinit_layers", "model", "lr"} | masking
    assert {k: v for k, v in sc_layer.items() if k not in extra} == {k: v for k, v in ft_layer.items() if k not in extra}
    assert sc.preset == pt.preset and sc.freeze_feature_encoder is False
    assert sc_model.feature_grad_mult == 1.0
    # the same network as the pretrained one
    for field in ARCHITECTURE:
        assert getattr(sc_model, field) == getattr(pt_model, field), field
    assert not ARCHITECTURE & set(ft_layer.get("model", {})), "finetune.toml must take the network from the checkpoint"
    # what each row fine-tunes, built as w2vcli.train.tasks.build_ctc_model does: the pretrained
    # checkpoint's config (+ finetune.toml) vs the preset (+ finetune-scratch.toml); equal in every
    # field a CTC model reads, except the conv gradient (frozen vs trained)
    def ctc_overrides(cfg):
        o = {k: v for k, v in {"mask_time_prob": cfg.mask_time_prob, "mask_channel_prob": cfg.mask_channel_prob,
                               "layer_drop": cfg.layer_drop, "final_dropout": cfg.final_dropout}.items() if v is not None}
        return {**o, **cfg.model}
    pretrained_net = pt_model.replace(**ctc_overrides(ft)).to_dict()
    scratch_net = get_preset(sc.preset).replace(**ctc_overrides(sc)).to_dict()
    differ = {k for k in pretrained_net if pretrained_net[k] != scratch_net[k]} - PRETRAIN_ONLY
    assert differ <= {"feature_grad_mult"} | masking, {k: (pretrained_net[k], scratch_net[k]) for k in differ}
    # and the network runs: one pretraining forward/backward on 2 s of noise
    import torch

    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(pt_model).train()
    wav = torch.randn(2, pt.max_sample_size)
    out = model(wav, torch.tensor([pt.max_sample_size, pt.max_sample_size // 2]), temperature=2.0)
    (out.loss / out.num_masked).backward()
    assert torch.isfinite(out.loss) and out.num_masked > 0


def test_librispeech_configs_follow_the_paper():
    _, base, base_model = _load(LIBRI / "conf" / "pretrain-base.toml", PretrainConfig)
    assert (base.preset, base.max_updates, base.lr, base.max_tokens * base.update_freq) == ("base", 400_000, 5e-4, 11_200_000)
    assert base_model.mask_time_prob == pytest.approx(0.65)  # p = 0.065 x span 10
    _, large, _ = _load(LIBRI / "conf" / "pretrain-large.toml", PretrainConfig)
    assert (large.preset, large.max_updates, large.lr) == ("large", 250_000, 3e-4)
    # paper Table 6 (timestep p, channel p, updates); fairseq convention = p x span length
    table6 = {"10m": (0.075, 0.008, 12_000), "1h": (0.075, 0.004, 13_000), "10h": (0.065, 0.004, 20_000),
              "100h": (0.05, 0.008, 50_000), "960h": (0.05, 0.0016, 320_000)}
    for model in ("base", "large"):
        for split, (p, pc, updates) in table6.items():
            _, cfg, net = _load(LIBRI / "conf" / f"finetune-{model}-{split}.toml", FinetuneConfig)
            assert cfg.mask_time_prob == pytest.approx(p * 10), (model, split)
            assert cfg.mask_channel_prob == pytest.approx(pc * 64), (model, split)
            assert net.mask_channel_length == 64 and net.mask_time_length == 10
            assert cfg.max_updates == updates and cfg.freeze_updates == 10_000 and cfg.freeze_feature_encoder
            assert cfg.layer_drop == (0.05 if model == "base" else 0.1)
            assert cfg.tri_stage == (0.1, 0.4, 0.5) and cfg.lr_schedule == "tri_stage"
            seconds_per_update = cfg.max_tokens * cfg.update_freq * 8 / 16000  # on 8 GPUs
            assert seconds_per_update == (1600 if model == "base" else 1920)


def test_prepare_subset(tmp_path, real_mini):
    from w2vcli.data.librispeech import prepare_librispeech

    prepare_librispeech(real_mini, tmp_path, jobs=1)
    full = _rows(tmp_path / "test-real.jsonl")
    out = tmp_path / "sub" / "half.jsonl"
    result = runner.invoke(app, ["prepare", "subset", str(tmp_path / "test-real.jsonl"), "--minutes", "0.4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    sub = _rows(out)
    assert 0 < len(sub) < len(full)
    assert sum(r["num_samples"] / r["sample_rate"] for r in sub) <= 24.0
    assert len({r["speaker"] for r in sub}) >= 3  # round-robin over speakers
    ids = [r["id"] for r in full]
    assert [r["id"] for r in sub] == sorted((r["id"] for r in sub), key=ids.index)  # input order kept
    again = tmp_path / "again.jsonl"
    runner.invoke(app, ["prepare", "subset", str(tmp_path / "test-real.jsonl"), "--minutes", "0.4", "--out", str(again)])
    assert again.read_text() == out.read_text()
    result = runner.invoke(app, ["prepare", "subset", str(tmp_path / "test-real.jsonl"), "--minutes", "0.001",
                                 "--out", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 1 and "no utterance fits" in result.output


# --- recipes/librispeech on real speech --------------------------------------------------------


def _real_utterances(real_mini: Path) -> list[tuple[Path, str]]:
    """(flac, transcript) for the 10 real utterances."""
    utts = []
    for trans in sorted(real_mini.glob("*/*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            utts.append((trans.parent / f"{uid}.flac", text))
    return utts


def _fake_subset(root: Path, speaker: int, utts: list[tuple[Path, str]]) -> list[str]:
    """A LibriSpeech-layout subset at root: one speaker, one chapter, symlinks to real audio."""
    chap = root / str(speaker) / "1"
    chap.mkdir(parents=True)
    lines, ids = [], []
    for k, (flac, text) in enumerate(utts):
        uid = f"{speaker}-1-{k:04d}"
        (chap / f"{uid}.flac").symlink_to(flac)
        lines.append(f"{uid} {text}")
        ids.append(uid)
    (chap / f"{speaker}-1.trans.txt").write_text("\n".join(lines) + "\n")
    return ids


@pytest.fixture(scope="module")
def libri_trees(real_mini, tmp_path_factory):
    """A LibriSpeech root (all seven subsets) and a Libri-Light librispeech_finetuning tree, made
    of the real-mini recordings under new speaker ids (ids unique across everything)."""
    root = tmp_path_factory.mktemp("libri")
    utts = _real_utterances(real_mini)
    assert len(utts) == 10
    pick = lambda i, n: [utts[(i * 3 + k) % len(utts)] for k in range(n)]  # noqa: E731
    ids = {}
    subsets = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other"]
    for i, name in enumerate(subsets):
        ids[name] = _fake_subset(root / "LibriSpeech" / name, 100 + i, pick(i, 3 if name.startswith("train") else 2))
    ll = root / "librispeech_finetuning"
    parts = {"1h/0/clean": 200, "1h/0/other": 201, "1h/1/clean": 202, "9h/clean": 203, "9h/other": 204}
    for j, (part, spk) in enumerate(parts.items()):
        ids[part] = _fake_subset(ll / part, spk, pick(j, 2))
    return root / "LibriSpeech", ll, ids


def test_librispeech_recipe_prepares_librispeech_and_librilight(libri_trees, tmp_path):
    libri, ll, ids = libri_trees
    out = tmp_path / "exp"
    _run(["bash", str(LIBRI / "run.sh"), "--stage", "1", "--stop-stage", "2", "--out", str(out),
          "--librispeech", str(libri), "--librilight", str(ll)])
    data = out / "data"
    got = lambda name: [r["id"] for r in _rows(data / f"{name}.jsonl")]  # noqa: E731
    assert got("train-960") == ids["train-clean-100"] + ids["train-clean-360"] + ids["train-other-500"]
    assert got("train-100h") == ids["train-clean-100"]
    assert got("eval") == ids["dev-clean"] + ids["dev-other"] + ids["test-clean"] + ids["test-other"]
    assert sorted(got("train-10m")) == sorted(ids["1h/0/clean"] + ids["1h/0/other"])
    assert sorted(got("train-1h")) == sorted(ids["1h/0/clean"] + ids["1h/0/other"] + ids["1h/1/clean"])
    assert sorted(got("train-10h")) == sorted(got("train-1h") + ids["9h/clean"] + ids["9h/other"])
    assert all(Path(r["audio"]).is_file() and r["text"] for r in _rows(data / "train-10h.jsonl"))
    assert json.loads((data / "vocab.json").read_text())["<pad>"] == 0
    assert (out / ".done" / "1").is_file() and (out / ".done" / "2").is_file()
    # a re-run skips finished stages
    again = _run(["bash", str(LIBRI / "run.sh"), "--stage", "1", "--stop-stage", "2", "--out", str(out)])
    assert "already done" in again.stdout


@pytest.mark.slow
def test_librispeech_recipe_trains_decodes_and_scores_with_tiny_overrides(libri_trees, lm_text, tmp_path):
    """Stages 1-7 on the real-speech tree with a tiny model and a few updates: every stage runs
    and the results table carries the paper's numbers beside ours."""
    _need_kenlm()
    libri, ll, _ = libri_trees
    out = tmp_path / "exp"
    train = "--max-tokens 160000 --update-freq 1 --precision fp32 --num-workers 0 --log-interval 1 --max-updates 2 --valid-interval 2"
    _run(["bash", str(LIBRI / "run.sh"), "--out", str(out), "--librispeech", str(libri), "--librilight", str(ll),
          "--lm-corpus", str(lm_text), "--lm-memory", "50M", "--splits", "10m", "--gpus", "0",
          "--beam", "4", "--tune-trials", "2",
          "--pretrain-args", f"--preset tiny --max-sample-size 32000 --warmup-updates 1 {train}",
          "--finetune-args", f"--max-sample-size 480000 --freeze-updates 0 --mask-channel-prob 0 {train}",
          "--transcribe-args", "--device cpu --batch-size 4"], timeout=900)
    for f in ("pt-base/best.pt", "ft-base-10m/best.pt", "lm/4gram.bin", "decode/base-10m/greedy.hyp.jsonl",
              "decode/base-10m/lm.hyp.jsonl", "decode/base-10m/tune.jsonl", "decode/base-10m/lm-weights.txt"):
        assert (out / f).is_file(), f
    for dec in ("greedy", "lm"):
        for s in ("dev-clean", "dev-other", "test-clean", "test-other"):
            score = json.loads((out / "decode" / "base-10m" / f"{dec}-{s}.score.json").read_text())
            assert score["utterances"] == 2 and score["missing"] == 0 and score["extra"] == 6
    page = (out / "results.md").read_text()
    assert "| 10m | 4-gram | paper | 8.9 | 15.7 | 9.1 | 15.6 |" in page
    assert "| 10m | none | w2v |" in page


# --- recipes/demo ------------------------------------------------------------------------------


def test_demo_help_lists_the_options_and_bad_values_fail():
    result = _run(["bash", str(DEMO / "run.sh"), "--help"])
    for option in ("--stage N", "--stop-stage N", "--out DIR", "--quick", "--seeds N", "--labels A", "--curve",
                   "--results F", "--force", "--pretrain ", "--pretrain-updates N"):
        assert option in result.stdout, option
    for args, message in ((["--seeds", "0"], "--seeds takes a count"), (["--labels", "10x"], "not '10x'"),
                          (["--pretrain-updates", "5k"], "--pretrain-updates takes a count, not '5k'"),
                          (["--curve", "1m,ten"], "not 'ten'"), (["--bogus"], "unknown option --bogus")):
        bad = subprocess.run(["bash", str(DEMO / "run.sh"), *args, "--out", "/nonexistent/never"], capture_output=True,
                             text=True, env=_env())
        assert bad.returncode == 1 and message in bad.stderr, (args, bad.stderr)


def test_demo_domain_writes_into_a_folder_not_made_yet_and_says_so(tmp_path):
    """The quickstart's first step in a fresh clone: `domain.py --out exp/sentences.txt` before exp/ exists."""
    out = tmp_path / "exp" / "sentences.txt"
    result = _run([sys.executable, str(DEMO / "local" / "domain.py"), "--out", str(out), "--n", "300"])
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 300 and all(line == line.upper() for line in lines)
    assert "wrote 300 sentences" in result.stdout and str(out) in result.stdout, result.stdout
    assert not list(out.parent.glob("*.tmp"))


def _fake_demo_exp(exp: Path, wers: dict) -> None:
    """The files stage 7's results.py reads, for seeds 0-1 and amounts 1m/10m: wers[(seed, amount, row,
    decoding)] is the WER as a fraction (CER = WER / 2); 8 test utterances with per-utterance details."""
    data = exp / "data"
    data.mkdir(parents=True)
    def manifest(name, n, secs, spk):  # noqa: E306
        rows = [{"id": f"{name}-{i}", "audio": "x.flac", "num_samples": int(secs * 16000), "sample_rate": 16000,
                 "speaker": f"s{i % spk}", "text": "A B"} for i in range(n)]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest("train-clean", 100, 60.0, 8)
    manifest("train-10m", 10, 60.0, 5)
    manifest("train-1m", 2, 30.0, 2)
    manifest("dev-clean", 5, 6.0, 2)
    manifest("test-clean", 8, 6.0, 2)
    for (seed, amount, row, dec), wer in wers.items():
        d = exp / f"seed-{seed}" / "decode" / f"{row}-{amount}"
        (d / f"details-{dec}").mkdir(parents=True, exist_ok=True)
        (d / f"{dec}.score.json").write_text(json.dumps({"wer": wer, "cer": wer / 2, "words": 40, "utterances": 8}))
        (d / "lm-weights.txt").write_text("1.5 2.0\n")
        (d / f"details-{dec}" / "per_utt.jsonl").write_text("".join(
            json.dumps({"id": f"utt-{i}", "wer": wer, "ref": f"REF {i}", "hyp": f"{row.upper()} {i}"}) + "\n"
            for i in range(8)))
        ft = exp / f"seed-{seed}" / f"ft-{row}-{amount}"
        ft.mkdir(parents=True, exist_ok=True)
        (ft / "metrics.jsonl").write_text(json.dumps({"update": 10, "loss": 5.0}) + "\n"
                                          + json.dumps({"update": 10, "valid_loss": 4.0, "valid_wer": 0.9}) + "\n")
        mask = ("mask_time_prob = 0.3\nmask_channel_prob = 0.1\nlr = 0.005\n" if row == "pretrained"
                else "mask_time_prob = 0.05\n")
        (ft / "config.toml").write_text("max_updates = 10\nspeed_perturb = [0.9, 1.0, 1.1]\nnoise = \"\"\n" + mask)
    for seed in (0, 1):
        (exp / f"seed-{seed}" / "pt").mkdir(parents=True)
        (exp / f"seed-{seed}" / "pt" / "metrics.jsonl").write_text(
            json.dumps({"update": 10, "loss": 3.0, "contrastive": 3.0, "accuracy": 0.05, "code_perplexity": 20.0}) + "\n"
            + json.dumps({"update": 20, "loss": 2.0, "contrastive": 2.0, "accuracy": 0.3, "code_perplexity": 30.0}) + "\n"
            + json.dumps({"update": 20, "valid_loss": 2.1, "valid_accuracy": 0.25}) + "\n")
        (exp / f"seed-{seed}" / "timings.tsv").write_text(f"2\tpretrain\t{100 + seed}\n3-10m\tfinetune\t50\n")
    (exp / "timings.tsv").write_text("1\tprepare\t30\n5\tlm\t5\n")
    (exp / "invocations.tsv").write_text("2026-12-03 01:00:00\t1.50 0.80 0.30\tabc1234\trecipes/demo/run.sh --seeds 2\n")


def test_demo_results_json_page_and_plot_from_fake_score_files(tmp_path):
    """results.py on hand-made score files: the JSON's shape and percent units, the mean/min/max/sd
    over seeds, the curve's points, five evenly spread example utterances, hand notes kept."""
    exp = tmp_path / "exp"
    wers = {}
    for seed, (pre, scr) in enumerate([(0.20, 0.50), (0.30, 0.40)]):
        for amount, extra in (("10m", 0.0), ("1m", 0.25)):
            wers |= {(seed, amount, "pretrained", "lm"): pre + extra, (seed, amount, "pretrained", "greedy"): pre + 0.1 + extra,
                     (seed, amount, "scratch", "lm"): scr + extra, (seed, amount, "scratch", "greedy"): scr + 0.1 + extra}
    _fake_demo_exp(exp, wers)
    page = tmp_path / "docs" / "demo-results.md"
    page.parent.mkdir()
    page.write_text("old table\n<!-- notes by hand below: kept when the recipe rewrites this page -->\nMY NOTE\n")
    cmd = [sys.executable, str(DEMO / "local" / "results.py"), "--exp", str(exp), "--out", str(page), "--seeds", "2",
           "--labels", "10m", "--curve", "1m 10m"]
    _run(cmd)
    r = json.loads(page.with_suffix(".json").read_text())
    assert [s["seed"] for s in r["seeds"]] == [0, 1]
    assert r["seeds"][0]["pretrained"] | {"dev_wer_best": 0} == {"lm_wer": 20.0, "greedy_wer": 30.0, "greedy_cer": 15.0,
                                                                   "lm_cer": 10.0, "dev_wer_best": 0, "lm_alpha": 1.5, "lm_beta": 2.0}
    assert r["seeds"][1]["scratch"]["lm_wer"] == 40.0 and r["seeds"][0]["lm_wer_ratio"] == 0.4
    assert r["seeds"][0]["pretraining"]["valid_accuracy_last"] == 0.25
    assert r["summary"]["pretrained"]["lm_wer"] == {"mean": 25.0, "min": 20.0, "max": 30.0, "std": 7.07}
    assert r["summary"]["scratch"]["greedy_wer"] == {"mean": 55.0, "min": 50.0, "max": 60.0, "std": 7.07}
    assert r["summary"]["lm_wer_ratio"]["mean"] == pytest.approx((0.4 + 0.75) / 2, abs=0.01)
    assert [(p["labels"], p["minutes"]) for p in r["curve"]] == [("1m", 1.0), ("10m", 10.0)]
    assert r["curve"][0]["summary"]["pretrained"]["lm_wer"]["mean"] == 50.0  # 25 % more WER at 1m
    assert r["curve"][1]["seeds"][0]["scratch"]["lm_wer"] == 50.0
    assert [e["id"] for e in r["examples"]] == ["utt-0", "utt-2", "utt-4", "utt-5", "utt-7"]
    assert r["examples"][0] == {"id": "utt-0", "reference": "REF 0", "pretrained": {"text": "PRETRAINED 0", "wer": 20.0},
                                "scratch": {"text": "SCRATCH 0", "wer": 50.0}}
    assert r["total_seconds"] == 30 + 5 + 100 + 101 + 50 + 50
    assert r["invocations"] == [{"date": "2026-12-03 01:00:00", "load": [1.5, 0.8, 0.3], "commit": "abc1234",
                                 "command": "recipes/demo/run.sh --seeds 2"}]
    text = page.read_text()
    assert "| pretrained + fine-tuned | 1 | 30.0 | 40.0 | 20.0 | 15.0 | 90.0 |" in text
    assert "**25.0** (20.0–30.0, sd 7.1)" in text and "0.40, 0.75 times" in text
    assert "- reference: REF 2\n- pretrained (WER 20 %): PRETRAINED 2\n- scratch (WER 50 %): SCRATCH 2" in text
    assert "| 2 pretrain | 1:40 / 1:41 (seeds 0, 1) |" in text and "load average 1.5 0.8 0.3" in text
    assert "Waveform augmentation of the training audio: speed 0.9/1/1.1 for both rows." in text
    assert r["augmentation"] == {"pretrained": "speed 0.9/1/1.1", "scratch": "speed 0.9/1/1.1"}
    assert r["masking"] == {"pretrained": "time 0.3, channel 0.1", "scratch": "time 0.05, channel as the preset"}
    assert "pretrained (time 0.3, channel 0.1), scratch (time 0.05, channel as the preset); the rows differ." in text
    assert r["lr"] == {"pretrained": "0.005", "scratch": "as the preset"}
    assert "Peak learning rate: pretrained (0.005), scratch (as the preset); the rows differ." in text
    assert "old table" not in text and text.endswith("kept when the recipe rewrites this page -->\nMY NOTE\n")
    # the plot reads the same files, every seed and the curve
    pytest.importorskip("matplotlib")
    _run([sys.executable, str(DEMO / "local" / "plot.py"), "--exp", str(exp), "--out", str(tmp_path / "c.png"),
          "--seeds", "2", "--labels", "10m", "--curve", "1m,10m"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # a missing score file is named
    (exp / "seed-1" / "decode" / "scratch-1m" / "lm.score.json").unlink()
    bad = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert bad.returncode != 0 and "missing lm.score.json in" in bad.stderr and "scratch-1m" in bad.stderr


def test_demo_results_and_plot_name_the_shipped_checkpoint(tmp_path):
    """run.sh without --pretrain: every seed fine-tuned the shipped checkpoint, so the page gives its
    one pretraining run (from the metrics.jsonl shipped beside it), its checksum and date, and says
    that a seed changes fine-tuning only; the plot draws that run."""
    exp = tmp_path / "exp"
    _fake_demo_exp(exp, {(seed, "10m", row, dec): 0.3 for seed in (0, 1) for row in ("pretrained", "scratch")
                         for dec in ("lm", "greedy")})
    shipped = tmp_path / "pretrained" / "commands"
    shipped.mkdir(parents=True)
    shutil.copy(exp / "seed-0" / "pt" / "metrics.jsonl", shipped / "metrics.jsonl")
    (shipped / "model.pt").write_bytes(b"x" * 300_000)
    (shipped / "SHA256SUMS").write_text("ab12cd34ef56" + "0" * 52 + "  model.pt\n")
    (shipped / "README.md").write_text("# x\n\nmade: 2026-12-03 by hand, seed 0, 20 updates\n")
    (exp / "seed-0" / "ft-scratch-10m" / "config.toml").write_text("max_updates = 10\n")  # not augmented: said
    with open(exp / "seed-0" / "timings.tsv", "a") as f:  # a --curve run on the same folder: not this page's
        f.write("3-1m\tfinetune\t70\n")
    page = tmp_path / "page.md"
    _run([sys.executable, str(DEMO / "local" / "results.py"), "--exp", str(exp), "--out", str(page), "--seeds", "2",
          "--pretrained", str(shipped)])
    r = json.loads(page.with_suffix(".json").read_text())
    c = r["shipped_checkpoint"]
    assert c["sha256"].startswith("ab12cd34ef56") and c["made"] == "2026-12-03 by hand, seed 0, 20 updates"
    assert c["megabytes"] == 0.3 and c["pretraining"]["updates"] == 20 and c["pretraining"]["valid_accuracy_last"] == 0.25
    assert [s["pretraining"] for s in r["seeds"]] == [None, None]
    text = page.read_text()
    assert "Waveform augmentation of the training audio: pretrained (speed 0.9/1/1.1), scratch (none); the rows differ." in text
    assert "Every seed fine-tunes the shipped checkpoint" in text and "(2026-12-03 by hand, seed 0, 20 updates;" in text
    assert "a seed changes fine-tuning (both rows) only" in text and "Pretraining, seed" not in text
    assert "| 3-10m finetune |" in text and "3-1m" not in text and r["total_seconds"] == 30 + 5 + 100 + 101 + 50 + 50
    pytest.importorskip("matplotlib")
    _run([sys.executable, str(DEMO / "local" / "plot.py"), "--exp", str(exp), "--out", str(tmp_path / "c.png"),
          "--seeds", "2", "--pretrained", str(shipped)])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_results_count_stages_run_side_by_side_once(tmp_path):
    """run.sh --jobs 2 fine-tunes both rows at once: timings.tsv records when each stage ended, and
    the page's total is the wall time (the union of the stages' spans), not the sum, and says why;
    a timings.tsv without end times (before --jobs) still adds up."""
    exp = tmp_path / "exp"
    _fake_demo_exp(exp, {(0, "10m", row, dec): 0.3 for row in ("pretrained", "scratch") for dec in ("lm", "greedy")})
    # prepare 870-900; finetune 950-1000 beside scratch 950-1030; lm 1035-1040; decode 1040-1060
    (exp / "timings.tsv").write_text("1\tprepare\t30\t900\n5\tlm\t5\t1040\n")
    (exp / "seed-0" / "timings.tsv").write_text("3-10m\tfinetune\t50\t1000\n4-10m\tscratch\t80\t1030\n"
                                               "6-10m\tdecode\t20\t1060\n")
    page = tmp_path / "page.md"
    _run([sys.executable, str(DEMO / "local" / "results.py"), "--exp", str(exp), "--out", str(page), "--seeds", "1"])
    r = json.loads(page.with_suffix(".json").read_text())
    assert r["total_seconds"] == 30 + 80 + 5 + 20 and r["side_by_side"] is True
    text = page.read_text()
    assert "| 3-10m finetune | 0:50 |" in text and "| 4-10m scratch | 1:20 |" in text and "| total | 2:15 |" in text
    assert "Stages 3 and 4 ran side by side" in text
    (exp / "seed-0" / "timings.tsv").write_text("3-10m\tfinetune\t50\t1000\n4-10m\tscratch\t30\t1030\n"
                                               "6-10m\tdecode\t20\t1060\n")  # one after the other
    _run([sys.executable, str(DEMO / "local" / "results.py"), "--exp", str(exp), "--out", str(page), "--seeds", "1"])
    r = json.loads(page.with_suffix(".json").read_text())
    assert r["total_seconds"] == 30 + 50 + 30 + 5 + 20 and r["side_by_side"] is False
    assert "side by side" not in page.read_text()


def test_demo_stage_2_checks_the_shipped_checkpoint_and_refuses_a_damaged_one(tmp_path):
    """Without --pretrain, stage 2 only checks the shipped file against SHA256SUMS (a checkout that
    lacks it, or a Git LFS pointer in its place, stops there with the way out), and says what every
    seed fine-tunes."""
    ok = _run(["bash", str(DEMO / "run.sh"), "--stage", "2", "--stop-stage", "2", "--out", str(tmp_path / "ok")])
    assert "every seed fine-tunes the shipped recipes/demo/pretrained/commands/model.pt (" in ok.stdout, ok.stdout
    assert (tmp_path / "ok" / ".done" / "2").is_file() and not (tmp_path / "ok" / "seed-0").exists()
    copy = tmp_path / "repo" / "recipes"
    shutil.copytree(DEMO, copy / "demo", ignore=shutil.ignore_patterns("exp*"))
    shutil.copy(DEMO.parent / "stages.sh", copy / "stages.sh")
    (copy / "demo" / "pretrained" / "commands" / "model.pt").write_text("version https://git-lfs.github.com/spec/v1\n")
    bad = subprocess.run(["bash", str(copy / "demo" / "run.sh"), "--stage", "2", "--stop-stage", "2", "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True, env=_env())
    assert bad.returncode == 1 and "model.pt is missing or damaged" in bad.stderr and "--pretrain" in bad.stderr, bad.stderr
    # a --pretrain run needs its own folder: its stage 3 starts from another model
    mixed = subprocess.run(["bash", str(DEMO / "run.sh"), "--pretrain", "--stage", "5", "--stop-stage", "5", "--out",
                            str(tmp_path / "ok")], capture_output=True, text=True, env=_env())
    assert mixed.returncode == 1 and "holds a 'default-commands-shipped' run; this is a 'default-commands-pretrain' run" in mixed.stderr


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    """`recipes/demo/run.sh --quick --curve 1m,2m`: every stage on tiny sizes; the page and its JSON
    are written from the score files (outside docs/); a re-run skips every stage; a second seed
    runs beside the first."""
    _need_kenlm()
    if not shutil.which("espeak-ng") and not shutil.which("flite"):
        pytest.skip("no speech synthesizer installed (make setup)")
    out = tmp_path / "demo"
    result = _run(["bash", str(DEMO / "run.sh"), "--quick", "--out", str(out), "--curve", "1m,2m"], timeout=600)
    assert "| pretrained + fine-tuned | 0 |" in result.stdout and "| from scratch (random init) | 0 |" in result.stdout
    page = (out / "results.md").read_text()
    assert "Smoke test" in page and "| 7 score |" in page and "## Label efficiency" in page
    if len(os.sched_getaffinity(0)) >= 2:  # --jobs 2 by default: the rows fine-tune side by side
        assert "[scratch] update" in result.stdout and "Stages 3 and 4 ran side by side" in page
    r = json.loads((out / "results.json").read_text())
    assert [p["labels"] for p in r["curve"]] == ["1m", "2m"] and len(r["examples"]) == 5
    for amount in ("1m", "2m"):
        for model in ("pretrained", "scratch"):
            for dec in ("greedy", "lm"):
                score = json.loads((out / "seed-0" / "decode" / f"{model}-{amount}" / f"{dec}.score.json").read_text())
                assert score["missing"] == 0 and score["utterances"] > 0
                if amount == "2m":
                    assert f"{100 * score['wer']:.1f}" in page
                    assert r["seeds"][0][model][f"{dec}_wer"] == round(100 * score["wer"], 2)
    timings = (out / "timings.tsv").read_text().splitlines() + (out / "seed-0" / "timings.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in timings) == sorted(
        ["1", "5", "7", "2", "3-1m", "3-2m", "4-1m", "4-2m", "6-1m", "6-2m"])
    subsets = {a: _rows(out / "data" / f"train-{a}.jsonl") for a in ("1m", "2m", "4m")}
    assert sum(r["num_samples"] / r["sample_rate"] for r in subsets["2m"]) <= 120.0
    ids = {a: {r["id"] for r in rows} for a, rows in subsets.items()}
    assert ids["1m"] < ids["2m"] < ids["4m"] <= {r["id"] for r in _rows(out / "data" / "train-clean.jsonl")}
    test_speakers = {r["speaker"] for r in _rows(out / "data" / "test-clean.jsonl")}
    assert not test_speakers & {r["speaker"] for r in _rows(out / "data" / "train-clean.jsonl")}
    again = _run(["bash", str(DEMO / "run.sh"), "--quick", "--out", str(out), "--stop-stage", "6"])
    assert again.stdout.count("already done") == 6
    second = _run(["bash", str(DEMO / "run.sh"), "--quick", "--out", str(out), "--seeds", "2", "--stage", "2",
                   "--stop-stage", "4", "--labels", "1m", "--jobs", "1"])
    assert second.stdout.count("already done") == 3 and (out / "seed-1" / "pt" / "last.pt").is_file()
    assert (out / "seed-1" / ".done" / "2").is_file() and "[scratch]" not in second.stdout
    spans = {k: (int(e) - int(t), int(e)) for k, _, t, e in
             (line.split("\t") for line in (out / "seed-1" / "timings.tsv").read_text().splitlines())}
    assert spans["4-1m"][0] >= spans["3-1m"][1]  # --jobs 1: the baseline after the pretrained row
    mixed = subprocess.run(["bash", str(DEMO / "run.sh"), "--out", str(out), "--stage", "5", "--stop-stage", "5"],
                           capture_output=True, text=True, env=_env())
    assert mixed.returncode == 1 and "quick" in mixed.stderr


def test_demo_hf_pretrain_writes_a_reference_folder_w2v_fine_tunes_from(tmp_path, real_mini):
    """recipes/demo/local/hf_pretrain.py (docs/demo-results.md's reference run): transformers'
    Wav2Vec2ForPreTraining with the demo config's architecture, trained (its weights move) and
    written by save_pretrained, loads in w2v with that architecture and waveform normalisation."""
    from safetensors.torch import load_file

    from w2vcli.data.librispeech import prepare_librispeech
    from w2vcli.model.load import load_model

    prepare_librispeech(real_mini, tmp_path, jobs=1)
    conf = tmp_path / "pretrain.toml"
    conf.write_text((DEMO / "conf" / "pretrain.toml").read_text().replace("max_tokens = 256000", "max_tokens = 64000")
                    .replace("valid_interval = 250", "valid_interval = 2"))
    init_out = tmp_path / "init"
    out = tmp_path / "hf-pt"
    for updates, where in ((1, init_out), (3, out)):
        result = subprocess.run([sys.executable, str(DEMO / "local" / "hf_pretrain.py"), "--config", str(conf),
                                 "--train", str(tmp_path / "test-real.jsonl"), "--valid", str(tmp_path / "test-real.jsonl"),
                                 "--max-updates", str(updates), "--threads", "1", "--out", str(where)],
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows if "dev_accuracy" in r] == [2, 3]
    assert all(0.0 <= r["dev_accuracy"] <= 1.0 for r in rows if "dev_accuracy" in r)
    first, later = load_file(init_out / "hf" / "model.safetensors"), load_file(out / "hf" / "model.safetensors")
    assert any(not first[k].equal(later[k]) for k in first)  # same seed and init, so training moved it
    model = load_model(out / "hf")
    assert list(model.config.conv_dim) == [64, 128, 128, 128] and model.config.layer_norm_first
    assert model.config.hidden_size == 192 and model.config.normalize_waveform
