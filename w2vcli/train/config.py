"""Training configuration: dataclasses, per-preset defaults, TOML files, the resolved config.

Precedence, lowest first: the dataclass defaults, the preset's training defaults
(`preset_defaults`), the run's own saved `config.toml` when resuming, a `--config FILE.toml`,
then command-line options. A `[model]` table overrides fields of the model preset's
`ModelConfig` (see `w2vcli/model/config.py`).

With `--init CKPT` the checkpoint's ModelConfig replaces the preset's, its width picks the
training defaults (`preset_for_width`), and for `pretrain --init` only `TRAINING_FIELDS` may
differ from it (`continued_config`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from w2vcli.cpu import PRECISIONS
from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig, check_fields, get_preset
from w2vcli.utils import atomic_open, warn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]



class TaskKind(StrEnum):
    """What a training run does: the config class, the task (w2vcli/train/tasks.py), the preset defaults."""

    PRETRAIN = "pretrain"
    FINETUNE = "finetune"


SCRATCH = ("none", "scratch")  # the --init values that mean random weights (fine-tuning from a preset)


def from_scratch(init: str) -> bool:
    return init.lower() in SCRATCH


class LrSchedule(StrEnum):
    POLYNOMIAL = "polynomial"  # fairseq's polynomial_decay (pretraining's)
    TRI_STAGE = "tri_stage"  # fairseq's tri_stage (fine-tuning's default)


@dataclass
class TrainConfig:
    """What both `w2v pretrain` and `w2v finetune` share."""

    train: str = ""  # training manifest (.jsonl or fairseq .tsv)
    valid: str = ""  # validation manifest ("" = no validation)
    out: str = ""  # output folder: last.pt, best.pt, metrics.jsonl, config.toml
    preset: str = "small"  # model preset (tiny, small, base, large)
    model: dict = field(default_factory=dict)  # overrides of ModelConfig fields ([model] table)
    # steps and batches
    max_updates: int = 20000  # stop after this many optimizer updates
    max_tokens: int = 400_000  # audio samples per batch per device, padding included
    max_sample_size: int = 250_000  # pretraining: crop longer audio; finetune: skip longer audio
    min_sample_size: int = 8000  # skip shorter audio (samples)
    update_freq: int = 1  # batches per update per device (gradient accumulation)
    num_workers: int = 2  # DataLoader worker processes per device (0 = load in the main process)
    skip_bad_audio: bool = False  # leave out (and count) rows whose audio is missing or unreadable
    threads: int = -1  # intra-op CPU threads per process (-1 = usable cores / processes, 0 = torch's default)
    # optimizer (AdamW, fairseq's adam: betas 0.9/0.98, eps 1e-6, decoupled weight decay)
    lr: float = 5e-4  # peak learning rate
    warmup_updates: int = 500  # polynomial schedule's linear warmup
    schedule_updates: int = 0  # updates the LR schedule spans (0 = max_updates)
    end_lr: float = 0.0  # polynomial schedule's final learning rate
    weight_decay: float = 0.01
    adam_betas: tuple = (0.9, 0.98)
    adam_eps: float = 1e-6
    clip_norm: float = 10.0  # gradient norm clip (0 = no clipping)
    # run
    seed: int = 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 with dynamic loss scaling) | auto (w2vcli/cpu.py)
    checkpoint_activations: bool = False  # recompute each Transformer layer in backward instead of storing it
    gpus: int = 0  # CUDA processes to start (0 = CPU, or what torchrun started)
    nproc: int = 1  # CPU processes (gloo) when gpus is 0
    valid_interval: int = 1000  # validate and write best.pt every N updates (and at the end)
    save_interval: int = 0  # write last.pt every N updates (0 = valid_interval)
    log_interval: int = 50  # metrics line + metrics.jsonl row every N updates
    max_bad_updates: int = 10  # stop after this many non-finite steps in a row
    resume: bool = False  # continue from OUT/last.pt

    task: ClassVar[TaskKind]  # each config class says which

    def check(self) -> None:
        """Raise W2VError naming the option at fault."""
        if not self.train:
            raise W2VError("--train is required (--resume takes it from OUT/config.toml)")
        if not self.out:
            raise W2VError("--out is required")
        if self.precision not in PRECISIONS:
            raise W2VError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("max_updates", "max_tokens", "update_freq", "log_interval", "valid_interval", "nproc"):
            if getattr(self, name) < 1:
                raise W2VError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.gpus < 0 or self.num_workers < 0:
            raise W2VError("--gpus and --num-workers cannot be negative")
        if self.threads < -1:
            raise W2VError(f"--threads must be 0 (torch's default) or more, got {self.threads}")
        if self.lr <= 0:
            raise W2VError(f"--lr must be positive, got {self.lr}")

    @property
    def total_updates(self) -> int:
        return self.schedule_updates or self.max_updates

    def schedule(self) -> PolynomialDecay | TriStage:
        """The learning rate per update that the engine follows."""
        return PolynomialDecay(self.lr, self.warmup_updates, self.total_updates, self.end_lr)

    @property
    def frozen_updates(self) -> int:
        """Updates at the start that train only part of the model (fine-tuning's output layer)."""
        return 0


@dataclass
class PretrainConfig(TrainConfig):
    """`w2v pretrain`: contrastive + diversity loss; the Gumbel temperature schedule is the
    model's (`[model]` gumbel_start / gumbel_end / gumbel_decay)."""

    init: str = ""  # continue from this pretraining checkpoint (w2v .pt, HF dir, fairseq .pt); "" = preset

    task: ClassVar[TaskKind] = TaskKind.PRETRAIN


@dataclass
class FinetuneConfig(TrainConfig):
    """`w2v finetune`: CTC on labelled audio from a pretrained model."""

    init: str = ""  # pretrained checkpoint (w2v .pt, Hugging Face dir, fairseq .pt) or "none"
    vocab: str = ""  # "" (--init's, else prepare's vocab.json beside train, else letters), "letters", a file
    text_rules: str = ""  # text_rules.json ("" = the one beside the training manifest, else English)
    train_spm: int = 0  # train a sentencepiece model of this many units on the transcripts
    freeze_updates: int = 0  # train only the output layer for this many updates
    freeze_feature_encoder: bool = True  # never train the conv feature encoder
    reinit_layers: int = 0  # initialise the top N Transformer layers of --init afresh (docs/train.md)
    lr_schedule: str = LrSchedule.TRI_STAGE.value  # tri_stage | polynomial (LrSchedule)
    tri_stage: tuple = (0.1, 0.4, 0.5)  # warmup / hold / decay fractions of the schedule
    mask_time_prob: float | None = None  # time masking, fairseq mask_prob (None = model preset's)
    mask_channel_prob: float | None = None  # channel-mask probability (None = model preset's)
    layer_drop: float | None = None  # Transformer layer drop (None = model preset's)
    final_dropout: float | None = None  # dropout before the output layer (None = model preset's)
    # augmentation of the training audio (w2vcli/data/augment.py); validation is never augmented
    speed_perturb: tuple = ()  # speed factors, one drawn per utterance and epoch, e.g. [0.9, 1.0, 1.1]; [] = off
    noise: str = ""  # additive noise: white | pink | brown | a folder of noise recordings; "" = off
    noise_snr: tuple = (10.0, 30.0)  # SNR range in dB against the utterance's power, drawn uniformly
    noise_prob: float = 0.5  # share of training utterances that get noise

    task: ClassVar[TaskKind] = TaskKind.FINETUNE

    @property
    def frozen_updates(self) -> int:
        return self.freeze_updates

    def schedule(self) -> PolynomialDecay | TriStage:
        if self.lr_schedule == LrSchedule.TRI_STAGE:
            return TriStage(self.lr, self.total_updates, tuple(self.tri_stage))
        return super().schedule()

    def check(self) -> None:
        super().check()
        if not self.init:
            raise W2VError("--init is required (a pretrained checkpoint, or `none` with --preset)")
        if self.reinit_layers < 0:
            raise W2VError(f"--reinit-layers must be 0 or more, got {self.reinit_layers}")
        if self.lr_schedule not in tuple(LrSchedule):
            raise W2VError(f"lr_schedule must be tri_stage or polynomial, got {self.lr_schedule!r}")
        if len(self.tri_stage) != 3 or abs(sum(self.tri_stage) - 1) > 1e-6:
            raise W2VError(f"tri_stage must be three fractions adding up to 1, got {self.tri_stage}")
        if any(not 0.5 <= s <= 2 for s in self.speed_perturb):  # beyond that, speech is hardly speech
            raise W2VError(f"--speed-perturb: speed factors must lie in [0.5, 2] (0.9 = 10% slower), got {list(self.speed_perturb)}")
        if len(self.noise_snr) != 2 or self.noise_snr[0] > self.noise_snr[1]:
            raise W2VError(f"--noise-snr must be MIN,MAX in dB with MIN <= MAX, got {list(self.noise_snr)}")
        if not 0 <= self.noise_prob <= 1:
            raise W2VError(f"--noise-prob must be between 0 and 1, got {self.noise_prob}")
        # lazy: commands read configs before torch (1.3 s) loads
        from w2vcli.data.augment import NOISE_COLOURS

        if self.noise and self.noise not in NOISE_COLOURS and not Path(self.noise).is_dir():
            raise W2VError(f"--noise {self.noise}: neither {', '.join(NOISE_COLOURS)} nor a folder")


# --- learning-rate schedules: pure functions of the update number, so they need no state of their
# own to resume (a checkpoint's "scheduler" entry records the name and numbers for reference; the
# Gumbel temperature schedule is `ModelConfig.gumbel_temperature(update)`)


@dataclass(frozen=True)
class PolynomialDecay:
    """fairseq's `polynomial_decay`: linear warmup 0 -> lr, then (1 - progress)^power down to end_lr."""

    lr: float  # peak learning rate
    warmup_updates: int
    total_updates: int  # the update at which end_lr is reached
    end_lr: float = 0.0
    power: float = 1.0

    def __call__(self, update: int) -> float:
        """Learning rate for update number `update` (1-based: the first optimizer step is 1)."""
        if self.warmup_updates and update <= self.warmup_updates:
            return self.lr * update / self.warmup_updates
        if update >= self.total_updates:
            return self.end_lr
        left = (self.total_updates - update) / max(1, self.total_updates - self.warmup_updates)
        return self.end_lr + (self.lr - self.end_lr) * left**self.power

    def state_dict(self) -> dict:
        return {"name": "polynomial", **asdict(self)}


@dataclass(frozen=True)
class TriStage:
    """fairseq's `tri_stage` (used for fine-tuning): warmup, hold, exponential decay.

    Stages take `phase_ratio` of `total_updates` (10% / 40% / 50% by default). Warmup goes
    linearly from lr·init_scale to lr; decay goes exponentially from lr to lr·final_scale, which
    is then kept.
    """

    lr: float
    total_updates: int
    phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5)
    init_scale: float = 0.01
    final_scale: float = 0.05

    def __call__(self, update: int) -> float:
        warmup, hold, decay = (int(r * self.total_updates) for r in self.phase_ratio)
        if update < warmup:
            start = self.lr * self.init_scale
            return start + (self.lr - start) * update / warmup
        update -= warmup
        if update < hold:
            return self.lr
        update -= hold
        if update <= decay and decay > 0:
            return self.lr * math.exp(math.log(self.final_scale) * update / decay)
        return self.lr * self.final_scale

    def state_dict(self) -> dict:
        return {"name": "tri_stage", **asdict(self)}


def preset_defaults(task: TaskKind, preset: str) -> dict:
    """Training defaults that go with a model preset (the paper's for base/large)."""
    if preset in ("base", "large"):
        if task is TaskKind.PRETRAIN:  # paper §4.2; 64 (base) / 128 (large) GPUs there: raise update_freq
            return {"max_updates": 400_000, "max_tokens": 1_400_000, "max_sample_size": 250_000,
                    "min_sample_size": 32_000, "lr": 5e-4 if preset == "base" else 3e-4,
                    "warmup_updates": 32_000, "clip_norm": 25.0 if preset == "large" else 10.0}
        return {"max_updates": 20_000, "max_tokens": 3_200_000, "max_sample_size": 3_200_000,
                "lr": 5e-5 if preset == "base" else 3e-5, "freeze_updates": 10_000,
                "valid_interval": 1000, "clip_norm": 0.0}
    # tiny / small: minutes on a CPU
    if task is TaskKind.PRETRAIN:
        return {"max_updates": 20_000, "max_tokens": 200_000, "max_sample_size": 48_000,
                "lr": 2e-3, "warmup_updates": 500, "valid_interval": 500}
    return {"max_updates": 5000, "max_tokens": 400_000, "max_sample_size": 400_000,
            "lr": 1e-3, "freeze_updates": 0, "valid_interval": 250}


def preset_for_width(hidden_size: int) -> str:
    """The preset whose training defaults suit a pretrained model of this Transformer width."""
    return "large" if hidden_size >= 1024 else "base" if hidden_size >= 768 else "small"


def preset_of_checkpoint(init: str) -> str:
    """`preset_for_width` of a checkpoint on disk (loads it; `w2v` itself passes the loaded config)."""
    # lazy: commands read configs before torch (1.3 s) loads
    from w2vcli.model.load import load_model

    return preset_for_width(load_model(init).config.hidden_size)


# ModelConfig fields a continued pretraining run may change: regularisation, masking, the loss
# and the Gumbel schedule. Every other field is the checkpoint's architecture (or, for
# normalize_waveform, the input its weights were trained on) and stays as the checkpoint has it.
TRAINING_FIELDS = frozenset({
    "feature_grad_mult", "dropout", "attention_dropout", "activation_dropout", "feature_dropout", "layer_drop",
    "quantizer_dropout", "num_negatives", "cross_sample_negatives", "logit_temperature", "diversity_weight",
    "feature_penalty_weight", "gumbel_start", "gumbel_end", "gumbel_decay", "mask_time_prob", "mask_time_length",
    "mask_time_min_masks", "mask_channel_prob", "mask_channel_length", "mask_channel_min_masks", "final_dropout",
})  # fmt: skip
# what a --preset is compared on against an --init checkpoint: the network's shape and layout
ARCHITECTURE_FIELDS = tuple(f.name for f in fields(ModelConfig)
                            if f.name not in TRAINING_FIELDS and f.name != "normalize_waveform")


def continued_config(checkpoint: ModelConfig, overrides: dict, where: str) -> ModelConfig:
    """`checkpoint`'s config with `[model]` training fields changed; any other change is refused."""
    config = checkpoint.replace(**overrides)
    for name in (f.name for f in fields(ModelConfig) if f.name not in TRAINING_FIELDS):
        if getattr(config, name) != getattr(checkpoint, name):
            raise W2VError(
                f"[model] {name} = {_toml_value(getattr(config, name))} contradicts {where}, which has "
                f"{name} = {_toml_value(getattr(checkpoint, name))}: continuing pretraining keeps the checkpoint's "
                f"architecture; only these fields may change: {', '.join(sorted(TRAINING_FIELDS))}"
            )
    return config


def check_preset_fits(preset: str, checkpoint: ModelConfig, where: str, model: dict | None = None) -> None:
    """Refuse a --preset whose architecture, with the `[model]` table's fields over it (the network
    the run would build without --init), is not the checkpoint's, naming the fields that differ.
    A recipe's own config therefore continues its own checkpoint."""
    want = get_preset(preset).replace(**(model or {}))
    differ = [name for name in ARCHITECTURE_FIELDS if getattr(want, name) != getattr(checkpoint, name)]
    if differ:
        first = differ[0]
        raise W2VError(
            f"--preset {preset}{' with [model]' if model else ''} contradicts --init {where}: {', '.join(differ)} "
            f"differ ({first} is {_toml_value(getattr(want, first))} in the preset, "
            f"{_toml_value(getattr(checkpoint, first))} in the checkpoint); leave --preset out: the checkpoint sets "
            "the architecture, and its width the training defaults"
        )


def _coerce(cfg_cls, name: str, value, source: str):
    """Check a value from a TOML file / saved config against the field's default type."""
    known = {f.name: f for f in fields(cfg_cls)}
    if name not in known:
        raise W2VError(f"{source}: unknown option {name!r} (known: {', '.join(sorted(known))})")
    default = known[name].default if known[name].default is not dataclasses.MISSING else known[name].default_factory()
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):  # () as default: any number of them
        if (default and len(value) != len(default)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise W2VError(f"{source}: option {name!r} must be a list of {len(default) or 'any'} numbers, got {list(value)!r}")
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if default is None or value is None or type(value) is type(default):
        return value
    raise W2VError(f"{source}: option {name!r} must be {type(default).__name__}, got {value!r}")


# options spelled as ModelConfig spells them; the old spelling is still read, with a warning
RENAMED = {"mask_prob": "mask_time_prob", "layerdrop": "layer_drop"}


def read_toml(path: str | os.PathLike, cfg_cls) -> dict:
    """Options from a TOML file, checked against `cfg_cls`'s fields (a `[model]` table is kept as is)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise W2VError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise W2VError(f"{path}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise W2VError(f"{path}: not valid TOML ({exc})") from None

    out = {}
    for name, value in raw.items():
        if name in RENAMED and RENAMED[name] in {f.name for f in fields(cfg_cls)}:
            warn(f"{path}: option {name!r} is now spelled {RENAMED[name]!r} (as in [model]); please rename it")
            name = RENAMED[name]
        out[name] = check_fields(value, f"{path}: [model]") if name == "model" else _coerce(cfg_cls, name, value, str(path))
    return out


def check_options(cfg_cls, layers: list[dict]) -> None:
    """`cfg.check()` on the options as given (defaults for the rest), before a checkpoint or torch
    is loaded, so a bad or missing option is reported at once."""
    merged = {k: v for layer in layers for k, v in layer.items() if k != "model" and v is not None}
    cfg_cls(**{k: _coerce(cfg_cls, k, v, "config") for k, v in merged.items()}).check()


def resolve(cfg_cls, preset: str | None, layers: list[dict], init_config: ModelConfig | None = None):
    """Build a config: defaults < preset defaults < each of `layers` in order (None values skipped).

    `init_config`: the ModelConfig of the --init checkpoint the run starts from (None when it
    resumes, or has no --init). Without an explicit preset its width picks the training
    defaults; for pretraining, --preset and `[model]` are checked against it.
    """
    merged: dict = {}
    model: dict = {}
    for layer in layers:
        for k, v in layer.items():
            if k == "model":
                model.update(v or {})
            elif v is not None:
                merged[k] = v
    task = cfg_cls.task
    preset = merged.get("preset") or preset
    init = merged.get("init") or ""
    if init_config is not None:
        if task is TaskKind.PRETRAIN:
            if preset:
                check_preset_fits(preset, init_config, init, model)
            continued_config(init_config, model, f"--init {init}")
        preset = preset or preset_for_width(init_config.hidden_size)
    elif not preset and task is TaskKind.FINETUNE and init and not from_scratch(init):
        preset = preset_of_checkpoint(init)  # a caller that did not load the checkpoint
    preset = preset or "small"
    values = {**preset_defaults(task, preset), **merged, "preset": preset, "model": model}
    values = {k: _coerce(cfg_cls, k, v, "config") for k, v in values.items()}
    return cfg_cls(**values)


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as TOML (None values left out), readable again by `--config`."""
    d = to_dict(cfg)
    d.pop("resume", None)
    lines = [f"# w2v {cfg.task} config, resolved (defaults < preset < --config < options)"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in d.items() if k != "model" and v is not None]
    if d["model"]:
        lines += ["", "[model]"] + [f"{k} = {_toml_value(v)}" for k, v in d["model"].items() if v is not None]
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
