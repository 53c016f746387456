"""Learning-rate schedules: pure functions of the update number.

(The Gumbel temperature schedule is `ModelConfig.gumbel_temperature(update)`.)

Being functions of the update count alone, they need no state of their own to resume: the
checkpoint's "scheduler" entry records the name, its numbers and the update for reference.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


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
