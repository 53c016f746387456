"""`w2v finetune`: CTC fine-tuning of a pretrained wav2vec 2.0 model on labelled audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.commands.pretrain import (
    CheckpointActivations, ClipNorm, ConfigFile, Gpus, LogInterval, Lr, Manifest, MaxSampleSize, MaxTokens, MaxUpdates,
    Nproc, NumWorkers, Out, Precision, Preset, Resume, ScheduleUpdates, Seed, SkipBadAudio, Threads, UpdateFreq, Valid,
    ValidInterval, Warmup, common_layer, run,
)  # fmt: skip
from w2vcli.errors import W2VError


def finetune(
    out: Out,
    train: Manifest = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Required (or --from-scratch). Pretrained model: a w2v .pt, a Hugging Face save_pretrained folder, a fairseq .pt, or `none` (random init from --preset, a baseline).", rich_help_panel="Model and units")] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="Same as --init none.", rich_help_panel="Model and units")] = False,
    valid: Valid = None,
    preset: Preset = None,
    config: ConfigFile = None,
    vocab: Annotated[Optional[str], typer.Option("--vocab", help="Output units: a vocab.json / dict.ltr.txt, a sentencepiece .model, or `letters` (the training transcripts' own). Default: a CTC --init's own if they hold every training letter, else the vocab.json `w2v prepare` wrote beside --train, else letters.", rich_help_panel="Model and units")] = None,
    text_rules: Annotated[Optional[str], typer.Option("--text-rules", help="text_rules.json with the transcripts' normalisation (default: the one `w2v prepare` wrote beside --train, else English).", rich_help_panel="Model and units")] = None,
    train_spm: Annotated[Optional[int], typer.Option("--train-spm", help="Train a sentencepiece model of N units on the training transcripts and use it.", min=2, rich_help_panel="Model and units")] = None,
    reinit_layers: Annotated[Optional[int], typer.Option("--reinit-layers", help="Initialise the top N Transformer layers of --init afresh (keeps the conv encoder, projection and positional conv): at small scale the top layers serve the pretraining task, not letters.", min=0, rich_help_panel="Model and units")] = None,
    freeze_updates: Annotated[Optional[int], typer.Option("--freeze-updates", help="Train only the output layer for the first N updates.", min=0, rich_help_panel="Schedule")] = None,
    mask_time_prob: Annotated[Optional[float], typer.Option("--mask-time-prob", "--mask-prob", help="Time masking, fairseq convention (span starts p × span length; paper's 0.065 × 10 = 0.65).", min=0, rich_help_panel="Regularisation")] = None,
    mask_channel_prob: Annotated[Optional[float], typer.Option("--mask-channel-prob", help="Channel masking probability (fairseq convention).", min=0, rich_help_panel="Regularisation")] = None,
    layer_drop: Annotated[Optional[float], typer.Option("--layer-drop", "--layerdrop", help="Probability of skipping a Transformer layer in training.", min=0, max=1, rich_help_panel="Regularisation")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option("--lr-schedule", help="tri_stage (10%/40%/50% warmup/hold/decay) or polynomial (with --warmup-updates).", rich_help_panel="Schedule")] = None,
    speed_perturb: Annotated[Optional[str], typer.Option("--speed-perturb", help="Speed factors, e.g. 0.9,1.0,1.1: each training utterance plays at one of them, drawn per epoch (tempo and pitch, like `sox speed`); `none` = off.", rich_help_panel="Augmentation")] = None,
    noise: Annotated[Optional[str], typer.Option("--noise", help="Add noise to training utterances: white, pink, brown, or a folder of noise recordings (cropped or looped at random); `none` = off.", rich_help_panel="Augmentation")] = None,
    noise_snr: Annotated[Optional[str], typer.Option("--noise-snr", help="SNR range in dB, MIN,MAX (default 10,30), drawn uniformly per noised utterance.", rich_help_panel="Augmentation")] = None,
    noise_prob: Annotated[Optional[float], typer.Option("--noise-prob", help="Share of training utterances that get noise (default 0.5).", min=0, max=1, rich_help_panel="Augmentation")] = None,
    max_updates: MaxUpdates = None,
    max_tokens: MaxTokens = None,
    max_sample_size: MaxSampleSize = None,
    update_freq: UpdateFreq = None,
    lr: Lr = None,
    warmup_updates: Warmup = None,
    schedule_updates: ScheduleUpdates = None,
    clip_norm: ClipNorm = None,
    seed: Seed = None,
    precision: Precision = None,
    gpus: Gpus = None,
    nproc: Nproc = None,
    resume: Resume = False,
    valid_interval: ValidInterval = None,
    log_interval: LogInterval = None,
    num_workers: NumWorkers = None,
    checkpoint_activations: CheckpointActivations = None,
    skip_bad_audio: SkipBadAudio = None,
    threads: Threads = None,
) -> None:
    """Fine-tune with CTC: feature encoder frozen, tri-stage learning rate, time and channel masking.

    Validation decodes greedily and reports WER and CER; OUT/best.pt keeps the lowest dev WER.
    Output folder, --resume and signals as for `w2v pretrain`. Utterances whose transcript needs
    more CTC frames than their audio has are left out (one warning per manifest); output still
    blank, or dev WER still 1.0, after a quarter of the run gets a warning naming the fixes.

    \b
    Example:
      w2v finetune --init exp/pt/best.pt --train data/train-10m.jsonl --valid data/dev.jsonl --out exp/ft
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.augment import NOISE_COLOURS
    from w2vcli.train.config import FinetuneConfig

    if from_scratch:
        init = "none"
    if noise is not None:  # a folder is kept as an absolute path, so that --resume finds it from anywhere
        noise = "" if noise.lower() in ("", "none") else noise if noise in NOISE_COLOURS else str(Path(noise).resolve())
    cli = common_layer(train=train, valid=valid, preset=preset, init=init, vocab=vocab, text_rules=text_rules, train_spm=train_spm,
                       reinit_layers=reinit_layers, freeze_updates=freeze_updates, mask_time_prob=mask_time_prob, mask_channel_prob=mask_channel_prob,
                       layer_drop=layer_drop, lr_schedule=lr_schedule, max_updates=max_updates,
                       speed_perturb=numbers(speed_perturb, "--speed-perturb"), noise=noise,
                       noise_snr=numbers(noise_snr, "--noise-snr", 2), noise_prob=noise_prob,
                       max_tokens=max_tokens, max_sample_size=max_sample_size, update_freq=update_freq, lr=lr,
                       warmup_updates=warmup_updates, schedule_updates=schedule_updates, clip_norm=clip_norm,
                       seed=seed, precision=precision, gpus=gpus, nproc=nproc, valid_interval=valid_interval,
                       log_interval=log_interval, num_workers=num_workers, skip_bad_audio=skip_bad_audio,
                       threads=threads, checkpoint_activations=checkpoint_activations)
    run(FinetuneConfig, preset, config, out, resume, cli)


def numbers(text: str | None, option: str, count: int | None = None) -> list[float] | None:
    """`0.9,1.0,1.1` -> [0.9, 1.0, 1.1]; None when not given, [] for `none`."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none") and count is None:
        return []
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or (count is not None and len(values) != count):
        want = f"{count} numbers" if count else "numbers"
        raise W2VError(f"{option}: expected {want} separated by commas (e.g. {'10,30' if count == 2 else '0.9,1.0,1.1'}), got {text!r}")
    return values
