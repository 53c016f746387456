"""Trajectory parity: w2v's training loop against a plain loop around transformers' models.

`w2v pretrain` (20 updates of 2 accumulated batches) and `w2v finetune` (20 CTC updates) run
through Typer's CliRunner in this process, from the same initial weights as a transformers model
that a hand-written reference loop trains with `torch.optim.AdamW`, the learning-rate schedules
written out below, Gumbel temperature annealing and `clip_grad_norm_`. At every update the loss,
gradient norm and learning rate w2v writes to metrics.jsonl must equal the reference's (float32
tolerance). The parity tests check one forward pass; this checks the loop: the optimizer and its
hyperparameters, loss normalisation and accumulation, schedules, clipping, the head-only updates
of fine-tuning, and the data path (audio read, padded, batched).

How both sides are made to see the same thing:
- Weights. Fine-tuning starts from a `Wav2Vec2ForCTC.save_pretrained` folder through the
  product's own `--init DIR --vocab DIR/vocab.json` (the head is kept: the units match).
  `w2v pretrain` has no `--init`: w2v builds its model as usual (preset + the `[model]` table of
  a `--config` file, which spells out the HF model's architecture), and the test wraps
  `Wav2Vec2ForPreTraining.__init__` so the new model loads the HF weights (converted by
  `w2vcli.load_model` from the save_pretrained folder) before the trainer sees it. The wrap is on
  the model class, so it holds however train/ builds the model, and the strict
  `load_state_dict` checks every shape.
- Batches. w2v shuffles length-bucketed batches; the test reads back the order it used by
  wrapping `w2vcli.data.dataset.collate` (ids per batch; `--num-workers 0`, nothing cropped), and
  the reference reads and pads those utterances itself with soundfile.
- Masks, distractors, Gumbel noise. Every draw on either side is made by transformers'
  `_compute_mask_indices` / `_sample_negative_indices` and a seeded copy of torch's
  `gumbel_softmax`, seeded by (kind of draw, how many of that kind the side has drawn). w2v's
  `span_mask` and `sample_negatives` are replaced wherever w2v imported them and draw from the
  arguments w2v passes (lengths, probability, span, minimum), so a wrong argument changes the
  draw. The reference draws pretraining masks and distractors as transformers' pretraining example
  does; `Wav2Vec2ForCTC` draws its SpecAugment masks itself, through the seeded
  `_compute_mask_indices`. `torch.nn.functional.gumbel_softmax` is replaced on both sides; it
  records each temperature, and near-ties of its argmax are settled alike (see `Draws`).
- What only one side has is off: dropout and layer drop (0 in the HF config, which w2v reads),
  the feature penalty (weight 0) and feature_grad_mult (1).
- The reference divides the summed loss by the sample size before backward (masked frames for
  pretraining, utterances for CTC, summed over the accumulated batches), as w2v's engine does,
  and step k (1, 2, ...) uses the schedule's value at k, as w2v's does.
- AdamW: betas (0.9, 0.98), eps 1e-6 (w2v's defaults, left unset, so a changed default shows),
  one parameter group, weight decay on every parameter, biases and norms too (`make_optimizer`).
  w2v runs torch's fused AdamW on a CPU, the reference torch's default single-tensor one: an
  independent implementation whose rounding differs by ~1e-7, far inside the tolerance.
- Learning rates are moderate (pretraining 2e-3, the tiny preset's): at 5e-3 the pretraining
  dynamics amplify rounding, and two reference runs differing only in AdamW's implementation part
  by 1e-2 within 20 updates; at 2e-3 they stay within 1e-6.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from train_data import make_corpus, read_metrics
from typer.testing import CliRunner

import w2vcli
from w2vcli.text import Vocabulary

transformers = pytest.importorskip("transformers")
from test_model_parity import hf_config, randomize  # noqa: E402
from transformers.models.wav2vec2 import modeling_wav2vec2 as hf_w2v  # noqa: E402

# the tone corpus's letters (train_data.LETTERS) with `|` between words; index 0 = CTC blank
TONE_VOCAB = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C", "D", "E"])
RTOL = 1e-4  # float32: the two sides round differently, nothing else
GRAD_RTOL = 1e-3  # gradient norms: they follow the weights' rounding more closely than the loss
WORDS = 2  # words per utterance: 0.4-0.5 s of tones
MIN_SAMPLES = 4000  # below every utterance of the corpus


# --- the draws both sides share ----------------------------------------------------------------


class Draws:
    """One side's masks, distractors and Gumbel noise, each seeded by (kind, count of that kind).

    Both sides make the same draws in the same order per kind, so the n-th mask of one side is
    the n-th mask of the other, whatever else each side does with its random streams.

    The side that runs second follows the first one (`leader`) on near-ties of the Gumbel
    argmax: where the two sides pick different codewords although one of them had the best two
    within TIE of each other, it takes the leader's pick. Without this the trajectories part at
    the first near-tie (seen while writing this test, at update 16 of a LARGE-like run: one
    codeword of 124 flipped by weights equal to the 7th digit), for reasons of rounding, not of
    the loop; a real difference in the quantizer's input moves picks with clear margins and
    still fails.
    """

    MASK, NEGATIVES, GUMBEL = 1, 2, 3
    TIE = 1e-3  # margin between the best two Gumbel-perturbed logits below which a pick is shared

    def __init__(self, seed: int, leader: Draws | None = None):
        self.seed, self.leader = seed, leader
        self.count = {self.MASK: 0, self.NEGATIVES: 0, self.GUMBEL: 0}
        self.temperatures: list[float] = []  # the Gumbel temperature of each quantizer forward
        self.picks: list[tuple[torch.Tensor, torch.Tensor]] = []  # (codeword, margin) per Gumbel draw
        self.shared_ties = 0  # picks taken from the leader

    def _next_seed(self, kind: int) -> list[int]:
        self.count[kind] += 1
        return [self.seed, kind, self.count[kind]]

    def mask(self, shape, mask_prob, mask_length, attention_mask=None, min_masks=0) -> np.ndarray:
        """transformers' span mask [B,T] bool (an attention mask [B,T] gives the valid lengths)."""
        with numpy_seed(self._next_seed(self.MASK)):
            return ORIGINAL_COMPUTE_MASK(shape, mask_prob=mask_prob, mask_length=mask_length,
                                         attention_mask=attention_mask, min_masks=min_masks)

    def negatives(self, shape, num_negatives: int, mask: np.ndarray) -> np.ndarray:
        """transformers' distractor indices [B,T,K] into the flattened B*T axis."""
        with numpy_seed(self._next_seed(self.NEGATIVES)):
            return hf_w2v._sample_negative_indices(shape, num_negatives, mask_time_indices=mask)

    def gumbel_softmax(self, logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
        """torch's straight-through `gumbel_softmax(logits [N,V], tau, hard=True)`, seeded noise."""
        assert hard and dim == -1 and logits.dim() == 2, "both quantizers draw hard samples over [N,V]"
        self.temperatures.append(float(tau))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._next_seed(self.GUMBEL)[2])
        gumbels = -torch.empty(logits.shape).exponential_(generator=generator).log().to(logits)
        scores = logits + gumbels  # [N,V]
        y_soft = (scores / tau).softmax(dim=-1)
        y_hard = torch.zeros_like(logits).scatter_(-1, self._pick(scores.detach())[:, None], 1.0)
        return y_hard - y_soft.detach() + y_soft

    def _pick(self, scores: torch.Tensor) -> torch.Tensor:
        """argmax per row [N], near-ties settled by the leader."""
        best = scores.topk(2, dim=-1)
        pick, margin = best.indices[:, 0], best.values[:, 0] - best.values[:, 1]
        self.picks.append((pick, margin))
        if self.leader is not None and len(self.leader.picks) >= len(self.picks):
            lead_pick, lead_margin = self.leader.picks[len(self.picks) - 1]
            if lead_pick.shape == pick.shape:
                tie = (pick != lead_pick) & (torch.minimum(margin, lead_margin) < self.TIE)
                self.shared_ties += int(tie.sum())
                pick = torch.where(tie, lead_pick, pick)
        return pick


ORIGINAL_COMPUTE_MASK = hf_w2v._compute_mask_indices


class numpy_seed:
    """Seed numpy's global generator (transformers' draws use it) and restore it afterwards."""

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        self.state = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc):
        np.random.set_state(self.state)


def patch_everywhere(monkeypatch, original, replacement) -> None:
    """Replace `original` in every loaded w2vcli module that imported it by name."""
    import w2vcli.model.wav2vec2  # noqa: F401  (the model's users, loaded before patching)
    import w2vcli.train.engine  # noqa: F401

    hits = [m for name, m in list(sys.modules.items())
            if name.startswith("w2vcli") and getattr(m, original.__name__, None) is original]
    assert hits, f"no w2vcli module uses {original.__name__}"
    for module in hits:
        monkeypatch.setattr(module, original.__name__, replacement)


def draw_through(monkeypatch, draws: Draws) -> None:
    """Make w2v's masking, distractor and Gumbel draws come from `draws`."""
    from w2vcli.model import masking

    def span_mask(lengths, max_len, mask_prob, span, min_masks=0, generator=None):
        valid = (torch.arange(max_len)[None, :] < lengths.cpu()[:, None]).long()  # [B,T]
        m = draws.mask((len(lengths), max_len), mask_prob, span, valid, min_masks)
        return torch.from_numpy(m).to(lengths.device)

    def sample_negatives(mask, num_negatives, cross_sample_negatives=0, generator=None):
        assert cross_sample_negatives == 0, "transformers has no cross-utterance distractors"
        neg = draws.negatives(tuple(mask.shape), num_negatives, mask.cpu().numpy())
        return torch.from_numpy(neg).long().to(mask.device)

    patch_everywhere(monkeypatch, masking.span_mask, span_mask)
    patch_everywhere(monkeypatch, masking.sample_negatives, sample_negatives)
    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", draws.gumbel_softmax)


# --- the reference's schedules, written from fairseq's definitions -----------------------------


def polynomial_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """fairseq polynomial_decay (power 1, end 0) for optimizer step `step` = 1, 2, ..."""
    if step <= warmup:
        return peak * step / warmup
    return peak * max(0.0, (total - step) / (total - warmup))


def tri_stage_lr(step: int, peak: float, total: int, ratios=(0.1, 0.4, 0.5),
                 init_scale: float = 0.01, final_scale: float = 0.05) -> float:
    """fairseq tri_stage for optimizer step `step` = 1, 2, ...: linear warmup from peak*init_scale,
    hold, exponential decay to peak*final_scale, then constant."""
    warmup, hold, decay = (int(r * total) for r in ratios)
    init_lr = peak * init_scale
    if step < warmup:
        return init_lr + (peak - init_lr) / warmup * step
    if step < warmup + hold:
        return peak
    if step <= warmup + hold + decay:
        decay_factor = -math.log(final_scale) / decay
        return peak * math.exp(-decay_factor * (step - warmup - hold))
    return peak * final_scale


def gumbel_temperature(updates_done: int, start: float, end: float, decay: float) -> float:
    """HF's pretraining example: max(start * decay**updates, end), set before each update."""
    return max(start * decay**updates_done, end)


# --- data and the two loops ----------------------------------------------------------------------


@dataclass
class Step:
    """What one optimizer update reports."""

    loss: float  # summed loss / sample size
    grad_norm: float  # before clipping
    lr: float


def record_batches(monkeypatch) -> list[list[str]]:
    """Utterance ids of every batch w2v's loader collates, in order."""
    from w2vcli.data import dataset

    seen: list[list[str]] = []
    original = dataset.collate

    def collate(items):
        seen.append([it["id"] for it in items])
        return original(items)

    monkeypatch.setattr(dataset, "collate", collate)
    return seen


def read_batch(ids: list[str], paths: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(wav [B,S] zero-padded, attention_mask [B,S]) read with soundfile."""
    waves = [sf.read(paths[i], dtype="float32")[0] for i in ids]
    S = max(len(w) for w in waves)
    wav = torch.zeros(len(waves), S)
    attention_mask = torch.zeros(len(waves), S, dtype=torch.long)
    for b, w in enumerate(waves):
        wav[b, : len(w)] = torch.from_numpy(w)
        attention_mask[b, : len(w)] = 1
    return wav, attention_mask


def manifest_rows(manifest: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, manifest.read_text().splitlines())}


def reference_optimizer(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=weight_decay)


def optimizer_step(params, optimizer, clip: float, lr: float) -> float:
    """Clip, set the learning rate, step; returns the gradient norm before clipping."""
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def run_w2v(args: list) -> list[dict]:
    from w2vcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        command = " ".join(map(str, args))
        raise AssertionError(f"w2v {command} -> {result.exit_code}\n{result.output}") from result.exception
    out = Path(args[args.index("--out") + 1])
    return [r for r in read_metrics(out) if "loss" in r]


def write_config(path: Path, options: dict, model: dict) -> Path:
    """A `--config` TOML file: top-level options and a `[model]` table (numbers, bools, lists)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in options.items()]
    lines += ["", "[model]"] + [f"{k} = {value(v)}" for k, v in model.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same_trajectory(got: list[dict], ref: list[Step]) -> None:
    """Learning rate, loss and gradient norm equal at every update (the failure shows them all)."""
    assert [r["update"] for r in got] == list(range(1, len(ref) + 1))
    table = "\n".join(f"update {r['update']:2d}  loss {r['loss']:.7f} vs {s.loss:.7f}  "
                      f"grad norm {r['grad_norm']:.6f} vs {s.grad_norm:.6f}  lr {r['lr']:.3e} vs {s.lr:.3e}"
                      for r, s in zip(got, ref))
    for row, step in zip(got, ref):
        assert row["lr"] == pytest.approx(step.lr, rel=1e-9), f"learning rate, w2v vs reference:\n{table}"
        assert row["loss"] == pytest.approx(step.loss, rel=RTOL), f"loss, w2v vs reference:\n{table}"
        assert row["grad_norm"] == pytest.approx(step.grad_norm, rel=GRAD_RTOL), f"gradient norm:\n{table}"


# --- pretraining -----------------------------------------------------------------------------------

PT = dict(updates=20, update_freq=2, lr=2e-3, warmup=4, schedule_updates=24, clip=2.0, weight_decay=0.1,
          gumbel=(2.0, 0.5, 0.9))  # fast Gumbel decay: annealed, then clamped, within 20 updates


def reference_pretrain(hf, batches: list[list[str]], paths: dict[str, str], draws: Draws) -> list[Step]:
    """Train `hf` (transformers' Wav2Vec2ForPreTraining) on `batches`, PT["update_freq"] per update."""
    cfg = hf.config
    params = [p for p in hf.parameters() if p.requires_grad]
    optimizer = reference_optimizer(params, PT["lr"], PT["weight_decay"])
    hf.train()
    steps = []
    for done in range(PT["updates"]):
        hf.set_gumbel_temperature(gumbel_temperature(done, *PT["gumbel"]))
        losses, masked = [], 0
        for ids in batches[done * PT["update_freq"]:(done + 1) * PT["update_freq"]]:
            wav, attention_mask = read_batch(ids, paths)
            T = int(hf._get_feat_extract_output_lengths(wav.shape[1]))
            frames = hf._get_feature_vector_attention_mask(T, attention_mask)  # [B,T]
            mask = draws.mask((len(ids), T), cfg.mask_time_prob, cfg.mask_time_length, frames,
                              cfg.mask_time_min_masks)
            negatives = draws.negatives((len(ids), T), cfg.num_negatives, mask)
            out = hf(wav, attention_mask=attention_mask, mask_time_indices=torch.from_numpy(mask),
                     sampled_negative_indices=torch.from_numpy(negatives).long())
            losses.append(out.loss)  # contrastive (summed) + weight * diversity * masked frames
            masked += int(mask.sum())
        loss = sum(losses) / masked
        loss.backward()
        lr = polynomial_lr(done + 1, PT["lr"], PT["warmup"], PT["schedule_updates"])
        steps.append(Step(loss.item(), optimizer_step(params, optimizer, PT["clip"], lr), lr))
    return steps


def start_from(monkeypatch, state: dict) -> None:
    """Every w2v Wav2Vec2ForPreTraining built from now on starts with the weights `state`."""
    from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining

    original = Wav2Vec2ForPreTraining.__init__

    def __init__(self, config):
        original(self, config)
        self.load_state_dict(state)  # strict: the [model] table must give the HF architecture

    monkeypatch.setattr(Wav2Vec2ForPreTraining, "__init__", __init__)


def test_pretraining_trajectory(tmp_path, monkeypatch):
    """BASE-like model (group-norm conv, post-LN), 20 updates of 2 accumulated batches."""
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForPreTraining(hf_config("base_like"))
    randomize(hf, 1)
    hf.save_pretrained(tmp_path / "hf")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path / "hf")  # raw input, as the reference
    converted = w2vcli.load_model(tmp_path / "hf")
    start, end, decay = PT["gumbel"]
    model_table = converted.config.replace(
        feature_penalty_weight=0.0, feature_grad_mult=1.0, gumbel_start=start, gumbel_end=end, gumbel_decay=decay
    ).to_dict()
    options = {"weight_decay": PT["weight_decay"], "min_sample_size": MIN_SAMPLES}
    toml = write_config(tmp_path / "pt.toml", options, model_table)
    train = make_corpus(tmp_path, "train", 8, seed=0, words=WORDS)
    paths = {i: r["audio"] for i, r in manifest_rows(train).items()}
    longest = max(r["num_samples"] for r in manifest_rows(train).values())

    start_from(monkeypatch, converted.state_dict())
    batches = record_batches(monkeypatch)
    ours = Draws(seed=7)
    draw_through(monkeypatch, ours)
    got = run_w2v(["pretrain", "--train", train, "--out", tmp_path / "pt", "--preset", "tiny", "--config", toml,
                   "--max-updates", PT["updates"], "--update-freq", PT["update_freq"], "--lr", PT["lr"],
                   "--warmup-updates", PT["warmup"], "--schedule-updates", PT["schedule_updates"],
                   "--clip-norm", PT["clip"], "--max-tokens", 2 * longest, "--max-sample-size", longest,
                   "--num-workers", 0, "--seed", 3, "--log-interval", 1])
    assert len(batches) == PT["updates"] * PT["update_freq"]
    assert any(len(ids) > 1 for ids in batches), "no batch with padding"

    theirs = Draws(seed=7, leader=ours)
    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", theirs.gumbel_softmax)
    ref = reference_pretrain(hf, batches, paths, theirs)

    assert ours.count == theirs.count, "w2v drew masks, distractors or Gumbel noise another way"
    assert ours.temperatures == pytest.approx(theirs.temperatures, rel=1e-12)
    assert theirs.shared_ties <= 3, f"{theirs.shared_ties} codeword picks differ: not rounding"
    assert any(s.grad_norm > PT["clip"] for s in ref) and any(s.grad_norm < PT["clip"] for s in ref)
    assert_same_trajectory(got, ref)


# --- CTC fine-tuning -------------------------------------------------------------------------------

FT = dict(updates=20, lr=5e-3, freeze_updates=3, clip=45.0, weight_decay=0.1)


def labels_of(texts: list[str]) -> torch.Tensor:
    """[B,L] token ids of the transcripts, words joined by `|`, padded with -100 (HF's ignore index)."""
    ids = [[TONE_VOCAB.tokens.index(c) for c in "|".join(t.split())] for t in texts]
    labels = torch.full((len(ids), max(map(len, ids))), -100, dtype=torch.long)
    for b, seq in enumerate(ids):
        labels[b, : len(seq)] = torch.tensor(seq)
    return labels


def reference_finetune(hf, batches: list[list[str]], rows: dict[str, dict]) -> list[Step]:
    """Train `hf` (transformers' Wav2Vec2ForCTC, conv feature encoder frozen) on `batches`."""
    hf.freeze_feature_encoder()
    params = [p for p in hf.parameters() if p.requires_grad]
    head = {id(p) for p in hf.lm_head.parameters()}
    optimizer = reference_optimizer(params, FT["lr"], FT["weight_decay"])
    hf.train()
    steps = []
    for done, ids in enumerate(batches):
        wav, attention_mask = read_batch(ids, {i: rows[i]["audio"] for i in ids})
        out = hf(wav, attention_mask=attention_mask, labels=labels_of([rows[i]["text"] for i in ids]))
        loss = out.loss / len(ids)  # summed over utterances -> per utterance
        loss.backward()
        if done < FT["freeze_updates"]:  # only the output layer learns at first
            for p in params:
                if id(p) not in head:
                    p.grad = None
        lr = tri_stage_lr(done + 1, FT["lr"], FT["updates"])
        steps.append(Step(loss.item(), optimizer_step(params, optimizer, FT["clip"], lr), lr))
    return steps


def test_finetuning_trajectory(tmp_path, monkeypatch):
    """LARGE-like model (layer-norm conv, pre-LN), 20 updates, the first 3 training the head only."""
    torch.manual_seed(0)
    config = hf_config("large_like", ctc_loss_reduction="sum", ctc_zero_infinity=True)
    config.vocab_size = len(TONE_VOCAB)
    config.mask_feature_prob, config.mask_feature_length = 0.25, 4  # channel masking too
    hf = transformers.Wav2Vec2ForCTC(config)
    randomize(hf, 2)
    hf.save_pretrained(tmp_path / "hf")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path / "hf")  # raw input, as the reference
    TONE_VOCAB.save(tmp_path / "hf" / "vocab.json")
    train = make_corpus(tmp_path, "train", 8, seed=1, words=WORDS)
    rows = manifest_rows(train)
    longest = max(r["num_samples"] for r in rows.values())

    options = {"weight_decay": FT["weight_decay"], "min_sample_size": MIN_SAMPLES}
    toml = write_config(tmp_path / "ft.toml", options, {})

    batches = record_batches(monkeypatch)
    ours = Draws(seed=11)
    draw_through(monkeypatch, ours)
    got = run_w2v(["finetune", "--train", train, "--out", tmp_path / "ft", "--init", tmp_path / "hf",
                   "--vocab", tmp_path / "hf" / "vocab.json", "--max-updates", FT["updates"], "--lr", FT["lr"],
                   "--lr-schedule", "tri_stage", "--freeze-updates", FT["freeze_updates"], "--clip-norm", FT["clip"],
                   "--max-tokens", 2 * longest, "--num-workers", 0, "--seed", 3, "--log-interval", 1,
                   "--config", toml])
    assert len(batches) == FT["updates"]
    assert any(len(ids) > 1 for ids in batches), "no batch with padding"

    theirs = Draws(seed=11)
    monkeypatch.setattr(hf_w2v, "_compute_mask_indices", theirs.mask)
    ref = reference_finetune(hf, batches, rows)

    assert ours.count == theirs.count and ours.count[Draws.MASK] == 2 * FT["updates"]  # time + channel
    assert any(s.grad_norm > FT["clip"] for s in ref) and any(s.grad_norm < FT["clip"] for s in ref)
    assert_same_trajectory(got, ref)
