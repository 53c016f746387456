"""What a new user sees around the commands: one error style, help that marks and groups its
options and names arguments as it documents them, no torch for an argument error, a Ctrl-C
that says what was finished, counts that never read 0.0 M."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from w2vcli.cli import app


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_usage_errors_read_like_every_other_error(tmp_path):
    res = run("finetune", "--out", tmp_path / "x")
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1
    assert res.output.startswith("error: missing option '--train' (see ") and "finetune --help)" in res.output
    assert "Usage:" not in res.output and "Error" not in res.output
    res = run("transcribe")
    assert res.exit_code == 2 and res.output.startswith("error: missing argument 'MODEL'")
    for alone in ([], ["prepare"], ["lm"]):  # a group alone still shows its help
        res = run(*alone)
        assert "Commands:" in res.output and "error:" not in res.output, res.output


def test_help_marks_required_options_groups_them_and_names_arguments():
    ft = run("finetune", "--help").output
    assert "Required (or --from-scratch)" in ft and "[required]" in ft
    for panel in ("Data:", "Model and units:", "Schedule:", "Batches:", "Regularisation:", "Run:"):
        assert f"\n{panel}\n" in ft, panel
    tr = run("transcribe", "--help").output
    assert "transcribe [OPTIONS] MODEL [AUDIO]..." in tr and "{" not in tr.splitlines()[0]
    assert "prepare librispeech [OPTIONS] ROOT" in run("prepare", "librispeech", "--help").output
    assert "lm build [OPTIONS] TEXTS..." in run("lm", "build", "--help").output


def test_command_summaries_are_whole_sentences():
    for args in (["--help"], ["prepare", "--help"]):
        out = run(*args).output
        commands = out[out.index("Commands:"):]
        assert "..." not in commands, commands
    assert "diversity loss)" in run("--help").output  # the end of pretrain's first sentence


@pytest.mark.parametrize("args, error", [
    (["finetune", "--train", "{m}", "--out", "{o}"], "1 False error: --init is required"),
    (["pretrain", "--train", "{m}", "--out", "{o}", "--precision", "fp64"], "1 False error: --precision must be"),
    (["transcribe", "{m}", "a.wav", "--manifest", "{m}"], "1 False error: give either AUDIO files or --manifest"),
    (["serve", "{m}", "--api-key", "short"], "1 False error: --api-key must be at least 8 characters"),
])
def test_argument_errors_come_before_torch_loads(tmp_path, args, error):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("{}\n")
    args = [a.format(m=manifest, o=tmp_path / "o") for a in args]
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom w2vcli.cli import app\n"
            f"r = CliRunner().invoke(app, {args!r})\n"
            "print(r.exit_code, 'torch' in sys.modules, r.output.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith(error), out


def test_interrupted_prepare_says_what_was_finished(tmp_path, monkeypatch):
    import w2vcli.data.librispeech as librispeech

    def interrupted(root, out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        (out / "train-clean.done").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(librispeech, "prepare_librispeech", interrupted)
    (tmp_path / "corpus").mkdir()
    res = run("prepare", "librispeech", tmp_path / "corpus", "--out", tmp_path / "data", "--case", "upper",
              "--word-boundary")
    assert res.exit_code == 130
    assert "interrupted: finished in" in res.output and "train-clean" in res.output
    assert "skips them and prepares the rest" in res.output


@pytest.mark.parametrize("n, text", [(94_395_360, "94.4 M"), (23_600, "23.6 k"), (812, "812")])
def test_counts_never_round_to_zero(n, text):
    from w2vcli.utils import count_text

    assert count_text(n) == text


def test_init_is_compared_with_the_preset_and_the_files_model_table(tmp_path):
    from w2vcli.errors import W2VError
    from w2vcli.model import Wav2Vec2ForPreTraining, get_preset, save_checkpoint
    from w2vcli.train.config import PretrainConfig, resolve

    config = get_preset("tiny").replace(num_layers=1, ffn_dim=48)
    save_checkpoint(tmp_path / "pt.pt", Wav2Vec2ForPreTraining(config))
    layers = [{"preset": "tiny", "init": str(tmp_path / "pt.pt"), "model": {"num_layers": 1, "ffn_dim": 48}}]
    assert resolve(PretrainConfig, None, layers, config).preset == "tiny"  # the recipe continues its own checkpoint
    with pytest.raises(W2VError, match="num_layers"):
        resolve(PretrainConfig, None, [{"preset": "tiny", "init": str(tmp_path / "pt.pt"), "model": {"ffn_dim": 48}}],
                config)


def test_setup_sends_every_installer_through_its_log():
    """scripts/setup.sh prints its own lines only: pip's and apt-get's output (setuptools banners,
    WheelFile lines) goes to tools/setup.log, shown when a step fails."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for script in ("scripts/setup.sh", "scripts/install_kenlm.sh"):
        for line in (root / script).read_text().replace("\\\n", " ").splitlines():
            code = line.split("#")[0]
            if ("pip install" in code or "pip download" in code or "apt-get" in code) and "echo" not in code:
                assert code.lstrip().startswith(("quietly ", "if ! ")) and (">" in code or "quietly" in code), line
    readme = (root / "README.md").read_text()
    assert "through `sudo` when you are not root" in readme and "`make test` from a fresh clone took" in readme
