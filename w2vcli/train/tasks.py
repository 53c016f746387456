"""What differs between pretraining and fine-tuning: the model, the data, the loss, validation.

A task gives the engine:
    kind                      "pretrain" | "ctc" (the checkpoint kind)
    model                     the bare model (the engine wraps it in DDP)
    train_loader()            (DataLoader, BucketBatchSampler) for this rank
    valid_loader()            a DataLoader over this rank's share of the validation set
    forward(model, batch, u)  (loss summed over the batch, {stat: sum}) incl. "loss",
                              "sample_size", "nsentences", "nsamples"
    summarize(sums)           sums over batches/updates/ranks -> metric values
    before_step(model, u)     last look at the gradients before the optimizer step
    validate(model, loader)   metric dict with "score", a list compared in order (lower is better: best.pt)
"""

from __future__ import annotations

from pathlib import Path

import torch

from w2vcli.data.dataset import AudioDataset, BucketBatchSampler, filter_rows, make_loader
from w2vcli.data.manifest import check_audio, read_manifest
from w2vcli.errors import W2VError
from w2vcli.train import distributed
from w2vcli.text import RULES_FILE
from w2vcli.train.vocab import build_vocab, encode_targets, normalize_rows, resolve_text_rules


def make_task(cfg, d: distributed.Dist, init_model=None):
    """The task of `cfg`; `init_model` is the --init model if this process loaded it already."""
    return PretrainTask(cfg, d, init_model) if cfg.task == "pretrain" else FinetuneTask(cfg, d, init_model)


def load_init(task: str, init: str):
    """The --init model of a `task` ("pretrain" | "finetune") run, loaded once: the command reads
    its config (the training defaults, the checks) and the task takes its weights.

    Returns None for fine-tuning's `none` / `scratch`. Continued pretraining needs the whole
    pretraining model: a CTC or encoder-only checkpoint is refused, saying why.
    """
    from w2vcli.model.checkpoint import load_model
    from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

    if task == "finetune" and init.lower() in ("none", "scratch"):
        return None
    if not Path(init).exists():
        raise W2VError(f"--init {init}: no such file or directory")
    model = load_model(init)
    if not isinstance(model, torch.nn.Module):
        raise W2VError(f"--init {init}: an exported ONNX model holds no trainable weights; use the checkpoint it came from")
    if task == "pretrain" and not isinstance(model, Wav2Vec2ForPreTraining):
        what = ("a fine-tuned CTC model" if isinstance(model, Wav2Vec2ForCTC)
                else "an encoder-only model (Hugging Face Wav2Vec2Model)")
        raise W2VError(
            f"--init {init}: {what} has no quantizer and no projections (project_q, project_hid), so the "
            "contrastive loss cannot be continued from it; give the pretraining checkpoint it came from "
            "(a w2v pretrain .pt, a Wav2Vec2ForPreTraining directory, a fairseq wav2vec2 pretraining .pt)"
        )
    return model


def saved_model_config(last: Path):
    """The ModelConfig stored in a run's last.pt (read lazily; the engine loads the weights)."""
    from w2vcli.model.config import ModelConfig

    try:
        config = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["model_config"]
    except Exception:  # damaged or foreign: load_checkpoint's W2VError says which
        from w2vcli.train.state import load_checkpoint

        config = load_checkpoint(last)["model_config"]
    return ModelConfig.from_dict(config)


class Task:
    kind = ""
    find_unused_parameters = False  # for DDP: parameters some steps leave unused (layer drop, mask embedding)
    crop = False  # crop long audio (pretraining) instead of skipping it (fine-tuning)

    def __init__(self, cfg, d: distributed.Dist):
        self.cfg, self.d = cfg, d
        max_size = cfg.max_sample_size if not self.crop else None
        self.train_rows = filter_rows(self._read(cfg.train), cfg.min_sample_size,
                                      min(max_size, cfg.max_tokens) if max_size else None, cfg.train)
        self.valid_rows = (filter_rows(self._read(cfg.valid), cfg.min_sample_size,
                                       max_size, cfg.valid) if cfg.valid else [])

    def _read(self, manifest: str) -> list[dict]:
        """Manifest rows whose audio was checked up front (not hours into training)."""
        rows = read_manifest(manifest)
        return check_audio(rows, manifest, skip=self.cfg.skip_bad_audio, quiet=not self.d.main) if rows else rows

    def targets(self, rows: list[dict]):
        return None

    def _dataset(self, rows):
        return AudioDataset(rows, self.targets(rows), self.cfg.max_sample_size if self.crop else None,
                            seed=self.cfg.seed)

    def train_loader(self):
        ds = self._dataset(self.train_rows)
        sampler = BucketBatchSampler(ds.sizes, self.cfg.max_tokens, self.cfg.seed, shuffle=True,
                                     rank=self.d.rank, world_size=self.d.world_size)
        return make_loader(ds, sampler, self.cfg.num_workers, self.d.device.type == "cuda"), sampler

    def valid_loader(self):
        ds = self._dataset(self.valid_rows)
        sampler = BucketBatchSampler(ds.sizes, self.cfg.max_tokens, self.cfg.seed, shuffle=False,
                                     rank=self.d.rank, world_size=self.d.world_size, drop_last=False)
        return make_loader(ds, sampler, min(self.cfg.num_workers, 1))

    def before_step(self, model, update: int) -> None:
        pass

    def save_assets(self, out: Path) -> None:
        pass

    def _reduce(self, sums: dict) -> dict:
        keys = sorted(sums)
        t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=self.d.device)
        return dict(zip(keys, distributed.all_reduce_sum(t, self.d).tolist()))


class PretrainTask(Task):
    """Contrastive + diversity loss + feature penalty; Gumbel temperature annealed per update.

    The model: on --resume, last.pt's architecture (the engine loads its weights); with --init,
    the checkpoint's model with `[model]` training fields changed; otherwise the preset's.
    """

    kind = "pretrain"
    crop = True

    def __init__(self, cfg, d, init_model=None):
        super().__init__(cfg, d)
        from w2vcli.model.config import get_preset
        from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining
        from w2vcli.train.config import continued_config

        last = Path(cfg.out) / "last.pt"
        if cfg.resume and last.is_file():
            self.model = Wav2Vec2ForPreTraining(continued_config(saved_model_config(last), cfg.model, str(last)))
        elif cfg.init:
            pretrained = init_model if init_model is not None else load_init("pretrain", cfg.init)
            config = continued_config(pretrained.config, cfg.model, f"--init {cfg.init}")
            self.model = Wav2Vec2ForPreTraining(config)  # built anew: dropout and layer drop are set at construction
            self.model.load_state_dict(pretrained.state_dict())
        else:
            self.model = Wav2Vec2ForPreTraining(get_preset(cfg.preset).replace(**cfg.model))
        self.model.wav2vec2.checkpoint_activations(cfg.checkpoint_activations)
        self.find_unused_parameters = self.model.config.layer_drop > 0

    def temperature(self, update: int) -> float:
        return self.model.config.gumbel_temperature(update)

    def forward(self, model, batch, update):
        out = model(batch["wav"], batch["lengths"], temperature=self.temperature(update))
        n = float(out.num_masked)
        f = lambda t: float(t.detach())  # noqa: E731
        return out.loss, {
            "loss": f(out.loss), "sample_size": n, "nsentences": len(batch["ids"]),
            "nsamples": float(batch["lengths"].sum()),
            "contrastive": f(out.contrastive_loss), "diversity": f(out.diversity_loss) * n,
            "correct": float(out.num_correct), "code_perplexity": f(out.code_perplexity),
            "prob_perplexity": f(out.prob_perplexity), "batches": 1.0,
        }

    def summarize(self, s: dict) -> dict:
        n, b = max(s["sample_size"], 1.0), max(s["batches"], 1.0)
        return {"loss": s["loss"] / n, "contrastive": s["contrastive"] / n, "diversity": s["diversity"] / n,
                "accuracy": s["correct"] / n, "code_perplexity": s["code_perplexity"] / b,
                "prob_perplexity": s["prob_perplexity"] / b, "num_masked": s["sample_size"]}

    def validate(self, model, loader, d) -> dict:
        sums = {"loss": 0.0, "sample_size": 0.0, "contrastive": 0.0, "diversity": 0.0, "correct": 0.0,
                "code_perplexity": 0.0, "prob_perplexity": 0.0, "batches": 0.0}
        for batch in loader:
            batch = {k: v.to(d.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            _, stats = self.forward(model, batch, 0)
            for k in sums:
                sums[k] += stats[k]
        result = self.summarize(self._reduce(sums))
        result.pop("num_masked")
        return {**result, "score": [result["loss"]]}


class FinetuneTask(Task):
    """CTC on letters or sentencepiece units, from a pretrained model (or random init)."""

    kind = "ctc"
    find_unused_parameters = True

    def __init__(self, cfg, d, init_model=None):
        super().__init__(cfg, d)
        # every transcript, training and validation, goes through the run's text rules
        self.text_rules = resolve_text_rules(cfg, getattr(init_model, "text_rules", None))
        self.train_rows = normalize_rows(self.train_rows, self.text_rules)
        self.valid_rows = normalize_rows(self.valid_rows, self.text_rules)
        self.vocab, self.spm = build_vocab(cfg, self.train_rows, self.text_rules)
        last = Path(cfg.out) / "last.pt"
        if cfg.resume and last.is_file():  # the engine loads the weights; skip --init
            from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC

            self.model = Wav2Vec2ForCTC(saved_model_config(last), self.vocab, self.text_rules)
        else:
            self.model = build_ctc_model(cfg, self.vocab, self.text_rules, init_model)
        if cfg.freeze_feature_encoder:
            self.model.freeze_feature_encoder()
        self.model.wav2vec2.checkpoint_activations(cfg.checkpoint_activations)
        self._head = {id(p) for p in self.model.head.parameters()}

    def targets(self, rows):
        return encode_targets(rows, self.vocab, self.spm)

    def save_assets(self, out: Path) -> None:
        self.vocab.save(out / "vocab.json")
        self.text_rules.save(out / RULES_FILE)

    def before_step(self, model, update: int) -> None:
        if update < self.cfg.freeze_updates:  # only the output layer learns at first
            for p in model.parameters():
                if id(p) not in self._head:
                    p.grad = None

    def forward(self, model, batch, update, return_logits: bool = False):
        from w2vcli.model.wav2vec2 import ctc_loss

        logits, frame_lengths = model(batch["wav"], batch["lengths"])  # [B,T,V], [B]
        loss = ctc_loss(logits, frame_lengths, batch["targets"], batch["target_lengths"])  # summed
        stats = {"loss": float(loss.detach()), "sample_size": float(len(batch["ids"])),
                 "nsentences": float(len(batch["ids"])), "nsamples": float(batch["lengths"].sum()),
                 "ntokens": float(batch["target_lengths"].sum())}
        if return_logits:
            stats["logits"], stats["frame_lengths"] = logits, frame_lengths
        return loss, stats

    def summarize(self, s: dict) -> dict:
        return {"loss": s["loss"] / max(s["sample_size"], 1.0)}

    def validate(self, model, loader, d) -> dict:
        from w2vcli.score import score_utterance

        texts = {r["id"]: r.get("text", "") for r in self.valid_rows}
        sums = {"loss": 0.0, "sample_size": 0.0, "word_errors": 0.0, "words": 0.0,
                "char_errors": 0.0, "chars": 0.0}
        for batch in loader:
            batch = {k: v.to(d.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            _, stats = self.forward(model, batch, 0, return_logits=True)
            sums["loss"] += stats["loss"]
            sums["sample_size"] += stats["sample_size"]
            hyps = greedy_decode(stats["logits"], stats["frame_lengths"], self.vocab)
            for uid, hyp in zip(batch["ids"], hyps):
                utt = score_utterance(uid, texts[uid].split(), hyp.split())
                sums["word_errors"] += utt.words.errors
                sums["words"] += utt.words.ref_len
                sums["char_errors"] += utt.chars.errors
                sums["chars"] += utt.chars.ref_len
        s = self._reduce(sums)
        loss = s["loss"] / max(s["sample_size"], 1.0)
        wer, cer = s["word_errors"] / max(s["words"], 1.0), s["char_errors"] / max(s["chars"], 1.0)
        return {"loss": loss, "wer": wer, "cer": cer, "score": [wer, cer, loss]}  # best: WER, ties by CER


def greedy_decode(logits: torch.Tensor, frame_lengths: torch.Tensor, vocab) -> list[str]:
    """Best path: argmax per frame, collapse repeats, drop blanks. logits [B,T,V] -> B texts."""
    best = logits.argmax(dim=-1).cpu()  # [B,T]
    texts = []
    for b, n in enumerate(frame_lengths.tolist()):
        ids = torch.unique_consecutive(best[b, :n]).tolist()
        texts.append(vocab.decode([i for i in ids if i != vocab.blank]))
    return texts


def build_ctc_model(cfg, vocab, text_rules=None, pretrained=None):
    """A CTC model for `vocab`: from --init (w2v / Hugging Face / fairseq; `pretrained` if already
    loaded) or, with `none`, a preset."""
    from w2vcli.model.config import get_preset
    from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC

    overrides = {k: v for k, v in {"mask_time_prob": cfg.mask_prob, "mask_channel_prob": cfg.mask_channel_prob,
                                   "layer_drop": cfg.layerdrop, "final_dropout": cfg.final_dropout}.items()
                 if v is not None}
    overrides.update(cfg.model)
    if cfg.freeze_feature_encoder:
        overrides["feature_grad_mult"] = 0.0
    if cfg.init.lower() in ("none", "scratch"):
        return Wav2Vec2ForCTC(get_preset(cfg.preset).replace(**overrides), vocab, text_rules)
    if pretrained is None:
        pretrained = load_init("finetune", cfg.init)  # a pretraining model, an encoder, or a CTC model
    encoder = getattr(pretrained, "wav2vec2", pretrained)  # Wav2Vec2Model
    model = Wav2Vec2ForCTC(encoder.config.replace(**overrides), vocab, text_rules)
    model.wav2vec2.load_state_dict(encoder.state_dict())
    old_vocab = getattr(pretrained, "vocab", None)
    if old_vocab is not None and old_vocab.tokens == vocab.tokens:  # same units: keep the trained head
        model.head.load_state_dict(pretrained.head.state_dict())
    return model.cpu()
