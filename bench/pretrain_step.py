"""pretrain_step: forward + backward + AdamW step of the full pretraining objective, samples/s.

    python -m bench.pretrain_step --preset small --batch 8 --seconds 4 --reps 5

Both implementations hold the same weights (bench.models). Before timing, both run in eval
mode on the same batch with the same mask and distractor indices and must give the same
contrastive and diversity losses. The timed step is what each toolkit's own training does:
w2v samples masks and distractors inside its forward (vectorised torch); transformers gets them
from its numpy helpers `_compute_mask_indices` / `_sample_negative_indices`, as
`run_wav2vec2_pretraining_no_trainer.py`'s collator does. Same mask settings (mask_time_prob,
span, K) on both sides, dropout as in the preset, layer drop off, Gumbel temperature 2. Each side
steps its toolkit's optimizer: w2v the fused AdamW its engine builds (`make_optimizer`),
transformers `torch.optim.AdamW` with its defaults as the example script does.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import interleaved, report, set_threads, timed
from bench.models import audio_batch, hf_attention_mask, model_pair
from w2vcli.model.masking import sample_negatives, span_mask
from w2vcli.train.engine import make_optimizer


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


def make_steps(ours, ref, wav, lengths, steps: int, precision: str = "fp32"):
    """Closures that each run `steps` training steps and return samples/s (w2v's under bf16
    autocast with precision "bf16", as `w2v pretrain --precision bf16` runs; transformers in fp32)."""
    B = wav.shape[0]
    dtype = torch.bfloat16 if precision == "bf16" else None

    def speed(fn):
        return lambda: B * steps / timed(lambda: [fn() for _ in range(steps)])

    return {"w2v": speed(w2v_step(ours, wav, lengths, dtype)), "transformers": speed(hf_step(ref, wav, lengths))}


def run(preset: str, batch: int, seconds: float, reps: int, steps: int = 1, threads: int = 2,
        precision: str = "fp32") -> float | None:  # fmt: skip
    """precision: w2v's, "fp32" or "auto" (what `--precision auto` picks on this CPU, w2vcli/cpu.py)."""
    name = f"pretrain_step_{preset}"
    if precision == "auto":
        from w2vcli.cpu import auto_train_precision

        precision, name = auto_train_precision(), f"{name}_auto"
        if precision == "fp32":
            print(f"SKIP {name}: --precision auto is fp32 on this CPU (no native bf16), as pretrain_step_{preset}")
            return None
    set_threads(threads)
    ours, ref = model_pair("pretrain", preset)
    wav, lengths = audio_batch([seconds] * batch)
    verify(ours, ref, wav, lengths)
    np.random.seed(0)
    torch.manual_seed(0)
    speeds = interleaved(make_steps(ours, ref, wav, lengths, steps, precision), reps)
    return report(name, speeds, f"samples/s (batch {batch} x {seconds:g} s; w2v {precision}, transformers fp32)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each (cropped) utterance")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1, help="training steps per timed repetition")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "auto"], default="fp32", help="w2v's (auto: bf16 on native-bf16 CPUs)")
    a = ap.parse_args()
    run(a.preset, a.batch, a.seconds, a.reps, a.steps, a.threads, a.precision)


if __name__ == "__main__":
    main()
