"""The child processes of `bench/gpu/harness.py`: which measurements each makes, in which order.

    w2v_base   machine, bf16 GEMM ceiling; BASE pretraining throughput + largest batch;
               BASE CTC fine-tuning throughput; BASE transcription, greedy and with the LM
    hf_base    transformers' Wav2Vec2ForPreTraining with the same weights: throughput + largest batch
    w2v_large  LARGE pretraining throughput; LARGE transcription, greedy and with the LM
    compile    BASE with torch.compile off and on: CTC inference forward, pretraining step
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from bench.gpu.measure import (SAMPLE_RATE, Recorder, Settings, free_memory, measure_compile, measure_max_batch,
                               measure_train, measure_transcribe, model_config, peaked_ctc_model, sync,
                               train_batch)  # fmt: skip
from bench.common import audio_batch


def label(size: str, s: Settings) -> str:
    """The preset name a record shows: `base`, or in a dry run `tiny(base)`."""
    return f"tiny({size})" if s.dry_run else size


def ctc_step(model, wav, lengths, dtype: torch.dtype | None):
    """One `w2v finetune` step on a fixed batch: CTC loss (summed, divided by the batch, as the
    engine does) on random letter targets of 14 letters per second of audio (LibriSpeech's rate),
    forward under autocast, the engine's fused AdamW over the trainable parameters."""
    from w2vcli.model.wav2vec2 import ctc_loss
    from w2vcli.train.engine import make_optimizer

    model.train()
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    B, L = wav.shape[0], max(1, int(lengths.min()) * 14 // SAMPLE_RATE)
    targets = torch.randint(5, len(model.vocab), (B, L), generator=torch.Generator().manual_seed(0)).to(wav.device)
    target_lengths = torch.full((B,), L, dtype=torch.long, device=wav.device)

    def step():
        with torch.autocast(wav.device.type, dtype=dtype, enabled=dtype is not None):
            logits, frames = model(wav, lengths)
            loss = ctc_loss(logits, frames, targets, target_lengths) / B
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def machine_record(rec: Recorder, device: torch.device) -> None:
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(device_name=p.name, capability=f"{p.major}.{p.minor}", memory_gib=p.total_memory / 2**30,
                    multiprocessors=p.multi_processor_count, cudnn=torch.backends.cudnn.version())  # fmt: skip
    else:
        info.update(device_name="cpu (dry run)")
    rec.add("machine", "machine", **info)


def gemm_ceiling(rec: Recorder, s: Settings, device: torch.device) -> None:
    """bf16 matrix-product rate on random data (METHOD.md's ceiling): n x n x n, mean of 50 after 5."""
    n = 8192 if device.type == "cuda" else 256
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(50):
        a @ b
    sync(device)
    rec.add("gemm_bf16", "ceiling", n=n, tflops=2 * n**3 * 50 / (time.perf_counter() - t0) / 1e12)


def child_w2v_base(s: Settings, rec: Recorder) -> None:
    """BASE: pretraining throughput and largest batch, CTC fine-tuning, transcription."""
    from bench.common import w2v_step
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    device = torch.device(s.device)
    machine_record(rec, device)
    with rec.guard("gemm_bf16", "ceiling"):
        gemm_ceiling(rec, s, device)
    cfg, preset = model_config("base", s.dry_run), label("base", s)
    torch.manual_seed(0)
    with device:  # initialised on the device: seconds instead of a CPU init and a copy
        model = Wav2Vec2ForPreTraining(cfg)
    make = lambda w, l: w2v_step(model, w, l, torch.bfloat16)  # noqa: E731
    fitted = None
    with rec.guard("pretrain_base_w2v", "train"):
        fitted = measure_train(rec, "pretrain_base_w2v", "w2v", preset, cfg, make, s, device)
    if fitted is None:
        rec.add("max_batch_base_w2v", "max_batch", "skipped", "the throughput run failed")
    else:
        with rec.guard("max_batch_base_w2v", "max_batch"):
            measure_max_batch(rec, "max_batch_base_w2v", "w2v", preset, model, make, s, device, *fitted[1:])
    del model, make, fitted
    free_memory()
    with rec.guard("finetune_base_w2v", "train"):
        finetune_throughput(rec, s, cfg, preset, device)
    transcribe_both(rec, "base", s)


def finetune_throughput(rec: Recorder, s: Settings, cfg, preset: str, device: torch.device) -> None:
    from w2vcli.model.build import build_model, librispeech_vocab

    torch.manual_seed(0)
    with device:
        ctc = build_model("ctc", cfg.replace(feature_grad_mult=0.0), librispeech_vocab())
    ctc.freeze_feature_encoder()  # as `w2v finetune` does
    measure_train(rec, "finetune_base_w2v", "w2v", preset, cfg, lambda w, l: ctc_step(ctc, w, l, torch.bfloat16),
                  s, device, head="ctc", frozen_feature_encoder=True)  # fmt: skip


def transcribe_both(rec: Recorder, size: str, s: Settings) -> None:
    model = peaked_ctc_model(model_config(size, s.dry_run), torch.device(s.device))
    for use_lm in (False, True):
        name = f"transcribe_{size}_{'lm' if use_lm else 'greedy'}"
        with rec.guard(name, "transcribe"):
            measure_transcribe(rec, name, label(size, s), model, s, use_lm)


def child_hf_base(s: Settings, rec: Recorder) -> None:
    """transformers' Wav2Vec2ForPreTraining with w2v's BASE weights: throughput and largest batch."""
    from bench.common import model_pair
    from bench.common import hf_step, verify

    device = torch.device(s.device)
    cfg, preset = model_config("base", s.dry_run), label("base", s)
    ref = fitted = None
    with rec.guard("pretrain_base_hf", "train"):
        ours, ref = model_pair("pretrain", "tiny" if s.dry_run else "base")
        wav, lengths = audio_batch([2.0], root=Path(s.audio))
        verify(ours, ref, wav, lengths)  # the same losses as w2v on the same batch, on the CPU
        del ours
        ref.to(device)
        fitted = measure_train(rec, "pretrain_base_hf", "transformers", preset, cfg,
                               lambda w, l: hf_step(ref, w, l, torch.bfloat16), s, device,
                               note="w2v's weights; equal losses checked on the CPU first")  # fmt: skip
    if fitted is None:
        rec.add("max_batch_base_hf", "max_batch", "skipped", "the throughput run failed")
        return
    with rec.guard("max_batch_base_hf", "max_batch"):
        measure_max_batch(rec, "max_batch_base_hf", "transformers", preset, ref,
                          lambda w, l: hf_step(ref, w, l, torch.bfloat16), s, device, *fitted[1:])  # fmt: skip


def child_w2v_large(s: Settings, rec: Recorder) -> None:
    """LARGE: pretraining throughput, transcription."""
    from bench.common import w2v_step
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    device = torch.device(s.device)
    cfg = model_config("large", s.dry_run)
    with rec.guard("pretrain_large_w2v", "train"):
        torch.manual_seed(0)
        with device:
            model = Wav2Vec2ForPreTraining(cfg)
        measure_train(rec, "pretrain_large_w2v", "w2v", label("large", s), cfg,
                      lambda w, l: w2v_step(model, w, l, torch.bfloat16), s, device)  # fmt: skip
    model = None
    free_memory()
    transcribe_both(rec, "large", s)


def child_compile(s: Settings, rec: Recorder) -> None:
    """BASE with torch.compile on and off: CTC inference forward, then the pretraining step."""
    from bench.common import w2v_step
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    device = torch.device(s.device)
    cfg, preset = model_config("base", s.dry_run), label("base", s)
    with rec.guard("compile_infer_base", "compile"):
        model = peaked_ctc_model(cfg, device)
        wav, lengths = train_batch(s, s.infer_batch, device)

        def infer(m):
            def run():
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                    return m(wav, lengths)

            return run

        measure_compile(rec, "compile_infer_base", "inference", preset, model, infer,
                        s.infer_batch * s.crop_s, "audio s/s", s, device)  # fmt: skip
    model = None
    free_memory()
    with rec.guard("compile_train_base", "compile"):
        with device:
            model = Wav2Vec2ForPreTraining(cfg)
        wav, lengths = train_batch(s, s.batch, device)
        step = lambda m: w2v_step(m, wav, lengths, torch.bfloat16)  # noqa: E731
        measure_compile(rec, "compile_train_base", "pretraining step", preset, model, step, s.batch, "samples/s", s,
                        device)  # fmt: skip


CHILDREN: dict[str, Callable[[Settings, Recorder], None]] = {
    "w2v_base": child_w2v_base,
    "hf_base": child_hf_base,
    "w2v_large": child_w2v_large,
    "compile": child_compile,
}


def run_child(name: str, settings: str, records: str) -> None:
    """Entry point of a child process (`python -m bench.gpu --child NAME ...`)."""
    s = Settings(**json.loads(settings))
    if s.dry_run:
        torch.set_num_threads(1)  # a shared CI machine
    CHILDREN[name](s, Recorder(name, records))
    sys.stdout.flush()
