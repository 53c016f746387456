"""pretrain_step: forward + backward + AdamW step of the full pretraining objective, samples/s.

    python -m bench.suite.pretrain_step --preset small --batch 8 --seconds 4 --reps 5

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
from bench.common import audio_batch, hf_attention_mask, model_pair
from w2vcli.model.masking import sample_negatives, span_mask
from w2vcli.train.engine import make_optimizer


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
