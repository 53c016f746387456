"""`w2v pretrain`: self-supervised wav2vec 2.0 pretraining on unlabelled audio.

The options shared with `w2v finetune` are defined here as `Annotated` aliases; every one
defaults to None, meaning "not given", so a `--config` file or the preset decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.commands.layout import click

Manifest = Annotated[Optional[Path], typer.Option("--train", help="Training manifest (.jsonl or fairseq .tsv). Required, except with --resume (OUT/config.toml names it).", exists=True, dir_okay=False, rich_help_panel="Data")]
Valid = Annotated[Optional[Path], typer.Option("--valid", help="Validation manifest: validated every --valid-interval updates; best.pt keeps the best.", exists=True, dir_okay=False, rich_help_panel="Data")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder: last.pt, best.pt, metrics.jsonl, config.toml.", file_okay=False, rich_help_panel="Data")]
Preset = Annotated[Optional[str], typer.Option("--preset", help="Model preset: tiny, small, base, large (default small).", rich_help_panel="Model and units")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TOML file of options (overrides the preset; options given here override it). A [model] table changes model fields.", exists=True, dir_okay=False, rich_help_panel="Data")]
MaxUpdates = Annotated[Optional[int], typer.Option("--max-updates", help="Stop after this many optimizer updates.", min=1, rich_help_panel="Schedule")]
MaxTokens = Annotated[Optional[int], typer.Option("--max-tokens", help="Audio samples per batch per device, padding included (16000 = 1 s).", min=1, rich_help_panel="Batches")]
MaxSampleSize = Annotated[Optional[int], typer.Option("--max-sample-size", help="Pretraining: crop longer audio to this many samples at a random offset; fine-tuning: skip longer audio.", min=1, rich_help_panel="Batches")]
UpdateFreq = Annotated[Optional[int], typer.Option("--update-freq", help="Batches accumulated per update (gradient accumulation).", min=1, rich_help_panel="Batches")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.", rich_help_panel="Schedule")]
Warmup = Annotated[Optional[int], typer.Option("--warmup-updates", help="Linear warmup updates of the polynomial schedule.", min=0, rich_help_panel="Schedule")]
ScheduleUpdates = Annotated[Optional[int], typer.Option("--schedule-updates", help="Updates the LR schedule spans (default: --max-updates). Fix it to stop early and --resume later with the same schedule.", min=1, rich_help_panel="Schedule")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Random seed (data order, crops, init, masks).", rich_help_panel="Run")]
Precision = Annotated[Optional[str], typer.Option("--precision", help="fp32, bf16 (autocast), fp16 (autocast + dynamic loss scaling) or auto (CPU: bf16 where native, else fp32; CUDA: bf16, else fp16).", rich_help_panel="Run")]
Gpus = Annotated[Optional[int], typer.Option("--gpus", help="Start one process per GPU (NCCL). Under torchrun, leave it out.", min=0, rich_help_panel="Run")]
Nproc = Annotated[Optional[int], typer.Option("--nproc", help="CPU processes (gloo) when not using GPUs.", min=1, rich_help_panel="Run")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt exactly (its config.toml, then --config and these options, apply; --train and --valid may be left out).", rich_help_panel="Run")]
ValidInterval = Annotated[Optional[int], typer.Option("--valid-interval", help="Validate, and write checkpoints, every N updates.", min=1, rich_help_panel="Run")]
LogInterval = Annotated[Optional[int], typer.Option("--log-interval", help="A metrics line and metrics.jsonl row every N updates.", min=1, rich_help_panel="Run")]
NumWorkers = Annotated[Optional[int], typer.Option("--num-workers", help="DataLoader worker processes per device (0 = main process).", min=0, rich_help_panel="Run")]
CheckpointActivations = Annotated[Optional[bool], typer.Option("--checkpoint-activations/--no-checkpoint-activations", help="Recompute each Transformer layer in backward instead of storing its activations: less memory (longer utterances, bigger batches) for about one more forward pass.", rich_help_panel="Run")]
ClipNorm = Annotated[Optional[float], typer.Option("--clip-norm", help="Clip the gradient norm to this (0 = off).", min=0, rich_help_panel="Regularisation")]
SkipBadAudio = Annotated[Optional[bool], typer.Option("--skip-bad-audio", help="Leave out (and count) manifest rows whose audio is missing or unreadable, instead of stopping before training.", show_default=False, rich_help_panel="Data")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads per training process (default: the usable cores shared among --nproc processes, or OMP_NUM_THREADS; 0 = torch's default).", min=0, rich_help_panel="Run")]


def common_layer(**options) -> dict:
    """The options the user gave (None = not given), as config field names."""
    return {k: (str(v.resolve()) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}


def run(cfg_cls, preset: str | None, config: Path | None, out: Path, resume: bool, cli: dict) -> None:
    """Resolve the config (preset < saved run config on --resume < --config < options) and train.

    The --init checkpoint is loaded here, once: its config sets the defaults and is checked
    against the options, and the same model starts the run. A resumed run reads OUT/last.pt instead.
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.train.config import check_options, read_toml, resolve

    layers = []
    saved = out / "config.toml"
    if resume and saved.is_file():
        layers.append(read_toml(saved, cfg_cls))
    if config is not None:
        layers.append(read_toml(config, cfg_cls))
    layers.append({**cli, "out": str(out.resolve()), "resume": resume})
    if not any(layer.get("train") for layer in layers):  # optional only for a run that names it
        ctx = click.globals.get_current_context()
        raise click.exceptions.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == "train"))
    check_options(cfg_cls, layers)  # before torch loads: a bad option is reported at once

    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.train.engine import refuse_to_replace, train
    from w2vcli.train.tasks import load_init

    refuse_to_replace(out, resume)  # before a large --init checkpoint is loaded
    init = next((layer["init"] for layer in reversed(layers) if layer.get("init")), "")
    init_model = load_init(cfg_cls.task, init) if init and not resume else None
    train(resolve(cfg_cls, preset, layers, init_model.config if init_model is not None else None), init_model)


def pretrain(
    out: Out,
    train: Manifest = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Continue pretraining this checkpoint: a w2v pretraining .pt, a Hugging Face Wav2Vec2ForPreTraining folder, or a fairseq wav2vec 2.0 pretraining .pt. Keeps its architecture; fresh optimizer and schedule.", rich_help_panel="Model and units")] = None,
    valid: Valid = None,
    preset: Preset = None,
    config: ConfigFile = None,
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
    """Pretrain a wav2vec 2.0 model on unlabelled audio (contrastive + diversity loss).

    Writes OUT/last.pt (every --valid-interval updates, at the end, and on SIGTERM/Ctrl-C),
    OUT/best.pt (lowest validation loss), OUT/metrics.jsonl and OUT/config.toml. An OUT that
    holds a run is refused unless --resume; --resume with no checkpoint yet starts afresh.
    A run that stays at chance, collapses its codebook or blows up its features gets a warning
    naming the fix (docs/train.md, Diagnostics).

    \b
    Example:
      w2v pretrain --train data/train.jsonl --valid data/dev.jsonl --preset small --out exp/pt
      w2v pretrain --init wav2vec2-base/ --train data/mine.jsonl --out exp/cpt   # continue a published model
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.train.config import PretrainConfig

    cli = common_layer(train=train, valid=valid, init=init, preset=preset, max_updates=max_updates, max_tokens=max_tokens,
                       max_sample_size=max_sample_size, update_freq=update_freq, lr=lr,
                       warmup_updates=warmup_updates, schedule_updates=schedule_updates, clip_norm=clip_norm,
                       seed=seed, precision=precision, gpus=gpus, nproc=nproc, valid_interval=valid_interval,
                       log_interval=log_interval, num_workers=num_workers, skip_bad_audio=skip_bad_audio,
                       threads=threads, checkpoint_activations=checkpoint_activations)
    run(PretrainConfig, preset, config, out, resume, cli)
