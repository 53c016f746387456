"""`transcribe --tune`: every other grid value first, then the best pair's neighbours; at most
--tune-minutes of the manifest; beams in parallel processes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.decode.transcribe import coarse_pairs, grid_neighbours, search_grid, tune_pairs
from w2vcli.text import SPECIALS, Vocabulary

ALPHAS, BETAS = [0, 0.25, 0.5, 0.75, 1, 1.5, 2], [-1, 0, 1, 2, 3]


def test_coarse_grid_and_neighbours():
    assert coarse_pairs(ALPHAS, BETAS) == [(a, b) for a in (0, 0.5, 1, 2) for b in (-1, 1, 3)]
    assert sorted(grid_neighbours(ALPHAS, BETAS, (0, -1))) == [(0, 0), (0.25, -1), (0.25, 0)]
    assert len(grid_neighbours(ALPHAS, BETAS, (1, 1))) == 8


@pytest.mark.parametrize("best", [(0.75, 2), (0, -1), (2, 3), (0.25, 0), (1.5, 1)])
def test_refined_search_finds_the_grid_minimum_of_a_smooth_surface_in_fewer_pairs(best):
    def wer(a, b):  # a bowl around `best`, as WER over α, β usually is near its minimum
        return ((a - best[0]) ** 2 + 0.1 * (b - best[1]) ** 2,)

    scores = search_grid(wer, coarse_pairs(ALPHAS, BETAS), (ALPHAS, BETAS))
    full = {p: wer(*p) for p in tune_pairs(ALPHAS, BETAS)}
    assert min(scores, key=scores.get) == min(full, key=full.get) == best
    assert len(scores) <= 22 < len(full) == 35


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model("ctc", tiny(), Vocabulary(list(SPECIALS) + list("|ABCDE"))))
    return path


def test_tune_subsets_the_manifest_and_refines_the_grid(ckpt, real_mini, tiny_lm, tmp_path):
    import soundfile as sf

    files = sorted(real_mini.rglob("*.flac"))[:4]
    rows = [{"id": f"d{i}", "audio": str(f), "num_samples": sf.info(str(f)).frames, "sample_rate": 16000,
             "text": "THE WHITE WHALE", "speaker": f"s{i}"} for i, f in enumerate(files)]
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    minutes = sum(r["num_samples"] for r in rows[:2]) / 16000 / 60 + 1e-3  # about two of the four
    base = ["transcribe", str(ckpt), "--manifest", str(manifest), "--lm", str(tiny_lm), "--beam", "2", "--tune",
            "--tune-alpha", "0,0.5,1,1.5,2", "--tune-beta", "0,1,2", "--jobs", "2", "--out", str(tmp_path / "t.jsonl")]
    res = CliRunner().invoke(app, [*base, "--tune-minutes", f"{minutes:.4f}"])
    assert res.exit_code == 0, res.output
    assert "tuning on 2 utterances" in res.output and "--tune-minutes 0 for all" in res.output
    tried = len((tmp_path / "t.jsonl").read_text().splitlines()) - 1  # less the greedy row
    assert 6 <= tried < 15 and f"{tried} (α, β) pairs of the 15-pair grid" in res.output
    assert "beam search in 2 process(es)" in res.output
    res = CliRunner().invoke(app, [*base, "--tune-full"])
    assert res.exit_code == 0, res.output
    assert "tuning on" not in res.output and "15 (α, β) pairs on 4 utterances" in res.output


def test_a_best_pair_on_the_grids_edge_is_said():
    """The demo walk-through's --tune picked α 0.5, the smallest of its grid, without a word."""
    from w2vcli.commands.transcribe import grid_edge_note

    grid_a, grid_b = [0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 2.0]
    assert grid_edge_note(0.5, 1.0, grid_a, grid_b) == ("note: the best α 0.5 is the smallest of --tune-alpha: "
                                                        "a grid reaching beyond it may find a lower WER")
    assert "β 2 is the largest of --tune-beta" in grid_edge_note(1.0, 2.0, grid_a, grid_b)
    assert grid_edge_note(1.0, 1.0, grid_a, grid_b) is None
    assert grid_edge_note(1.0, 0.0, grid_a, grid_b) is None  # β 0 is as low as it goes
    assert grid_edge_note(1.0, 1.0, [1.0], [1.0]) is None  # a single value is the user's choice
