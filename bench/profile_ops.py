"""Op-level profile of one training step or one inference pass, fp32 against bf16 autocast.

    OMP_NUM_THREADS=1 python -m bench.profile_ops --preset small --what pretrain --batch 4 --seconds 3

Prints torch.profiler's table of the ops with the most self CPU time for each precision, one
thread, after a warm-up step. This is for finding which op a mode makes slow (share of the
step), not for speed claims: run the RATIO benchmarks for those.
"""

from __future__ import annotations

import os
import argparse

import torch

from bench.models import audio_batch
from w2vcli.model.checkpoint import build_model, librispeech_vocab
from w2vcli.model.config import get_preset


def step_fn(what: str, preset: str, batch: int, seconds: float):
    torch.manual_seed(0)
    config = get_preset(preset).replace(layer_drop=0.0)
    wav, lengths = audio_batch([seconds] * batch)
    if what == "pretrain":
        model = build_model("pretrain", config).train()

        def step():
            model(wav, lengths, temperature=2.0).loss.backward()
            model.zero_grad(set_to_none=True)
    else:
        model = build_model("ctc", config, librispeech_vocab()).eval()

        def step():
            with torch.inference_mode():
                model(wav, lengths)
    return step


def profile(step, precision: str, rows: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with ctx:
        step()  # warm-up
        with prof(activities=[ProfilerActivity.CPU]) as p:
            step()
    print(f"== {precision}")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--what", choices=["pretrain", "inference"], default="pretrain")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--rows", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("PROFILE_THREADS", "1")))
    step = step_fn(a.what, a.preset, a.batch, a.seconds)
    for precision in a.precisions:
        profile(step, precision, a.rows)


if __name__ == "__main__":
    main()
