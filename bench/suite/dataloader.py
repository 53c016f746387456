"""dataloader: batches/s from a manifest through w2v's loader vs the training step's consumption.

    python -m bench.suite.dataloader --batches 40 --workers 2

The real-mini utterances are prepared once with `w2v prepare librispeech` (cached in
bench/.cache/real-mini), their rows repeated to make an epoch, and loaded exactly as
`w2v pretrain --preset small` does (AudioDataset cropping at max_sample_size, length-bucketed
BucketBatchSampler filling max_tokens, DataLoader with `--workers` processes). The same
batches then go through w2v pretraining steps (small preset, forward + backward + the fused
AdamW the engine builds).
RATIO dataloader = loader batches/s / step batches/s: above 1 the loader keeps up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch

from bench.common import CACHE, REAL_MINI, emit, median, timed

MAX_TOKENS, MAX_SAMPLE_SIZE = 200_000, 48_000  # the small preset's pretraining defaults


def cached_manifest():
    out = CACHE / "real-mini"
    if not (out / "test-real.jsonl").is_file():
        cmd = [sys.executable, "-m", "w2vcli", "prepare", "librispeech", str(REAL_MINI), "--out", str(out)]
        subprocess.run(cmd, check=True)
    return out / "test-real.jsonl"


def run(batches: int, workers: int, steps: int, reps: int, threads: int = 2) -> float:
    from w2vcli.data.dataset import AudioDataset, BucketBatchSampler, make_loader
    from w2vcli.data.manifest import read_manifest
    from w2vcli.model.config import get_preset
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining
    from w2vcli.train.engine import make_optimizer

    torch.set_num_threads(threads)
    rows = read_manifest(cached_manifest())
    rows = [dict(r, id=f"{r['id']}-{i}") for i in range(200) for r in rows]  # an epoch of 2000 utterances
    ds = AudioDataset(rows, max_sample_size=MAX_SAMPLE_SIZE, seed=0)
    sampler = BucketBatchSampler(ds.sizes, MAX_TOKENS, seed=0)

    def load() -> list[dict]:
        loader = make_loader(ds, sampler, num_workers=workers)
        out = []
        for b in loader:
            out.append(b)
            if len(out) == batches:
                break
        return out

    loader_speeds = []
    for _ in range(reps):  # includes worker start-up, as every epoch of training does
        loader_speeds.append(batches / timed(load))
    got = load()

    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(get_preset("small")).train()
    opt = make_optimizer(list(model.parameters()), lr=1e-5)  # what the w2v engine builds

    def step(b):
        model(b.wav, b.lengths).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(got[0])
    step_speeds = [1 / timed(lambda: step(got[i % len(got)])) for i in range(steps)]
    lb, sb = median(loader_speeds), median(step_speeds)
    shape = f"{len(got[0]['ids'])} x {got[0]['wav'].shape[1] / 16000:g} s"
    emit(f"ABS dataloader w2v-loader {lb:.4g} batches/s ({workers} workers, max_tokens {MAX_TOKENS}, "
          f"e.g. {shape}; min {min(loader_speeds):.4g}, max {max(loader_speeds):.4g}, n={reps})")
    emit(f"ABS dataloader w2v-train-step {sb:.4g} batches/s (small preset, min {min(step_speeds):.4g}, "
          f"max {max(step_speeds):.4g}, n={steps})")
    ratio = lb / sb
    emit(f"RATIO dataloader {ratio:.2f}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    run(a.batches, a.workers, a.steps, a.reps, a.threads)


if __name__ == "__main__":
    main()
