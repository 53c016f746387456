"""What only a GPU exercises: `pytest -m cuda` (each such test is skipped without CUDA).

- the same forward, pretraining loss and gradients on the CPU and on CUDA (fp32);
- bf16 and fp16 training steps on CUDA, an fp16 overflow skipped and counted (also on the CPU);
- `Emitter`'s GPU batching (padded passes) equal to transcribing each file alone;
- `w2v transcribe --device cuda` (greedy, and with an LM when one is given in W2V_TEST_LM);
- `w2v pretrain` / `w2v finetune --gpus 1` with exact resume;
- torchrun, one process, NCCL (the DDP path; its CPU twin runs gloo in-process in CI);
- a checkpoint written on CUDA loads, transcribes and resumes in a process without CUDA.

Audio is synthetic (tests/train_data.py), so nothing beyond soundfile is needed on a GPU machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (before CUDA starts)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from train_data import make_corpus, read_metrics, render  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from w2vcli.cli import app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HAVE_CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device")
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, NO_CUDA])
TINY = ["--preset", "tiny", "--max-tokens", "64000", "--seed", "3"]


def cuda_only(fn):
    return pytest.mark.cuda(NO_CUDA(fn))


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"w2v {command} -> {result.exit_code}\n{result.output}") from result.exception
    return result.output


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def env_with_repo(**extra: str) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return make_corpus(root, "train", 16, seed=0), make_corpus(root, "dev", 4, seed=1)


@pytest.fixture
def fp32_matmuls():
    """Full fp32 products on CUDA (no TF32), so CPU and GPU agree to fp32 rounding."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --- the same numbers on both devices ---------------------------------------------------------------


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    audio = render("ABCDE EDCBA ACE BAD CAB DEB EAC BED", np.random.default_rng(seed))  # 2.5 s of tones
    wav = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        wav[b, :n] = torch.from_numpy(audio[b * 1000 : b * 1000 + n].copy())
    return wav, torch.tensor(lengths)


@cuda_only
@pytest.mark.parametrize("variant", ["base", "large"])
def test_cpu_and_cuda_agree_in_fp32(variant, fp32_matmuls):
    """Same weights, mask and distractors: the same pretraining loss, logits and gradients, and
    the same CTC logits (group-norm post-LN and layer-norm pre-LN models; padded rows)."""
    from w2vcli.model.build import librispeech_vocab
    from w2vcli.model.config import small
    from w2vcli.model.masking import sample_negatives, span_mask
    from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    cfg = small()
    if variant == "large":
        cfg = cfg.replace(feature_norm="layer", layer_norm_first=True, conv_bias=True, normalize_waveform=True)
    torch.manual_seed(0)
    cpu = Wav2Vec2ForPreTraining(cfg).eval()
    gpu = Wav2Vec2ForPreTraining(cfg).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    wav, lengths = padded_batch([32000, 27000, 20000])
    frames = cpu.wav2vec2.frame_lengths(lengths)
    g = torch.Generator().manual_seed(0)
    mask = span_mask(frames, int(frames.max()), 0.65, 10, 2, generator=g)
    neg = sample_negatives(mask, cfg.num_negatives, generator=g)
    a = cpu(wav, lengths, mask_indices=mask, negative_indices=neg)
    b = gpu(wav.cuda(), lengths.cuda(), mask_indices=mask.cuda(), negative_indices=neg.cuda())
    for name in ("loss", "contrastive_loss", "diversity_loss", "feature_penalty", "code_perplexity"):
        torch.testing.assert_close(getattr(b, name).cpu(), getattr(a, name), rtol=1e-4, atol=1e-4, msg=name)
    torch.testing.assert_close(b.logits.cpu()[mask], a.logits[mask], rtol=1e-4, atol=1e-3)
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        if p.grad is None or p.grad.norm() < 1e-8:
            continue
        err = float((q.grad.cpu() - p.grad).norm() / p.grad.norm())
        assert err < 1e-3, f"{name}: gradients differ by {err:.2e} (relative)"
    ctc_cpu = Wav2Vec2ForCTC.from_pretraining(cpu, librispeech_vocab()).eval()
    ctc_gpu = Wav2Vec2ForCTC.from_pretraining(gpu, librispeech_vocab()).eval()
    ctc_gpu.head.load_state_dict(ctc_cpu.head.state_dict())
    with torch.no_grad():
        la, fa = ctc_cpu(wav, lengths)
        lb, fb = ctc_gpu(wav.cuda(), lengths.cuda())
    assert torch.equal(fb.cpu(), fa)
    valid = torch.arange(la.shape[1])[None, :] < fa[:, None]
    torch.testing.assert_close(lb.cpu()[valid], la[valid], rtol=1e-4, atol=1e-4)


# --- mixed precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("device,precision", [("cpu", "fp16"), pytest.param("cuda", "bf16", marks=CUDA.marks),
                                              pytest.param("cuda", "fp16", marks=CUDA.marks)])  # fmt: skip
def test_mixed_precision_steps_and_fp16_overflow(corpus, tmp_path, capsys, device, precision):
    """Three updates under autocast. With fp16, a first loss scale of 2^40 overflows: that step
    is skipped and counted without a warning, the scaler backs off (to 2^4), training goes on."""
    from w2vcli.train import distributed
    from w2vcli.train.config import PretrainConfig, resolve
    from w2vcli.train.engine import Trainer

    train, _ = corpus
    cfg = resolve(PretrainConfig, "tiny", [{"train": str(train), "out": str(tmp_path / "pt"), "max_tokens": 64000,
                                            "num_workers": 0, "seed": 3, "precision": precision, "max_updates": 3,
                                            "log_interval": 1, "gpus": int(device == "cuda")}])  # fmt: skip
    cfg.check()
    trainer = Trainer(cfg, distributed.setup(cfg))
    assert trainer.dist.device.type == device
    init = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    if precision == "fp16":  # the first step overflows; the scale then drops to 2^4, where sums fit
        trainer.scaler = torch.amp.GradScaler(device, init_scale=2.0**40, backoff_factor=2.0**-36)
    trainer.run()
    rows = [r for r in read_metrics(tmp_path / "pt") if "loss" in r]
    assert trainer.update == 3 and all(np.isfinite(r["loss"]) for r in rows)
    expected_skips = 1 if precision == "fp16" else 0
    assert trainer.skipped == expected_skips and rows[-1]["skipped_total"] == expected_skips
    assert "non-finite" not in capsys.readouterr().err  # an overflow is routine, not a warning
    if precision == "fp16":
        assert trainer.scaler.get_scale() == 2.0**4
    ckpt = load(tmp_path / "pt" / "last.pt")
    assert ckpt["skipped"] == expected_skips and (ckpt["scaler"] is not None) == (precision == "fp16")
    plain = torch.load(tmp_path / "pt" / "last.pt", map_location=None, weights_only=True)  # where it was saved
    moments = [t for state in plain["optimizer"]["state"].values() for t in state.values() if torch.is_tensor(t)]
    assert moments and all(t.device.type == "cpu" for t in moments)  # loads on a CPU-only machine
    for k, v in ckpt["model"].items():
        assert v.dtype == init[k].dtype and bool(torch.isfinite(v.float()).all()), k
    assert any(not torch.equal(v, init[k].cpu()) for k, v in ckpt["model"].items() if v.is_floating_point())


# --- transcription ----------------------------------------------------------------------------------


def peaked_ctc(seed: int = 0):
    """A tiny CTC model with random weights and a sharpened head (varied, confident output)."""
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.config import tiny

    torch.manual_seed(seed)
    model = build_model("ctc", tiny(), librispeech_vocab()).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0)
        model.head.bias[4] += 1.0  # "|": some word boundaries
    return model


@cuda_only
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_emitter_gpu_batches_equal_each_file_alone(precision):
    from w2vcli.decode.ctc import GreedyDecoder
    from w2vcli.decode.emissions import EmissionOptions, Emitter

    model = peaked_ctc()
    audio = render("ABC DEA BCD EAB CDE DAB", np.random.default_rng(1))
    lengths = [16000, 16500, 17000, 15500, 16800, 9000, 9300, 23456]  # groups within 10 % of each other
    wavs = [audio[i * 500 : i * 500 + n] for i, n in enumerate(lengths)]
    emitter = Emitter(model, EmissionOptions(device="cuda", precision=precision))
    assert emitter.device.type == "cuda" and emitter.max_padding > 0
    groups = emitter.sub_batches([len(w) for w in wavs])
    assert any(len({len(wavs[i]) for i in g}) > 1 for g in groups)  # some pass really is padded
    batched = emitter.batch(wavs)
    alone = [emitter.batch([w])[0] for w in wavs]
    greedy = GreedyDecoder(model.vocab)
    if precision == "fp32":
        assert [greedy.decode(x).text for x in batched] == [greedy.decode(x).text for x in alone]
        for x, y in zip(batched, alone):
            np.testing.assert_allclose(x, y, atol=1e-4)
    else:  # bf16: rounding differs with the batch shape; the best path must all but agree
        same = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(batched, alone))
        assert same >= 0.99 * sum(len(x) for x in alone)


@pytest.fixture(scope="module")
def ctc_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctc")
    path = root / "tiny.pt"
    from w2vcli.model.checkpoint import save_checkpoint

    save_checkpoint(path, peaked_ctc())
    rng = np.random.default_rng(2)
    files = []
    for i, text in enumerate(["ABC DE", "EDC BA AB", "CAB", "DEAD BEE CAB"]):
        f = root / f"utt{i}.wav"
        sf.write(f, render(text, rng), 16000, subtype="FLOAT")
        files.append(str(f))
    return path, files


def transcripts(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@cuda_only
def test_transcribe_on_cuda(ctc_files):
    ckpt, files = ctc_files
    args = ["transcribe", ckpt, *files, "--format", "jsonl", "--batch-size", "3"]
    cpu = transcripts(w2v(*args, "--device", "cpu"))
    fp32 = transcripts(w2v(*args, "--device", "cuda", "--precision", "fp32"))
    assert [r["text"] for r in fp32] == [r["text"] for r in cpu] and any(r["text"] for r in cpu)
    auto = transcripts(w2v(*args, "--device", "cuda"))  # bf16 autocast
    assert [r["audio"] for r in auto] == files
    lm = os.environ.get("W2V_TEST_LM")  # bench/gpu/gpu_run.sh sets it to the carried LM
    if not lm:
        return
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    lm_args = [*args, "--lm", lm, "--beam", "8"]
    on_cpu = transcripts(w2v(*lm_args, "--device", "cpu"))
    on_gpu = transcripts(w2v(*lm_args, "--device", "cuda", "--precision", "fp32", "--jobs", "2"))  # forked decoders
    assert [r["text"] for r in on_gpu] == [r["text"] for r in on_cpu]


# --- training on CUDA: exact resume, torchrun + NCCL, loading on a CPU ------------------------------


@pytest.fixture(scope="module")
def cuda_runs(corpus, tmp_path_factory):
    """pretrain and finetune on CUDA: each once straight to 6 updates, once to 3 then --resume to 6.
    Deterministic kernels (pretraining strictly; CTC's backward on CUDA has none, so fine-tuning
    runs warn-only)."""
    if not HAVE_CUDA:
        pytest.skip("needs a CUDA device")
    train, dev = corpus
    root = tmp_path_factory.mktemp("cuda-runs")
    common = [*TINY, "--gpus", 1, "--num-workers", 1, "--lr", "2e-3", "--schedule-updates", 6, "--valid-interval", 3,
              "--log-interval", 1, "--valid", dev]  # fmt: skip
    pre = ["pretrain", "--train", train, "--warmup-updates", 2, *common]
    fine = ["finetune", "--init", root / "pt-one" / "last.pt", "--train", train, *common]
    try:
        torch.use_deterministic_algorithms(True)
        w2v(*pre, "--out", root / "pt-one", "--max-updates", 6)
        w2v(*pre, "--out", root / "pt-two", "--max-updates", 3)
        w2v(*pre, "--out", root / "pt-two", "--max-updates", 6, "--resume")
        torch.use_deterministic_algorithms(True, warn_only=True)
        w2v(*fine, "--out", root / "ft-one", "--max-updates", 6)
        w2v(*fine, "--out", root / "ft-two", "--max-updates", 3)
        w2v(*fine, "--out", root / "ft-two", "--max-updates", 6, "--resume")
    finally:
        torch.use_deterministic_algorithms(False)
    return root


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["pt", "ft"])
def test_train_on_cuda_resumes_exactly(cuda_runs, kind):
    a, b = load(cuda_runs / f"{kind}-one" / "last.pt"), load(cuda_runs / f"{kind}-two" / "last.pt")
    assert a["update"] == b["update"] == 6 and a["data"] == b["data"] and a["skipped"] == b["skipped"] == 0
    assert a["scheduler"] == b["scheduler"] and "cuda" in a["rng"][0]
    ra, rb = a["rng"][0], b["rng"][0]
    assert torch.equal(ra["torch"], rb["torch"]) and all(torch.equal(x, y) for x, y in zip(ra["cuda"], rb["cuda"]))
    for k, v in a["model"].items():
        if kind == "pt":  # deterministic kernels: bit for bit
            assert torch.equal(v, b["model"][k]), k
        else:  # CTC's CUDA backward adds in a varying order: equal to float rounding
            torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    rows_a, rows_b = read_metrics(cuda_runs / f"{kind}-one"), read_metrics(cuda_runs / f"{kind}-two")
    for ra, rb in zip([r for r in rows_a if "loss" in r][3:], [r for r in rows_b if "loss" in r][3:]):
        assert ra["update"] == rb["update"] and ra["loss"] == pytest.approx(rb["loss"], rel=1e-4)


@cuda_only
def test_cuda_checkpoint_loads_in_a_process_without_cuda(cuda_runs, ctc_files):
    """`load_model`, `w2v transcribe` and `--resume` on the CPU from checkpoints written on CUDA."""
    from w2vcli.train.config import PretrainConfig, read_toml

    resumed = cuda_runs / "pt-cpu"
    shutil.copytree(cuda_runs / "pt-one", resumed)
    code = (
        "import torch, w2vcli; assert not torch.cuda.is_available();"
        f"m = w2vcli.load_model({str(cuda_runs / 'ft-one' / 'best.pt')!r});"
        "assert next(m.parameters()).device.type == 'cpu' and m.vocab is not None;"
        f"p = w2vcli.load_model({str(cuda_runs / 'pt-one' / 'last.pt')!r}); print('loaded', type(p).__name__)"
    )
    env = env_with_repo(CUDA_VISIBLE_DEVICES="")

    def run(*a):
        return subprocess.run([sys.executable, *a], env=env, capture_output=True, text=True, timeout=300)

    res = run("-c", code)
    assert res.returncode == 0 and "loaded Wav2Vec2ForPreTraining" in res.stdout, res.stderr
    res = run("-m", "w2vcli", "transcribe", str(cuda_runs / "ft-one" / "last.pt"), *ctc_files[1][:2], "--device", "cpu")
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 2, res.stderr
    manifest = read_toml(resumed / "config.toml", PretrainConfig)["train"]
    res = run("-m", "w2vcli", "pretrain", "--train", manifest, "--out", str(resumed), "--resume", "--gpus", "0",
              "--max-updates", "7", "--num-workers", "0")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert load(resumed / "last.pt")["update"] == 7


@pytest.mark.filterwarnings("error:Grad strides do not match bucket view strides")  # DDP would copy gradients
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_one_process_ddp_equals_plain_training(corpus, tmp_path, monkeypatch, device):
    """w2v's DDP path with a group of one (tests/one_rank_ddp.py) takes the same steps as a plain
    run: on CUDA a real `torchrun --nproc-per-node 1` over NCCL, on the CPU gloo in this process."""
    train, _ = corpus
    args = ["pretrain", "--train", train, *TINY, "--num-workers", 0, "--max-updates", 3, "--log-interval", 1]
    if device == "cuda":  # deterministic kernels on both sides, so both runs can be compared closely
        torch.use_deterministic_algorithms(True)
        try:
            w2v(*args, "--gpus", 1, "--out", tmp_path / "plain")
        finally:
            torch.use_deterministic_algorithms(False)
        # torchrun picks the device from LOCAL_RANK: no --gpus
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               str(REPO / "tests" / "one_rank_ddp.py"), *map(str, args), "--out", str(tmp_path / "ddp")]  # fmt: skip
        res = subprocess.run(cmd, env=env_with_repo(W2V_TEST_DETERMINISTIC="1"), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert "one-rank group: backend nccl, device cuda:0" in res.stdout
    else:
        w2v(*args, "--out", tmp_path / "plain")
        import one_rank_ddp

        from w2vcli.train import distributed

        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "1")
        monkeypatch.setenv("LOCAL_RANK", "0")
        monkeypatch.setenv("W2V_DIST_INIT", f"file://{tmp_path / 'store'}")
        monkeypatch.setattr(distributed, "setup", one_rank_ddp.setup_one_rank_group)
        w2v(*args, "--out", tmp_path / "ddp")
    plain, ddp = load(tmp_path / "plain" / "last.pt"), load(tmp_path / "ddp" / "last.pt")
    assert plain["update"] == ddp["update"] == 3 and len(ddp["rng"]) == 1
    for k, v in plain["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
