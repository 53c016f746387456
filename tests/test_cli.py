import subprocess
import sys

from typer.testing import CliRunner

from w2vcli.cli import app

runner = CliRunner()


COMMANDS = {"prepare", "pretrain", "finetune", "transcribe", "score", "align", "lm", "export", "serve"}


def listed_commands(output: str) -> set[str]:
    """The names in the first column of --help's Commands section."""
    section = output[output.index("Commands:"):].splitlines()[1:]
    return {line.split()[0] for line in section if line.startswith("  ") and not line.startswith("   ")}


def test_every_command_is_registered_and_listed():
    import typer

    root = typer.main.get_command(app)
    assert set(root.commands) == COMMANDS
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert listed_commands(result.output) == COMMANDS, result.output
    for name in COMMANDS:  # each answers its own --help
        assert runner.invoke(app, [name, "--help"]).exit_code == 0, name


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("w2v ")


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "w2vcli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "transcribe" in out.stdout


def test_atomic_open_gives_normal_permissions_and_keeps_old_file_on_error(tmp_path):
    import os

    import pytest

    from w2vcli.utils import atomic_open

    target = tmp_path / "out.txt"
    with atomic_open(target) as f:
        f.write("first")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
