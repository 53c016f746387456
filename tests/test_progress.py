"""The progress display renders any task's statistics from what the task declares (`SHOWN`,
`BAR`, `Validation.shown`): a task it has never heard of shows its own fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from w2vcli.train.progress import ENGINE_SHOWN, MetricsWindow, UpdateOutput, format_row
from w2vcli.train.tasks import StepStats


@dataclass
class EchoStats(StepStats):
    SHOWN: ClassVar[dict[str, str]] = {"loss": ".2f", "echo": ".1f"}
    BAR: ClassVar[dict[str, str]] = {"echo": "echo {:.1f}"}

    echoes: float

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "echo": self.echoes / max(self.nsentences, 1.0)}

    def totals(self) -> dict[str, float]:
        return {"echoes": self.echoes}


def test_a_new_task_is_shown_by_what_it_declares():
    stats = EchoStats(loss=3.0, sample_size=2.0, nsentences=2.0, nsamples=32000.0, echoes=5.0)
    out = UpdateOutput(stats, stepped=True, grad_norm=1.0, data_time=0.5, step_time=0.5)
    assert out.bar() == ["echo 2.5", "2.0 utt/s"]
    window = MetricsWindow()
    window.add(out)
    row = window.row(7, 1e-3, 0, 0, {})
    assert row["echo"] == 2.5 and row["echoes"] == 5.0  # a total is recorded, not shown
    line = format_row(row, {**EchoStats.SHOWN, **ENGINE_SHOWN})
    assert line.startswith("update 7 | loss 1.50 | echo 2.5 | lr 1.00e-03 | grad_norm 1.00") and "echoes" not in line
    skipped = UpdateOutput(stats, stepped=False, grad_norm=0.0, data_time=0.5, step_time=0.5)
    assert skipped.bar() == ["2.0 utt/s"]
    assert format_row({"update": 7, "valid_echo": 0.25, "valid_best": True}, {"valid_echo": ".2f"}) == \
        "update 7 | valid_echo 0.25 | [green]best[/green]"
