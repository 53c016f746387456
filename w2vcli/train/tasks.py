"""What differs between pretraining and fine-tuning: the model, the data, the loss, validation.

The engine (w2vcli/train/engine.py) drives any `Task`:

    model                      the bare model (the engine wraps it in DDP)
    train_loader()             (Loader, BucketBatchSampler) for this rank
    valid_loader()             a Loader over this rank's share of the validation set
    step(model, batch, u)      StepOutput: the loss summed over the batch, what the gradient is
                               divided by, and the task's StepStats (sums: they add up over
                               micro-batches, updates and processes; `summary()` makes metrics)
    before_step(model, u)      last look at the gradients before the optimizer step
    log_fields(u)              the task's own fields in a metrics row (pretraining: temperature)
    findings                   what the data checks found before update 1 (w2vcli/train/diagnostics.py)
    validate(model, loader)    Validation: metrics and a score compared in order (lower is better)
    save_assets(out)           files beside the checkpoints (fine-tuning: vocab.json, text rules)

A batch is a `w2vcli.data.dataset.Batch`: ids, wav [B,S], lengths [B] and, for CTC, targets
[B,L], target_lengths [B]. A task's statistics say how they are shown (`StepStats.SHOWN`, `BAR`;
validation's `Validation.shown`), so w2vcli/train/progress.py renders any task's.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Protocol

import torch

from w2vcli.audio import SAMPLE_RATE
from w2vcli.data.augment import Augment, speed_length
from w2vcli.data.dataset import AudioDataset, Batch, BucketBatchSampler, Loader, filter_rows, make_loader, row_length
from w2vcli.data.manifest import check_audio, read_manifest
from w2vcli.decode.ctc import GreedyDecoder
from w2vcli.errors import W2VError
from w2vcli.model.checkpoint import read_model_config
from w2vcli.model.config import get_preset
from w2vcli.model.load import load_model
from w2vcli.model.losses import chance_correct
from w2vcli.model.masking import padding_mask
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, ctc_loss
from w2vcli.score import ErrorCounts, ScoreReport, score_texts
from w2vcli.text import RULES_FILE, SPECIALS
from w2vcli.train.config import FinetuneConfig, PretrainConfig, TaskKind, TrainConfig, continued_config, from_scratch
from w2vcli.train.diagnostics import Finding, drop_unalignable
from w2vcli.train.distributed import Dist, sum_over_processes
from w2vcli.train.vocab import build_vocab, encode_targets, normalize_rows, resolve_text_rules
from w2vcli.utils import count_text, log


def make_task(cfg: TrainConfig, dist: Dist, init_model: torch.nn.Module | None = None) -> Task:
    """The task of `cfg`; `init_model` is the --init model if this process loaded it already."""
    return TASKS[cfg.task](cfg, dist, init_model)


def load_init(task: TaskKind | str, init: str):
    """The --init model of a `task` run, loaded once: the command reads its config (the training
    defaults, the checks) and the task takes its weights.

    Returns None for fine-tuning's `none` / `scratch`. Continued pretraining needs the whole
    pretraining model: a CTC or encoder-only checkpoint is refused, saying why.
    """
    task = TaskKind(task)
    if task is TaskKind.FINETUNE and from_scratch(init):
        return None
    if not Path(init).exists():
        raise W2VError(f"--init {init}: no such file or directory")
    model = load_model(init)
    if not isinstance(model, torch.nn.Module):
        raise W2VError(f"--init {init}: an exported ONNX model holds no trainable weights; use the checkpoint it came from")
    if task is TaskKind.PRETRAIN and not isinstance(model, Wav2Vec2ForPreTraining):
        what = ("a fine-tuned CTC model" if isinstance(model, Wav2Vec2ForCTC)
                else "an encoder-only model (Hugging Face Wav2Vec2Model)")
        raise W2VError(
            f"--init {init}: {what} has no quantizer and no projections (project_q, project_hid), so the "
            "contrastive loss cannot be continued from it; give the pretraining checkpoint it came from "
            "(a w2v pretrain .pt, a Wav2Vec2ForPreTraining directory, a fairseq wav2vec2 pretraining .pt)"
        )
    return model


@dataclass
class StepStats:
    """Base of a task's statistics: sums that add up over micro-batches, updates and processes."""

    SHOWN: ClassVar[dict[str, str]] = {"loss": ".3f"}  # summary() fields in a printed metric line: format
    BAR: ClassVar[dict[str, str]] = {"loss": "loss {:.3f}"}  # summary() fields on the progress bar: template

    loss: float  # the loss summed over the batch
    sample_size: float  # what the gradient is divided by (masked frames, or utterances)
    nsentences: float  # utterances
    nsamples: float  # audio samples, padding excluded

    def __add__(self, other):
        return type(self)(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def summary(self) -> dict[str, float]:
        """The metric values of these sums (a metrics.jsonl row's task fields; validation's metrics)."""
        return {"loss": self.loss / max(self.sample_size, 1.0)}

    def totals(self) -> dict[str, float]:
        """Counts a training row records beside the metrics (not validation's)."""
        return {}


@dataclass
class PretrainStats(StepStats):
    SHOWN: ClassVar[dict[str, str]] = {"loss": ".3f", "contrastive": ".3f", "diversity": ".3f", "accuracy": ".3f",
                                       "chance": ".3f", "code_perplexity": ".1f"}
    BAR: ClassVar[dict[str, str]] = {"loss": "loss {:.3f}", "accuracy": "accu {:.3f}", "code_perplexity": "ppl {:.1f}"}

    contrastive: float  # contrastive loss, summed over masked frames
    diversity: float  # diversity loss × masked frames
    correct: float  # masked frames whose true target scored highest
    code_perplexity: float  # summed over batches (averaged by `batches`)
    prob_perplexity: float
    batches: float
    chance: float  # masked frames random scores would get right (`losses.chance_correct`)
    feature_penalty: float  # mean squared conv feature, summed over batches

    def summary(self) -> dict[str, float]:
        n, b = max(self.sample_size, 1.0), max(self.batches, 1.0)
        return {"loss": self.loss / n, "contrastive": self.contrastive / n, "diversity": self.diversity / n,
                "accuracy": self.correct / n, "chance": self.chance / n, "code_perplexity": self.code_perplexity / b,
                "prob_perplexity": self.prob_perplexity / b, "feature_rms": math.sqrt(self.feature_penalty / b)}

    def totals(self) -> dict[str, float]:
        return {"num_masked": self.sample_size}


@dataclass
class CTCStats(StepStats):
    SHOWN: ClassVar[dict[str, str]] = {"loss": ".3f", "blank": ".3f"}

    ntokens: float  # target units
    frames: float  # output frames, padding excluded
    emitted: float  # frames whose greedy choice is not the blank

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "blank": 1.0 - self.emitted / max(self.frames, 1.0)}


@dataclass
class StepOutput:
    loss: torch.Tensor  # summed over the batch; the engine divides the gradient by the total sample size
    stats: StepStats


@dataclass
class Validation:
    metrics: dict[str, float]  # written as valid_<name>
    score: list[float]  # compared in order, lower is better: best.pt
    shown: dict[str, str]  # metrics printed in the metric line (as valid_<name>): format


@dataclass
class CTCValidationSums:
    """CTC validation sums: loss, and `w2v score`'s word and character counts of greedy decoding."""

    loss: float = 0.0
    sample_size: float = 0.0
    words: ErrorCounts = field(default_factory=ErrorCounts)
    chars: ErrorCounts = field(default_factory=ErrorCounts)


class Task(Protocol):
    """What the engine needs from a task (see the module docstring)."""

    model: torch.nn.Module
    find_unused_parameters: bool  # for DDP: parameters some steps leave unused (layer drop, mask embedding)
    findings: list[Finding]  # what the data checks found before update 1
    shown: dict[str, str]  # fields of its metrics rows (stats and log_fields) a printed line shows: format

    def train_loader(self) -> tuple[Loader, BucketBatchSampler]: ...
    def valid_loader(self) -> Loader: ...
    def step(self, model: torch.nn.Module, batch: Batch, update: int) -> StepOutput: ...
    def before_step(self, model: torch.nn.Module, update: int) -> None: ...
    def log_fields(self, update: int) -> dict[str, float]: ...
    def validate(self, model: torch.nn.Module, loader: Loader) -> Validation: ...
    def save_assets(self, out: Path) -> None: ...


def saved_model_config(cfg: TrainConfig):
    """The ModelConfig of the run's last.pt when resuming from one, else None."""
    last = Path(cfg.out) / "last.pt"
    return read_model_config(last) if cfg.resume and last.is_file() else None


class ManifestTask:
    """What both tasks share: the manifests' rows (checked up front), the loaders, no-op hooks."""

    find_unused_parameters = False
    crop = False  # crop long audio (pretraining) instead of skipping it (fine-tuning)
    augment: Augment | None = None  # of the training audio (fine-tuning's --speed-perturb, --noise)

    def __init__(self, cfg: TrainConfig, dist: Dist):
        self.cfg, self.dist = cfg, dist
        max_size = cfg.max_sample_size if not self.crop else None
        fits = self.augment.longest_input(cfg.max_tokens) if self.augment else cfg.max_tokens  # slowed down too
        self.train_rows = filter_rows(self._read(cfg.train), cfg.min_sample_size,
                                      min(max_size, fits) if max_size else None, cfg.train)
        self.valid_rows = (filter_rows(self._read(cfg.valid), cfg.min_sample_size,
                                       max_size, cfg.valid) if cfg.valid else [])
        self.train_targets = self.valid_targets = None  # CTC: token ids per row
        self.findings: list[Finding] = []  # what the data checks found before update 1 (the engine reports them)

    def _read(self, manifest: str) -> list[dict]:
        """Manifest rows whose audio was checked up front (not hours into training)."""
        rows = read_manifest(manifest)
        return check_audio(rows, manifest, skip=self.cfg.skip_bad_audio, quiet=not self.dist.main) if rows else rows

    def _dataset(self, rows: list[dict], targets: list[list[int]] | None,
                 augment: Augment | None = None) -> AudioDataset:
        return AudioDataset(rows, targets, self.cfg.max_sample_size if self.crop else None,
                            seed=self.cfg.seed, augment=augment)

    def train_loader(self) -> tuple[Loader, BucketBatchSampler]:
        ds = self._dataset(self.train_rows, self.train_targets, self.augment)
        sampler = BucketBatchSampler(ds.sizes, self.cfg.max_tokens, self.cfg.seed, shuffle=True,
                                     rank=self.dist.rank, world_size=self.dist.world_size,
                                     epoch_sizes=ds.epoch_sizes if ds.speed_perturbed else None)
        return make_loader(ds, sampler, self.cfg.num_workers, self.dist.device.type == "cuda"), sampler

    def valid_loader(self) -> Loader:
        ds = self._dataset(self.valid_rows, self.valid_targets)
        sampler = BucketBatchSampler(ds.sizes, self.cfg.max_tokens, self.cfg.seed, shuffle=False,
                                     rank=self.dist.rank, world_size=self.dist.world_size, drop_last=False)
        return make_loader(ds, sampler, min(self.cfg.num_workers, 1))

    def before_step(self, model: torch.nn.Module, update: int) -> None:
        pass

    def summarize(self, units: str) -> None:
        """One line before training: model size and units, where it starts, what an update holds, how many."""
        if not self.dist.main:
            return

        cfg, c = self.cfg, self.model.config
        params = count_text(sum(p.numel() for p in self.model.parameters()))
        start = (f"resuming {Path(cfg.out) / 'last.pt'}" if saved_model_config(cfg) is not None
                 else f"from {cfg.init}" if cfg.init and not from_scratch(cfg.init)
                 else "random init")
        seconds = cfg.max_tokens * cfg.update_freq * self.dist.world_size / SAMPLE_RATE
        log(f"{cfg.task}: {params} parameters ({c.num_layers} layers × {c.hidden_size} wide, {start}; "
            f"training defaults of preset {cfg.preset}), {units}; up to {seconds:.0f} s of audio per update "
            f"({cfg.max_tokens} samples × {cfg.update_freq} × {self.dist.world_size} process(es)), "
            f"{cfg.max_updates} updates, peak lr {cfg.lr:g}")

    def log_fields(self, update: int) -> dict[str, float]:
        return {}

    def save_assets(self, out: Path) -> None:
        pass


class PretrainTask(ManifestTask):
    """Contrastive + diversity loss + feature penalty; Gumbel temperature annealed per update.

    The model: on --resume, last.pt's architecture (the engine loads its weights); with --init,
    the checkpoint's model with `[model]` training fields changed; otherwise the preset's.
    """

    crop = True
    shown = {**PretrainStats.SHOWN, "temperature": ".3f"}

    def __init__(self, cfg: PretrainConfig, dist: Dist, init_model: torch.nn.Module | None = None):
        super().__init__(cfg, dist)

        saved = saved_model_config(cfg)
        if saved is not None:
            self.model = Wav2Vec2ForPreTraining(continued_config(saved, cfg.model, str(Path(cfg.out) / "last.pt")))
        elif cfg.init:
            pretrained = init_model if init_model is not None else load_init(TaskKind.PRETRAIN, cfg.init)
            config = continued_config(pretrained.config, cfg.model, f"--init {cfg.init}")
            self.model = Wav2Vec2ForPreTraining(config)  # built anew: dropout and layer drop are set at construction
            self.model.load_state_dict(pretrained.state_dict())
        else:
            self.model = Wav2Vec2ForPreTraining(get_preset(cfg.preset).replace(**cfg.model))
        self.model.wav2vec2.checkpoint_activations(cfg.checkpoint_activations)
        self.find_unused_parameters = self.model.config.layer_drop > 0
        c = self.model.config
        self.summarize(f"{c.num_codebooks}×{c.codebook_size} codewords")

    def temperature(self, update: int) -> float:
        return self.model.config.gumbel_temperature(update)

    def log_fields(self, update: int) -> dict[str, float]:
        return {"temperature": self.temperature(update)}

    def step(self, model: torch.nn.Module, batch: Batch, update: int) -> StepOutput:
        out = model(batch.wav, batch.lengths, temperature=self.temperature(update))
        chance = chance_correct(out.logits, out.mask_indices)
        # one copy to the host (one device sync) for every statistic
        loss, n, closs, dloss, correct, code_ppl, prob_ppl, chance, penalty, nsamples = torch.stack([
            t.detach().double() for t in (out.loss, out.num_masked, out.contrastive_loss, out.diversity_loss,
                                          out.num_correct, out.code_perplexity, out.prob_perplexity, chance,
                                          out.feature_penalty, batch.lengths.sum())]).tolist()
        stats = PretrainStats(
            loss=loss, sample_size=n, nsentences=float(len(batch.ids)), nsamples=nsamples, contrastive=closs,
            diversity=dloss * n, correct=correct, code_perplexity=code_ppl, prob_perplexity=prob_ppl, batches=1.0,
            chance=chance, feature_penalty=penalty)
        return StepOutput(out.loss, stats)

    def validate(self, model: torch.nn.Module, loader: Loader) -> Validation:
        sums = PretrainStats(*[0.0] * len(fields(PretrainStats)))
        for batch in loader:
            sums += self.step(model, batch.to(self.dist.device), 0).stats
        metrics = sum_over_processes(sums, self.dist).summary()
        return Validation(metrics, [metrics["loss"]], {"loss": ".3f", "accuracy": ".3f", "code_perplexity": ".1f"})


class FinetuneTask(ManifestTask):
    """CTC on letters or sentencepiece units, from a pretrained model (or random init)."""

    find_unused_parameters = True
    shown = CTCStats.SHOWN

    def __init__(self, cfg: FinetuneConfig, dist: Dist, init_model: torch.nn.Module | None = None):
        self.augment = Augment.from_options(cfg.seed, cfg.speed_perturb, cfg.noise, cfg.noise_snr, cfg.noise_prob,
                                            quiet=not dist.main)
        if self.augment is not None and dist.main:
            log(self.augment.describe(cfg.max_tokens))
        super().__init__(cfg, dist)

        saved = saved_model_config(cfg)
        if saved is None and init_model is None and not from_scratch(cfg.init):
            init_model = load_init(TaskKind.FINETUNE, cfg.init)  # its vocabulary may be the run's
        # every transcript, training and validation, goes through the run's text rules
        self.text_rules = resolve_text_rules(cfg, getattr(init_model, "text_rules", None))
        self.train_rows = normalize_rows(self.train_rows, self.text_rules)
        self.valid_rows = normalize_rows(self.valid_rows, self.text_rules)
        self.vocab, self.spm = build_vocab(cfg, self.train_rows, self.text_rules, getattr(init_model, "vocab", None))
        self.decoder = GreedyDecoder(self.vocab)  # validation's WER and CER
        if saved is not None:  # the engine loads the weights; skip --init

            self.model = Wav2Vec2ForCTC(saved, self.vocab, self.text_rules)
        else:
            self.model = build_ctc_model(cfg, self.vocab, self.text_rules, init_model, quiet=not dist.main)
        if cfg.freeze_feature_encoder:
            self.model.freeze_feature_encoder()
        self.model.wav2vec2.checkpoint_activations(cfg.checkpoint_activations)
        self._head = {id(p) for p in self.model.head.parameters()}
        fastest = max(self.augment.speeds, default=1.0) if self.augment else 1.0  # speed-up shortens the audio
        self.train_rows, self.train_targets = self._alignable(self.train_rows, cfg.train, "transcripts_too_long",
                                                              fastest)
        if self.valid_rows:
            self.valid_rows, self.valid_targets = self._alignable(self.valid_rows, cfg.valid,
                                                                  "valid_transcripts_too_long")
        self.summarize(f"{len(self.vocab)} units ({self.vocab.units})")

    def _alignable(self, rows: list[dict], manifest: str, name: str,
                   speed: float = 1.0) -> tuple[list[dict], list[list[int]]]:
        """`rows` whose transcripts CTC can align with their audio's frames (at `speed`, the fastest
        speed perturbation), and their token ids."""
        targets = encode_targets(rows, self.vocab, self.spm)
        samples = speed_length([row_length(r) for r in rows], max(speed, 1.0))
        frames = self.model.wav2vec2.frame_lengths(torch.from_numpy(samples)).tolist()
        rows, targets, finding = drop_unalignable(rows, targets, frames, manifest, name)
        if finding is not None:
            self.findings.append(finding)
        return rows, targets

    def save_assets(self, out: Path) -> None:
        self.vocab.save(out / "vocab.json")
        self.text_rules.save(out / RULES_FILE)

    def before_step(self, model: torch.nn.Module, update: int) -> None:
        if update < self.cfg.freeze_updates:  # only the output layer learns at first
            for p in model.parameters():
                if id(p) not in self._head:
                    p.grad = None

    def _forward(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed CTC loss, logits [B,T,V], frame lengths [B])."""
        logits, frame_lengths = model(batch.wav, batch.lengths)  # [B,T,V], [B]
        return ctc_loss(logits, frame_lengths, batch.targets, batch.target_lengths), logits, frame_lengths

    def step(self, model: torch.nn.Module, batch: Batch, update: int) -> StepOutput:
        loss, logits, frame_lengths = self._forward(model, batch)
        with torch.no_grad():  # greedy output's non-blank frames, for the all-blank diagnostic
            emitted = ((logits.argmax(dim=-1) != 0) & padding_mask(frame_lengths, logits.shape[1])).sum()
        # one copy to the host (one device sync) for every statistic
        value, nsamples, ntokens, frames, emitted = torch.stack([
            t.detach().double() for t in (loss, batch.lengths.sum(), batch.target_lengths.sum(),
                                          frame_lengths.sum(), emitted)]).tolist()
        n = float(len(batch.ids))
        stats = CTCStats(loss=value, sample_size=n, nsentences=n, nsamples=nsamples, ntokens=ntokens,
                         frames=frames, emitted=emitted)
        return StepOutput(loss, stats)

    def validate(self, model: torch.nn.Module, loader: Loader) -> Validation:
        """Loss, WER and CER of greedy decoding, scored as `w2v score` scores (the run's text
        rules); the score ranks by the rate `score` quotes: CER for unspaced scripts."""
        texts = {r["id"]: r.get("text", "") for r in self.valid_rows}
        hyps: dict[str, str] = {}
        sums = CTCValidationSums()
        for batch in loader:
            batch = batch.to(self.dist.device)
            loss, logits, frame_lengths = self._forward(model, batch)
            sums.loss += float(loss)
            sums.sample_size += float(len(batch.ids))
            best = logits.float().cpu().numpy()
            for uid, row, n in zip(batch.ids, best, frame_lengths.tolist()):
                hyps[uid] = self.decoder.decode(row[:n]).text
        report = score_texts({k: texts[k] for k in hyps}, hyps, rules=self.text_rules)
        sums.words, sums.chars = report.words, report.chars
        s = sum_over_processes(sums, self.dist)
        loss = s.loss / max(s.sample_size, 1.0)
        report = ScoreReport([], words=s.words, chars=s.chars, unspaced=report.unspaced)  # all processes
        return Validation({"loss": loss, "wer": report.wer, "cer": report.cer}, [*report.ranking(), loss],
                          {"loss": ".3f", "wer": ".4f", "cer": ".4f"})


TASKS: dict[TaskKind, type[ManifestTask]] = {TaskKind.PRETRAIN: PretrainTask, TaskKind.FINETUNE: FinetuneTask}


def build_ctc_model(cfg: FinetuneConfig, vocab, text_rules=None, pretrained=None, quiet: bool = False):
    """A CTC model for `vocab`: from --init (w2v / Hugging Face / fairseq; `pretrained` if already
    loaded) or, with `none`, a preset. A CTC --init passes on the head rows of the units both
    vocabularies hold (`carry_head`), said in one line unless `quiet`."""
    overrides = {k: v for k, v in {"mask_time_prob": cfg.mask_time_prob, "mask_channel_prob": cfg.mask_channel_prob,
                                   "layer_drop": cfg.layer_drop, "final_dropout": cfg.final_dropout}.items()
                 if v is not None}
    overrides.update(cfg.model)
    if cfg.freeze_feature_encoder:
        overrides["feature_grad_mult"] = 0.0
    if from_scratch(cfg.init):
        return Wav2Vec2ForCTC(get_preset(cfg.preset).replace(**overrides), vocab, text_rules)
    if pretrained is None:
        pretrained = load_init(TaskKind.FINETUNE, cfg.init)  # a pretraining model, an encoder, or a CTC model
    encoder = getattr(pretrained, "wav2vec2", pretrained)  # Wav2Vec2Model
    model = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab, encoder.config.replace(**overrides), text_rules)
    said = carry_head(model, pretrained)
    if cfg.reinit_layers:
        layers = model.wav2vec2.encoder.layers
        if cfg.reinit_layers > len(layers):
            raise W2VError(f"--reinit-layers {cfg.reinit_layers}: --init {cfg.init} has only {len(layers)} Transformer layers")
        model.wav2vec2.encoder.reinit_top(cfg.reinit_layers)
        top = "all" if cfg.reinit_layers == len(layers) else f"the top {cfg.reinit_layers}"
        said += f"; {top} of its {len(layers)} Transformer layers initialised afresh (--reinit-layers)"
    if not quiet:
        log(f"--init {cfg.init}: {said}")
    return model.cpu()


def carry_head(model, pretrained) -> str:
    """Copy into `model`'s fresh head the rows of `pretrained`'s trained head (a CTC model) whose
    units `model`'s vocabulary holds too, matched by token, so a reordered or extended vocabulary
    keeps what was learnt; the other rows stay freshly initialised. Returns the line that says
    what was kept."""
    old, new = getattr(pretrained, "vocab", None), model.vocab
    n = len(new)
    if old is None or not hasattr(pretrained, "head"):
        return f"new head: {n} units (the checkpoint has no CTC head)"
    if old.units != new.units:
        return f"new head: {n} units ({new.units}), none shared with the checkpoint's {len(old)} {old.units}"
    pairs = [(i, old.index[t]) for i, t in enumerate(new.tokens) if t in old.index]
    if not any(new.tokens[i] not in SPECIALS for i, _ in pairs):
        return f"new head: {n} units, none shared with the checkpoint's {len(old)}{_case_hint(old, new)}"
    rows, old_rows = torch.tensor([i for i, _ in pairs]), torch.tensor([j for _, j in pairs])
    with torch.no_grad():
        for mine, theirs in ((model.head.weight, pretrained.head.weight), (model.head.bias, pretrained.head.bias)):
            mine[rows] = theirs[old_rows].to(mine)
    if len(pairs) == n == len(old):
        order = "" if new.tokens == old.tokens else ", rows reordered to this vocabulary"
        return f"kept the checkpoint's head ({n} units{order})"
    return (f"mapped {len(pairs)} of {n} head rows from the checkpoint's {len(old)}, {n - len(pairs)} new"
            + _case_hint(old, new))


def _case_hint(old, new) -> str:
    """A note when the units would be shared but for their case (an upper-case model, lower-case text)."""
    folded = {t.lower() for t in old.tokens}
    unshared = [t for t in new.tokens if t not in old.index and t.lower() != t.upper()]
    if unshared and sum(t.lower() in folded for t in unshared) > len(unshared) / 2:
        case = "upper" if any(t.isupper() for t in old.tokens) else "lower"
        return (f" (its units are {case} case, the transcripts are not: a text_rules.json with \"case\": \"{case}\" "
                "given to --text-rules keeps its head)")
    return ""
