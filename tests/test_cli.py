import subprocess
import sys

from typer.testing import CliRunner

from w2vcli.cli import app

runner = CliRunner()


def test_help_lists_every_subcommand():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("prepare", "pretrain", "finetune", "transcribe", "score", "lm", "export"):
        assert name in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("w2v ")


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "w2vcli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "transcribe" in out.stdout
