"""allocator: w2v with glibc keeping freed memory (what the `w2v` command sets) against glibc's default.

    python -m bench.suite.allocator --preset base --rounds 3 --steps 6

`w2vcli.cpu.keep_freed_memory` makes malloc serve every tensor from its heap and keep freed
memory, instead of mapping each block over 32 MiB afresh and unmapping it on free. The setting
is per process, so each measurement runs in a child process, alternately with it ("kept") and
without it ("glibc": W2V_KEEP_MEMORY=0, glibc's default, which w2v then leaves
malloc alone), `rounds` times each. A child builds a `preset` model and runs, after one warm-up
of each:

- `steps` pretraining updates (forward, backward, fused AdamW) of 1-2 utterances of 2-6 s cut
  from real speech, the same seeded shapes in every child (varying shapes, as training has);
- one transcription of the real-mini utterances through `Emitter.batch` (CTC model, batch 1 each).

Lines: `ABS cpu_memory_<what>_<preset> <kept|glibc> <per second>` (updates/s, audio s/s; medians
over the rounds), `ABS cpu_memory_peak_<preset> <kept|glibc> <MB>` (peak resident size of the
child), `RATIO cpu_memory_<what>_<preset> <kept / glibc>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.common import REPO, emit, median


def child(preset: str, steps: int, threads: int) -> dict:
    """One measurement in this process (run by `run` in a fresh interpreter)."""
    import resource
    import time

    import numpy as np
    import torch

    from w2vcli.cpu import keep_freed_memory

    kept = keep_freed_memory()
    torch.set_num_threads(threads)
    from bench.common import real_mini_rows
    from bench.common import audio_batch
    from w2vcli.audio import load_audio
    from w2vcli.decode.emissions import EmissionOptions, Emitter
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.config import get_preset
    from w2vcli.train.engine import make_optimizer

    config = get_preset(preset).replace(layer_drop=0.0)
    torch.manual_seed(0)
    model = build_model("pretrain", config)
    rng = np.random.default_rng(0)
    shapes = [[float(rng.uniform(2.0, 6.0)) for _ in range(int(rng.integers(1, 3)))] for _ in range(steps + 1)]
    batches = [audio_batch(sorted(s, reverse=True), seed=i) for i, s in enumerate(shapes)]
    model.train()
    opt = make_optimizer(list(model.parameters()), lr=1e-5)

    def train(i: int) -> None:  # what bench.suite.pretrain_step times: forward, backward, fused AdamW
        wav, lengths = batches[i]
        model(wav, lengths, temperature=2.0).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train(0)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        train(i)
    train_s = time.perf_counter() - t0

    ctc = build_model("ctc", config, librispeech_vocab()).eval()
    emitter = Emitter(ctc, EmissionOptions(device="cpu", chunk_seconds=0, precision="fp32", quantize="none"))
    audio = [load_audio(r["audio"]) for r in real_mini_rows()]
    emitter.batch(audio[:1])
    t0 = time.perf_counter()
    for wav in audio:
        emitter.batch([wav])
    infer_s = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"kept": kept, "updates_per_s": steps / train_s, "audio_per_s": sum(len(a) for a in audio) / 16000 / infer_s,
            "peak_mb": peak_resident_mb(), "system_s": usage.ru_stime}  # fmt: skip


def peak_resident_mb() -> float:
    """This process's peak resident size (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent across fork + exec, so a child of a large process reports the parent's size."""
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(preset: str = "base", rounds: int = 3, steps: int = 6, threads: int = 2) -> float | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    settings = {"kept": env, "glibc": {**env, "W2V_KEEP_MEMORY": "0"}}
    results: dict[str, list[dict]] = {"kept": [], "glibc": []}
    for r in range(rounds):
        for name in (("kept", "glibc") if r % 2 == 0 else ("glibc", "kept")):
            code = f"import json; from bench.suite.allocator import child; print(json.dumps(child({preset!r}, {steps}, {threads})))"
            out = subprocess.run([sys.executable, "-c", code], env=settings[name], cwd=REPO, capture_output=True,
                                 text=True)  # fmt: skip
            if out.returncode != 0:
                raise RuntimeError(f"{name} child failed: {out.stderr.strip().splitlines()[-1:]}")
            got = json.loads(out.stdout.strip().splitlines()[-1])
            if got["kept"] != (name == "kept"):
                raise RuntimeError(f"{name} child: keep_freed_memory() returned {got['kept']}")
            results[name].append(got)
    ratio = None
    for key, what, unit in (("updates_per_s", "pretrain", "updates/s"), ("audio_per_s", "transcribe", "audio s/s")):
        name = f"cpu_memory_{what}_{preset}"
        speeds = {k: [x[key] for x in v] for k, v in results.items()}
        for k, v in speeds.items():
            emit(f"ABS {name} {k} {median(v):.4g} {unit} (min {min(v):.4g}, max {max(v):.4g}, n={len(v)}; "
                 f"kernel time {median([x['system_s'] for x in results[k]]):.1f} s per child)")  # fmt: skip
        ratio = median(speeds["kept"]) / median(speeds["glibc"])
        emit(f"RATIO {name} {ratio:.2f}")
    for k, v in results.items():
        emit(f"ABS cpu_memory_peak_{preset} {k} {median([x['peak_mb'] for x in v]):.0f} MB (peak resident size)")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="base")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    run(a.preset, a.rounds, a.steps, a.threads)


if __name__ == "__main__":
    main()
