"""Two gloo processes with batch b each take the same steps as one process with batch 2b."""

from __future__ import annotations

import torch
from train_data import make_corpus, read_metrics
from typer.testing import CliRunner

from w2vcli.cli import app

LEN = 12000  # samples per utterance: all equal, so padding cannot differ between the two runs

DETERMINISTIC = """
mask_time_prob = 0.0
mask_channel_prob = 0.0
layer_drop = 0.0
lr_schedule = "polynomial"
warmup_updates = 0
[model]
dropout = 0.0
attention_dropout = 0.0
feature_dropout = 0.0
final_dropout = 0.0
"""


def test_two_processes_equal_one_with_double_batch(tmp_path):
    train = make_corpus(tmp_path, "fix", 4, seed=3, fixed_len=LEN)
    config = tmp_path / "det.toml"
    config.write_text(DETERMINISTIC)
    common = ["finetune", "--init", "none", "--preset", "tiny", "--train", str(train), "--config", str(config),
              "--max-updates", "3", "--num-workers", "0", "--lr", "1e-3", "--log-interval", "1"]
    runs = {"one": ["--max-tokens", str(4 * LEN)], "two": ["--max-tokens", str(2 * LEN), "--nproc", "2"]}
    for name, extra in runs.items():
        result = CliRunner().invoke(app, common + extra + ["--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert one["update"] == two["update"] == 3 and len(two["rng"]) == 2
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    losses = [r["loss"] for r in read_metrics(tmp_path / "one")]
    assert losses[-1] < losses[0]  # the steps did move the model
