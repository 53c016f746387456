"""Shared helpers for the benchmarks: interleaved timing, machine description, result lines.

Every benchmark prints `RATIO <name> <w2v speed / reference speed>` (what docs/benchmarks.md
collects) and `ABS <name> <impl> <value> <unit>` lines with the absolute medians.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from w2vcli.model.build import build_model, librispeech_vocab
from w2vcli.model.config import get_preset
from w2vcli.model.hf_dir import export_hf
from w2vcli.model.masking import sample_negatives, span_mask
from w2vcli.text import letters
from w2vcli.train.engine import make_optimizer

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"  # git-ignored: synthetic trees, the 4-gram
SHARED = REPO.parent / "shared" / "data"
REAL_MINI = REPO / "tests" / "data" / "real-mini"  # shipped with the repository
TEXT = SHARED / "text"


def set_threads(n: int) -> None:
    """The same intra-op thread count for both implementations, and the malloc setting the `w2v`
    command makes (w2vcli/cpu.py keep_freed_memory; W2V_KEEP_MEMORY=0 to measure without): both
    implementations in a process share it, so the ratios compare code, not allocators."""
    import torch

    from w2vcli.cpu import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(n)


def interleaved(fns: dict[str, Callable[[], float]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each fn `warmup` times, then A B A B ... `reps` rounds; each call returns a speed.

    The order inside a round alternates (A B, B A, ...) so a drift in machine load hits both.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(fns[n]())
    return out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs: list[float]) -> float:
    return statistics.median(xs)


LINES: list[str] = []  # every RATIO/ABS line printed so far (bench.run writes them to docs/benchmarks.md)


def emit(line: str) -> None:
    """Print a result line and keep it for the docs table."""
    LINES.append(line)
    print(line, flush=True)


def report(name: str, speeds: dict[str, list[float]], unit: str, ours: str = "w2v", ref: str = "transformers") -> float:
    """Print ABS lines (median, min, max of each implementation) and the RATIO line; return the ratio."""
    for impl, xs in speeds.items():
        emit(f"ABS {name} {impl} {median(xs):.4g} {unit} (min {min(xs):.4g}, max {max(xs):.4g}, n={len(xs)})")
    ratio = median(speeds[ours]) / median(speeds[ref])
    emit(f"RATIO {name} {ratio:.2f}")
    return ratio


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    import torch
    import transformers

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
        "transformers": transformers.__version__, "threads": torch.get_num_threads(),
        "load": load_average(),
    }  # fmt: skip


# --- shared by several benchmarks: models, audio, steps, scoring ------------------------------


def model_pair(kind: str, preset: str, seed: int = 0):
    """(w2v model, transformers model), both in eval mode, same weights. kind: "pretrain" | "ctc"."""
    import transformers

    torch.manual_seed(seed)
    config = get_preset(preset).replace(layer_drop=0.0)
    vocab = librispeech_vocab() if kind == "ctc" else None
    ours = build_model(kind, config, vocab)
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        export_hf(ours, tmp)
        cls = transformers.Wav2Vec2ForCTC if kind == "ctc" else transformers.Wav2Vec2ForPreTraining
        ref = cls.from_pretrained(tmp)
    return ours.eval(), ref.eval()


@functools.lru_cache(maxsize=2)
def real_audio(root: Path = REAL_MINI) -> np.ndarray:
    """All utterances under `root` (default real-mini) concatenated (16 kHz float32): a source of
    speech-like samples."""
    from w2vcli.audio import load_audio

    files = sorted(Path(root).rglob("*.flac"))
    if not files:
        raise SystemExit(f"no audio under {root}")
    return np.concatenate([load_audio(str(f)) for f in files])


def audio_batch(seconds: list[float], seed: int = 0, root: Path = REAL_MINI) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch wav [B,S] of utterances of the given durations, cut from real speech."""
    src = real_audio(Path(root))
    rng = np.random.default_rng(seed)
    lengths = [int(s * 16000) for s in seconds]
    wav = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        reps = -(-n // len(src)) + 1
        tiled = np.tile(src, reps)
        start = int(rng.integers(0, len(src)))
        wav[b, :n] = torch.from_numpy(tiled[start:start + n])
    return wav, torch.tensor(lengths, dtype=torch.long)


def hf_attention_mask(lengths: torch.Tensor, S: int) -> torch.Tensor | None:
    """transformers' attention_mask [B,S] (None when nothing is padded: its fastest path)."""
    if bool((lengths == S).all()):
        return None
    return (torch.arange(S)[None, :] < lengths[:, None]).long()


def verify(ours, ref, wav, lengths) -> None:
    """Same contrastive and diversity loss on the same mask/distractors (eval mode: argmax codes)."""
    cfg = ours.config
    frames = ours.wav2vec2.frame_lengths(lengths)
    T = int(frames.max())
    g = torch.Generator().manual_seed(0)
    mask = span_mask(frames, T, cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks, generator=g)
    neg = sample_negatives(mask, cfg.num_negatives, generator=g)
    with torch.no_grad():
        got = ours(wav, lengths, mask_indices=mask, negative_indices=neg, temperature=2.0)
        exp = ref(wav, attention_mask=hf_attention_mask(lengths, wav.shape[1]), mask_time_indices=mask,
                  sampled_negative_indices=neg)  # fmt: skip
    torch.testing.assert_close(got.contrastive_loss, exp.contrastive_loss, rtol=1e-4, atol=1e-3)
    # in eval mode transformers' diversity term uses the hard (code) perplexity
    gv = cfg.num_codebooks * cfg.codebook_size
    ours_loss = got.contrastive_loss + cfg.diversity_weight * (gv - got.code_perplexity) / gv * got.num_masked
    torch.testing.assert_close(ours_loss, exp.loss, rtol=1e-4, atol=1e-3)
    print(f"verified: contrastive loss {float(got.contrastive_loss):.4f} (w2v) vs "
          f"{float(exp.contrastive_loss):.4f} (transformers), {int(got.num_masked)} masked frames", flush=True)


def w2v_step(model, wav, lengths, dtype: torch.dtype | None = None):
    """One `w2v pretrain` training step on a fixed batch, as a function: forward under autocast
    (`dtype`, None = fp32), backward, the fused AdamW step of the engine (`make_optimizer`).
    wav [B,S] and lengths [B] are on the model's device."""
    model.train()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        with torch.autocast(wav.device.type, dtype=dtype, enabled=dtype is not None):
            out = model(wav, lengths, temperature=2.0)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def hf_step(ref, wav, lengths, dtype: torch.dtype | None = None):
    """The same for transformers' Wav2Vec2ForPreTraining, as run_wav2vec2_pretraining_no_trainer.py
    trains it: masks and distractors from its numpy helpers (on the CPU, as its collator makes
    them), torch.optim.AdamW with its defaults."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    cfg = ref.config
    ref.train()
    ref.set_gumbel_temperature(2.0)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-5)
    B, S = wav.shape
    cpu_lengths = lengths.cpu()
    attention_mask = hf_attention_mask(cpu_lengths, S)
    T = int(ref._get_feat_extract_output_lengths(cpu_lengths).max())
    feat_mask = None if attention_mask is None else ref._get_feature_vector_attention_mask(T, attention_mask)
    if attention_mask is not None:
        attention_mask = attention_mask.to(wav.device)

    def step():
        mask = _compute_mask_indices((B, T), cfg.mask_time_prob, cfg.mask_time_length, attention_mask=feat_mask,
                                     min_masks=cfg.mask_time_min_masks)  # fmt: skip
        neg = _sample_negative_indices((B, T), cfg.num_negatives, mask_time_indices=mask)
        with torch.autocast(wav.device.type, dtype=dtype, enabled=dtype is not None):
            out = ref(wav, attention_mask=attention_mask, mask_time_indices=torch.from_numpy(mask).to(wav.device),
                      sampled_negative_indices=torch.from_numpy(neg).to(wav.device))  # fmt: skip
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def real_mini(root: Path) -> tuple[list[str], dict[str, str]]:
    files = sorted(str(p) for p in root.rglob("*.flac"))
    texts = {}
    for trans in root.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            key, _, text = line.partition(" ")
            texts[key] = text
    return files, texts


def trained_like(text: str, vocab, rng: np.random.Generator, frames_per_sec: float = 50.0) -> np.ndarray:
    """Log-probs [T,V] resembling a trained CTC model's on `text` (see the module docstring)."""
    ids = [vocab.index[c] for c in letters(text)]
    rows = []
    for tok in [None] + ids + [None]:
        for t in range(rng.integers(2, 5)):
            p = np.full(len(vocab), 1e-6)
            target = 0 if (tok is None or t > 0) else tok
            conf = rng.uniform(0.6, 0.99)
            p[target] = conf
            others = rng.choice(np.arange(4, len(vocab)), size=3, replace=False)
            p[others] += (1 - conf) * rng.dirichlet(np.ones(3))
            rows.append(np.log(p / p.sum()))
    return np.stack(rows).astype(np.float32)


def real_mini_rows(root: Path = REAL_MINI) -> list[dict]:
    """Manifest rows (id, audio, text) for the real-mini utterances."""
    texts = {}
    for trans in root.rglob("*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            key, _, text = line.partition(" ")
            texts[key] = text
    rows = [{"id": p.name.split(".")[0], "audio": str(p)} for p in sorted(root.rglob("*.flac"))]
    return [{**r, "text": texts[r["id"]]} for r in rows if r["id"] in texts]


def agreement(ref: dict[str, str], hyp: dict[str, str]) -> float:
    """Share of ids whose two transcripts are identical."""
    return float(np.mean([ref[k] == hyp.get(k) for k in ref])) if ref else 1.0


def cer(refs: dict[str, str], hyps: dict[str, str], rules) -> float:
    from w2vcli.score import score_texts

    return score_texts(refs, hyps, on_missing=lambda _m: None, rules=rules).cer


@contextlib.contextmanager
def emulated_bf16():
    """`auto` pinned to bf16 (W2V_CPU_MODE), which runs even where bf16 is only emulated."""
    from w2vcli import cpu

    old = os.environ.get(cpu.MODE_ENV)
    os.environ[cpu.MODE_ENV] = "bf16"
    try:
        yield
    finally:
        if old is None:
            del os.environ[cpu.MODE_ENV]
        else:
            os.environ[cpu.MODE_ENV] = old
