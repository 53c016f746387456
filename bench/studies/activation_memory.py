"""Peak memory of one training step with and without `--checkpoint-activations`.

    python -m bench.studies.activation_memory --preset base --task finetune --seconds 15 --batch 2

Runs forward + backward of a model with the same weights and batch (real speech) twice, with
each Transformer block's activations stored (the default) and recomputed in backward
(`Wav2Vec2Model.checkpoint_activations`), and prints

    MEM <task>_<preset> <mode> peak=<MiB> (tensor memory allocated above the model and batch)

The peak is taken from torch.profiler's memory events (every CPU tensor allocation and free,
summed in order), so it counts tensors, not the allocator's cached pages, and does not depend
on machine load. `--task finetune` freezes the conv stack as fine-tuning does (its activations
are then not kept at all); `pretrain` trains it. Also checks the two losses are equal.
"""

from __future__ import annotations

import argparse

import torch

from bench.common import audio_batch


def build(task: str, preset: str):
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.config import get_preset

    torch.manual_seed(0)
    config = get_preset(preset).replace(layer_drop=0.0)
    if task == "finetune":
        model = build_model("ctc", config.replace(feature_grad_mult=0.0, mask_time_prob=0.0), librispeech_vocab())
        model.freeze_feature_encoder()
    else:
        model = build_model("pretrain", config)
    return model.train()


def step(model, task: str, wav, lengths) -> float:
    torch.manual_seed(1)
    if task == "finetune":
        from w2vcli.model.wav2vec2 import ctc_loss

        logits, frames = model(wav, lengths)
        targets = torch.randint(5, len(model.vocab), (wav.shape[0], 20))
        loss = ctc_loss(logits, frames, targets, torch.full((wav.shape[0],), 20))
    else:
        loss = model(wav, lengths, temperature=2.0).loss
    loss.backward()
    return float(loss.detach())


def peak_bytes(fn) -> tuple[float, int]:
    """(fn's result, the highest total of CPU tensor bytes allocated while it ran, above the start)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)  # fmt: skip
    total = peak = 0
    for _, nbytes in events:  # + allocation, - free
        total += nbytes
        peak = max(peak, total)
    return result, peak


def run(task: str, preset: str, batch: int, seconds: float, threads: int = 2) -> dict[str, int]:
    torch.set_num_threads(threads)
    wav, lengths = audio_batch([seconds] * batch)
    out = {}
    losses = {}
    for mode in ("stored", "checkpointed"):
        model = build(task, preset)
        model.wav2vec2.checkpoint_activations(mode == "checkpointed")
        losses[mode], out[mode] = peak_bytes(lambda: step(model, task, wav, lengths))
        print(f"MEM {task}_{preset} {mode} peak={out[mode] / 2**20:.1f} MiB (batch {batch} x {seconds:g} s, "
              f"loss {losses[mode]:.4f})", flush=True)  # fmt: skip
    assert abs(losses["stored"] - losses["checkpointed"]) <= 1e-4 * abs(losses["stored"]), losses
    print(f"MEM {task}_{preset} saving {1 - out['checkpointed'] / out['stored']:.0%} of the peak", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["finetune", "pretrain"], default="finetune")
    ap.add_argument("--preset", default="base")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    run(a.task, a.preset, a.batch, a.seconds, a.threads)


if __name__ == "__main__":
    main()
