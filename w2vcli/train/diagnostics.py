"""Live checks of a training run: each names a problem and its likely fix in one warning line
and in one metrics.jsonl record,

    {"update": 250, "diagnostic": "accuracy_at_chance", "message": "update 250: ...", "values": {...}}

(`values`: the numbers behind the message). docs/train.md#diagnostics lists every check with its
threshold and fix. The engine calls `Diagnostics.check_train` after each training metrics row and
`check_valid` after each validation, so the checks read only what the run logs already (means over
--log-interval updates) and cost nothing per update. Each fires at most once per run; its record
in metrics.jsonl keeps a resumed run from repeating it. A row whose updates include a skipped
(non-finite) step is not judged.

Before update 1, fine-tuning drops the utterances CTC cannot align (`drop_unalignable`).
The non-finite step check lives in the engine (`Trainer._skip`): it has to act on the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from w2vcli.errors import W2VError
from w2vcli.train.config import TaskKind

if TYPE_CHECKING:
    from w2vcli.model.config import ModelConfig
    from w2vcli.train.config import TrainConfig

# "after N updates" for the checks of a run that is still stuck: a fraction of the updates it
# trains (pretraining: all of them, and no fewer than WARMUP_MULTIPLE x --warmup-updates: the
# demo's own run (1500 updates, warm-up 100) leaves chance between updates 150 and 250, and at
# update 150 it was told "pretraining is not learning" on one run of two; fine-tuning: those
# after --freeze-updates), within bounds
JUDGE_FRACTION = {TaskKind.PRETRAIN: 0.1, TaskKind.FINETUNE: 0.25}
JUDGE_MIN, JUDGE_MAX = 50, 5000  # updates
WARMUP_MULTIPLE = 3  # pretraining: judged stuck no earlier than 3 x --warmup-updates (still at most JUDGE_MAX)
CHANCE_FACTOR = 1.5  # near chance: contrastive accuracy below 1.5 x the chance level
COLLAPSE_SHARE = 0.1  # collapse: code perplexity per codebook below 1 + 10 % of (V - 1)
FEATURE_GROWTH = 50.0  # blow-up: conv feature rms above 50 x its first logged value, and
FEATURE_RATE = 1.05  # still growing by more than 5 % per update since the previous row, or
FEATURE_RUNAWAY = 1000.0  # above 1000 x however slowly it got there. Without a feature penalty the
# demo's encoder drifts up slowly and trains well (0.59 -> 113 over 20 000 updates, 190 x; at most
# 0.9 % per update once past 50 x, in 9 runs); a learning rate that blows it up grows it 1.5-5 x per update
EMITTED_SHARE = 0.05  # all blank: non-blank greedy frames below 5 % of the target units


def judge_after(updates: int, fraction: float) -> int:
    """Updates a run gets before it is judged still stuck: `fraction` of `updates`, in [50, 5000]."""
    return min(max(round(fraction * updates), JUDGE_MIN), JUDGE_MAX)


@dataclass(frozen=True)
class Finding:
    """One diagnostic: what a record in metrics.jsonl holds."""

    update: int  # 0: found before update 1
    name: str  # e.g. "accuracy_at_chance"
    message: str  # one line: the problem, its numbers, the likely fix
    values: dict = field(default_factory=dict)  # the numbers behind the message

    def row(self) -> dict:
        return {"update": self.update, "diagnostic": self.name, "message": self.message, "values": self.values}


class Diagnostics:
    """The live checks of one run. `previous`: the metrics.jsonl rows a resumed run keeps (the
    checks already fired, the first feature rms)."""

    def __init__(self, cfg: TrainConfig, model_config: ModelConfig, previous: list[dict] = ()):
        self.cfg, self.mc, self.task = cfg, model_config, cfg.task
        self.fired = {r["diagnostic"] for r in previous if "diagnostic" in r}
        rms = [(r["update"], r["feature_rms"]) for r in previous if 0 < r.get("feature_rms", 0) < math.inf]
        self.feature_base = rms[0] if rms else None  # (update, rms) of the first row and of the latest
        self.feature_last = rms[-1] if rms else None
        frozen = cfg.frozen_updates
        self.after = frozen + judge_after(cfg.max_updates - frozen, JUDGE_FRACTION[self.task])
        if self.task is TaskKind.PRETRAIN:  # not before the learning rate has warmed up for a while
            self.after = min(max(self.after, WARMUP_MULTIPLE * cfg.warmup_updates), JUDGE_MAX)

    def check_train(self, row: dict, stats) -> list[Finding]:
        """After a training metrics row (`stats`: the task's sums over the same updates). A row with
        skipped steps is not judged: its means hold the non-finite batch the engine warned about."""
        if row.get("skipped"):
            return []
        if self.task is TaskKind.PRETRAIN:
            found = [self._chance(row), self._collapse(row, stats), self._features(row)]
        else:
            found = [self._blank(row, stats)]
        return self._fire(found)

    def check_valid(self, update: int, metrics: dict) -> list[Finding]:
        """After a validation (`metrics` without the valid_ prefix)."""
        return self._fire([self._wer(update, metrics)] if self.task is TaskKind.FINETUNE else [])

    def _fire(self, found: list[Finding | None]) -> list[Finding]:
        new = [f for f in found if f is not None and f.name not in self.fired]
        self.fired.update(f.name for f in new)
        return new

    # --- pretraining ------------------------------------------------------------------------------
    def _chance(self, row: dict) -> Finding | None:
        u, acc, chance = row["update"], row["accuracy"], row["chance"]
        if u < self.after or acc >= CHANCE_FACTOR * chance:
            return None
        mc, K = self.mc, self.mc.num_negatives + self.mc.cross_sample_negatives
        return Finding(u, "accuracy_at_chance", (
            f"update {u}: contrastive accuracy {acc:.3f} is still near chance ({chance:.3f}, {K} distractors) "
            f"after {self.after} updates: pretraining is not learning. Try a lower --lr (now {self.cfg.lr:g}) or "
            f"longer --warmup-updates (now {self.cfg.warmup_updates}), a cooler Gumbel start ([model] gumbel_start, "
            f"now {mc.gumbel_start:g}), a smaller [model] feature_penalty_weight (now {mc.feature_penalty_weight:g}); "
            f"or longer audio (--max-sample-size) if crops are short for mask spans of {mc.mask_time_length} frames"),
            {"accuracy": acc, "chance": chance, "threshold": CHANCE_FACTOR * chance, "after": self.after})

    def _collapse(self, row: dict, stats) -> Finding | None:
        G, V = self.mc.num_codebooks, self.mc.codebook_size
        frames = stats.sample_size / max(stats.batches, 1.0)  # masked frames per batch bound the perplexity
        threshold = G * (1.0 + COLLAPSE_SHARE * (min(V, max(frames, 1.0)) - 1.0))
        ppl = row["code_perplexity"]
        if ppl >= threshold:
            return None
        u = row["update"]
        return Finding(u, "code_collapse", (
            f"update {u}: code perplexity {ppl:.1f} of G x V = {G} x {V} codewords (below {threshold:.1f}): the "
            f"quantizer has collapsed onto a few codewords, which makes the targets easy and useless. Raise [model] "
            f"diversity_weight (now {self.mc.diversity_weight:g}), or anneal the Gumbel temperature (now "
            f"{row.get('temperature', float('nan')):.3f}) more slowly: [model] gumbel_decay closer to 1, or a higher "
            f"gumbel_end"), {"code_perplexity": ppl, "threshold": threshold, "codewords": G * V})

    def _features(self, row: dict) -> Finding | None:
        u, rms = row["update"], row["feature_rms"]
        last, self.feature_last = self.feature_last, ((u, rms) if 0 < rms < math.inf else self.feature_last)
        if self.feature_base is None:
            if 0 < rms < math.inf:  # the first rms to compare with
                self.feature_base = (u, rms)
            return None
        u0, base = self.feature_base
        rate = (rms / last[1]) ** (1 / (u - last[0])) if last and u > last[0] and rms < math.inf else math.inf
        if not (rms > FEATURE_GROWTH * base and (rate > FEATURE_RATE or rms > FEATURE_RUNAWAY * base)):
            return None
        return Finding(u, "feature_growth", (
            f"update {u}: conv feature rms {rms:.3g} is {rms / base:.0f} x its {base:.3g} at update {u0}"
            + (f", up {100 * (rate - 1):.0f} % per update since update {last[0]}" if rate < math.inf else "")
            + ": the feature encoder's output is blowing up (fp16 overflows at 65504). Use a feature "
            f"penalty ([model] feature_penalty_weight, now {self.mc.feature_penalty_weight:g}; the paper: 10) or a "
            f"lower --lr (now {self.cfg.lr:g})"),
            {"feature_rms": rms, "first": base, "first_update": u0, "threshold": FEATURE_GROWTH * base,
             "per_update": rate if rate < math.inf else None})

    # --- fine-tuning ------------------------------------------------------------------------------
    def _fixes(self) -> str:
        cfg = self.cfg
        freeze = f", fewer --freeze-updates (now {cfg.freeze_updates})" if cfg.freeze_updates else ""
        return (f"train longer (--max-updates {cfg.max_updates}), try another --lr (now {cfg.lr:g}: too low learns "
                f"nothing, too high falls back to blanks){freeze}, and check that --vocab holds the units of "
                "the transcripts and that --init is the pretrained model you meant")

    def _blank(self, row: dict, stats) -> Finding | None:
        u = row["update"]
        if u < self.after or stats.emitted >= EMITTED_SHARE * stats.ntokens:
            return None
        return Finding(u, "ctc_blank", (
            f"update {u}: the CTC output is still all blank after {self.after} updates ({stats.emitted:.0f} "
            f"non-blank frames for {stats.ntokens:.0f} target units): {self._fixes()}"),
            {"emitted": stats.emitted, "units": stats.ntokens, "after": self.after})

    def _wer(self, update: int, metrics: dict) -> Finding | None:
        wer = metrics["wer"]
        if update < self.after or wer < 1.0:
            return None
        return Finding(update, "wer_stuck", (
            f"update {update}: validation WER is still {wer:.3f} after {self.after} updates, not one word "
            f"recognised (CER {metrics['cer']:.3f}): {self._fixes()}"),
            {"wer": wer, "cer": metrics["cer"], "after": self.after})


# --- before update 1 ------------------------------------------------------------------------------


def ctc_frames_needed(units: list[int]) -> int:
    """Frames CTC needs for a target sequence: one per unit, and a blank between equal neighbours."""
    return len(units) + sum(a == b for a, b in zip(units, units[1:]))


def drop_unalignable(rows: list[dict], targets: list[list[int]], frames: list[int], manifest: str,
                     name: str) -> tuple[list[dict], list[list[int]], Finding | None]:
    """Leave out the utterances whose transcript needs more CTC frames than the feature encoder
    makes from their audio (`frames`): their CTC loss is infinite (zeroed by `zero_infinity`, so
    they would teach nothing, silently). Returns the rows and targets kept, and the Finding that
    says what was dropped (None if nothing was); all of them: W2VError."""
    needed = [ctc_frames_needed(t) for t in targets]
    bad = [i for i, (n, f) in enumerate(zip(needed, frames)) if n > f]
    if not bad:
        return rows, targets, None
    i = bad[0]
    example = (f"e.g. {rows[i]['id']}: {needed[i]} frames for {len(targets[i])} units, the audio makes {frames[i]}")
    fix = ("check those transcripts against their audio; or use fewer units per second (sentencepiece: "
           "--train-spm) or a model with more frames per second (a smaller conv_stride product)")
    if len(bad) == len(rows):
        raise W2VError(f"{manifest}: every transcript needs more CTC frames than its audio has ({example}): {fix}")
    message = (f"{manifest}: dropping {len(bad)} of {len(rows)} utterances whose transcript needs more CTC frames "
               f"than the audio has ({example}), as their CTC loss is infinite: {fix}")
    drop = set(bad)
    keep = [j for j in range(len(rows)) if j not in drop]
    return ([rows[j] for j in keep], [targets[j] for j in keep],
            Finding(0, name, message, {"manifest": manifest, "dropped": len(bad), "utterances": len(rows),
                                       "example": rows[i]["id"], "needed": needed[i], "frames": frames[i]}))
