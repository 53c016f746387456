"""Op-level profile of one training step or one inference pass: fp32 against bf16 autocast, w2v
against transformers on the same weights.

    OMP_NUM_THREADS=1 python -m bench.studies.profile_ops --preset small --what pretrain --batch 4 --seconds 3
    python -m bench.studies.profile_ops --preset base --what pretrain --batch 1 --seconds 4 --precisions fp32 \
        --impl w2v transformers --threads 2

Prints torch.profiler's table of the ops with the most self CPU time for each implementation and
precision, after a warm-up step (one thread unless --threads), then one line per implementation
with the shares of the step spent in matrix products, convolutions, attention and the rest. A
pretraining step is forward, backward and the optimiser step (`bench.suite.pretrain_step`'s closures:
w2v's fused AdamW, transformers' example-script AdamW). This is for finding what bounds a mode
(share of the step), not for speed claims: run the RATIO benchmarks for those.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import audio_batch, hf_attention_mask, model_pair
from bench.common import hf_step, w2v_step

# op name fragments -> the category a share is reported under (first match wins)
CATEGORIES = (
    ("matmul", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm", "quantized::")),
    ("conv", ("convolution", "conv1d", "conv2d", "_slow_conv", "im2col", "col2im")),
    ("attention", ("scaled_dot_product", "softmax", "_flash_attention")),
    ("optimizer", ("adam", "_foreach")),
)


def step_fn(what: str, preset: str, batch: int, seconds: float, impl: str, precision: str):
    """One step of `what` for `impl` ("w2v" or "transformers", the same weights) as a closure."""
    ours, ref = model_pair("pretrain" if what == "pretrain" else "ctc", preset)
    wav, lengths = audio_batch([seconds] * batch)
    dtype = torch.bfloat16 if precision == "bf16" else None
    if what == "pretrain":
        return w2v_step(ours, wav, lengths, dtype) if impl == "w2v" else hf_step(ref, wav, lengths, dtype)
    model = ours.eval() if impl == "w2v" else ref.eval()
    mask = hf_attention_mask(lengths, wav.shape[1])

    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            if impl == "w2v":
                model(wav, lengths, valid_group_norm=True)  # what Emitter runs
            else:
                model(wav, attention_mask=mask)

    return step


def category(op: str) -> str:
    name = op.lower()
    for label, fragments in CATEGORIES:
        if any(f in name for f in fragments):
            return label
    return "other"


def profile(step, label: str, rows: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    step()  # warm-up
    with prof(activities=[ProfilerActivity.CPU]) as p:
        step()
    events = p.key_averages()
    print(f"== {label}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))
    shares: dict[str, float] = {}
    for e in events:
        c = category(e.key)
        shares[c] = shares.get(c, 0.0) + e.self_cpu_time_total
    total = sum(shares.values())
    print(f"SHARES {label} total {total / 1e6:.3f} s self CPU: "
          + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--what", choices=["pretrain", "inference"], default="pretrain")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--impl", nargs="+", choices=["w2v", "transformers"], default=["w2v"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for impl in a.impl:
        for precision in a.precisions:
            step = step_fn(a.what, a.preset, a.batch, a.seconds, impl, precision)
            profile(step, f"{impl} {precision} {a.what} {a.preset}", a.rows)


if __name__ == "__main__":
    main()
