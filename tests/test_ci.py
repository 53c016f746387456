"""CI fails when the test suite leaves untracked files in the tree (.ci/run with .ci/untracked);
files that were there before the run, and git-ignored ones, do not count."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNTRACKED = REPO / ".ci" / "untracked"


def sh(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)


def test_new_untracked_files_fail_and_old_or_ignored_ones_do_not(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    (repo / ".gitignore").write_text("exp/\n")
    (repo / "mine.txt").write_text("here before the run\n")
    before = tmp_path / "before.txt"
    before.write_text(sh(UNTRACKED, cwd=repo).stdout)
    assert before.read_text().split() == [".gitignore", "mine.txt"]
    (repo / "exp").mkdir()
    (repo / "exp" / "run.log").write_text("ignored\n")
    assert sh(UNTRACKED, "--new-since", before, cwd=repo).returncode == 0
    (repo / "stray.json").write_text("{}\n")
    run = sh(UNTRACKED, "--new-since", before, cwd=repo)
    assert run.returncode == 1 and "  stray.json" in run.stdout, run.stdout


def test_ci_run_checks_after_the_suite():
    text = (REPO / ".ci" / "run").read_text()
    assert text.index(".ci/untracked > ") < text.index("make test") < text.index(".ci/untracked --new-since")
