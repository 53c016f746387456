"""Pretrain transformers' own Wav2Vec2ForPreTraining on the demo corpus with the demo's budget.

    python recipes/demo/local/hf_pretrain.py --config recipes/demo/conf/pretrain.toml \
        --train exp/data/train-clean.jsonl --valid exp/data/dev-clean.jsonl --seed 0 --out exp/hf-pt

The check of docs/demo-results.md that separates w2v's implementation from the regime: if a
network pretrained by the reference's code, on the same audio with the same architecture,
optimiser, schedule, masks and budget, fine-tunes no better than w2v's, the gap to the paper lies
in the regime (scale, data, updates), not in w2v. The loop follows transformers' pretraining
example (examples/pytorch/speech-pretraining/run_wav2vec2_pretraining_no_trainer.py): the
reference's weight init, `_compute_mask_indices`, `_sample_negative_indices` and loss (contrastive
+ diversity, summed, divided here by the masked frames as w2v does); AdamW (0.9, 0.98, 1e-6);
linear warm-up then linear decay; the Gumbel temperature max(start * decay^update, end).

Batches are drawn as w2v's loader draws them for this config: `max_tokens // max_sample_size`
utterances of at least `min_sample_size` samples, each cropped at random to the batch's shortest
(at most `max_sample_size`), normalised to zero mean and unit variance when the config says so.
Writes OUT/hf (save_pretrained: config.json, model.safetensors, preprocessor_config.json) for
`w2v finetune --init OUT/hf`, and OUT/metrics.jsonl (training loss, code perplexity, and dev
contrastive accuracy every `valid_interval` updates on fixed masks).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import tomllib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from w2vcli.data.manifest import read_manifest
from w2vcli.model.config import get_preset
from w2vcli.model.convert import config_to_hf


def load_wave(row: dict) -> np.ndarray:
    return sf.read(row["audio"], dtype="float32")[0]


def crop_batch(waves: list[np.ndarray], max_len: int, rng: np.random.Generator, normalize: bool) -> torch.Tensor:
    size = min(max_len, min(len(w) for w in waves))
    out = []
    for w in waves:
        start = int(rng.integers(0, len(w) - size + 1))
        w = w[start:start + size]
        if normalize:
            w = (w - w.mean()) / math.sqrt(w.var() + 1e-5)
        out.append(torch.from_numpy(np.ascontiguousarray(w)))
    return torch.stack(out)


def draw(model: Wav2Vec2ForPreTraining, wav: torch.Tensor, seed: int | None = None):
    """transformers' span mask and distractors for a batch of equal-length crops."""
    cfg = model.config
    T = int(model._get_feat_extract_output_lengths(wav.shape[1]))
    if seed is not None:
        np.random.seed(seed)
    mask = _compute_mask_indices((wav.shape[0], T), cfg.mask_time_prob, cfg.mask_time_length,
                                 min_masks=cfg.mask_time_min_masks)
    negatives = _sample_negative_indices((wav.shape[0], T), cfg.num_negatives, mask)
    return torch.from_numpy(mask), torch.from_numpy(negatives).long()


@torch.no_grad()
def contrastive_accuracy(model: Wav2Vec2ForPreTraining, wav, mask, negatives) -> float:
    """Share of masked frames whose true quantized target scores above all its distractors."""
    out = model(wav, mask_time_indices=mask, sampled_negative_indices=negatives)
    B, T, D = out.projected_quantized_states.shape
    flat = out.projected_quantized_states.reshape(B * T, D)
    neg = flat[negatives.view(-1)].view(B, T, -1, D).permute(2, 0, 1, 3)  # [K,B,T,D]
    targets = torch.cat([out.projected_quantized_states[None], neg], dim=0)
    logits = F.cosine_similarity(out.projected_states[None].float(), targets.float(), dim=-1)
    same = (neg == out.projected_quantized_states[None]).all(-1)
    logits[1:][same] = float("-inf")
    hit = logits.argmax(0) == 0
    return float(hit[mask].float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--valid", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-updates", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    conf = tomllib.loads(args.config.read_text())
    model_conf = dataclasses.replace(get_preset(conf.get("preset", "small")), **conf.get("model", {}))
    updates = args.max_updates or conf["max_updates"]
    lr, warmup, clip = conf["lr"], conf["warmup_updates"], conf.get("clip_norm", 10.0)
    per_batch = conf["max_tokens"] // conf["max_sample_size"]
    hf_dict = config_to_hf(model_conf, "Wav2Vec2ForPreTraining", None)
    config = Wav2Vec2Config(**{k: v for k, v in hf_dict.items() if k != "model_type"})

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    np.random.seed(args.seed)
    model = Wav2Vec2ForPreTraining(config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)

    rows = [r for r in read_manifest(args.train) if r["num_samples"] >= conf.get("min_sample_size", 0)]
    waves = {r["id"]: load_wave(r) for r in rows}
    ids = [r["id"] for r in rows]
    dev_rows = read_manifest(args.valid)[:64]
    dev_waves = [load_wave(r) for r in dev_rows]
    dev_rng = np.random.default_rng(1234)
    dev_batches = [crop_batch(dev_waves[i:i + per_batch], conf["max_sample_size"], dev_rng, model_conf.normalize_waveform)
                   for i in range(0, len(dev_waves), per_batch)]
    dev_draws = [draw(model, w, seed=1000 + i) for i, w in enumerate(dev_batches)]
    np.random.seed(args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "metrics.jsonl").open("w")
    start = time.time()
    order: list[str] = []
    for update in range(1, updates + 1):
        temp = max(model_conf.gumbel_start * model_conf.gumbel_decay ** (update - 1), model_conf.gumbel_end)
        model.set_gumbel_temperature(temp)
        if len(order) < per_batch:
            order = list(rng.permutation(ids))
        batch, order = order[:per_batch], order[per_batch:]
        wav = crop_batch([waves[i] for i in batch], conf["max_sample_size"], rng, model_conf.normalize_waveform)
        mask, negatives = draw(model, wav)
        out = model(wav, mask_time_indices=mask, sampled_negative_indices=negatives)
        masked = int(mask.sum())
        loss = out.loss / masked
        loss.backward()
        now_lr = lr * update / warmup if update <= warmup else lr * max(0.0, (updates - update) / (updates - warmup))
        for group in optimizer.param_groups:
            group["lr"] = now_lr
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"update": update, "loss": loss.item(), "contrastive": out.contrastive_loss.item() / masked,
               "perplexity": out.codevector_perplexity.item(), "grad_norm": grad_norm, "lr": now_lr,
               "gumbel": temp, "elapsed_s": round(time.time() - start, 1)}
        if update % conf.get("valid_interval", 250) == 0 or update == updates:
            model.eval()
            row["dev_accuracy"] = float(np.mean([contrastive_accuracy(model, w, *d)
                                                 for w, d in zip(dev_batches, dev_draws)]))
            model.train()
        if update % conf.get("log_interval", 25) == 0 or "dev_accuracy" in row:
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps(row), flush=True)

    model.save_pretrained(args.out / "hf", safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=model_conf.normalize_waveform,
                             return_attention_mask=True).save_pretrained(args.out / "hf")
    print(f"wrote {args.out / 'hf'} after {updates} updates in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
