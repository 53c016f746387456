"""The import graph of w2vcli/ has no circle (scripts/imports.py), and the lazy imports left are
few: each loads a library its module does not load otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import imports  # noqa: E402


def test_the_import_graph_has_no_circle():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "imports.py")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.rstrip().endswith("no import circle")
    edges, _ = imports.graph()
    assert "w2vcli.model.load" in edges["w2vcli"] and not edges["w2vcli.model.checkpoint"] & {
        "w2vcli.model.load", "w2vcli.model.hf_dir", "w2vcli.model.fairseq", "w2vcli.model.onnx"}


def test_every_lazy_import_says_why():
    _, inner = imports.graph()
    silent = [f"{path}:{line}" for path, line, what in inner if what.endswith("(no reason)")]
    assert not silent, silent


# FastAPI and uvicorn (the optional extra [serve]) made unimportable, as where they are not installed
WITHOUT_SERVE = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
"""


def test_the_library_and_transcribe_need_no_serve_extra(tmp_path):
    code = WITHOUT_SERVE + """
import numpy as np, soundfile as sf, torch
from typer.testing import CliRunner
import w2vcli
from w2vcli.cli import app
from w2vcli.model.checkpoint import build_model, save_checkpoint
from w2vcli.model.config import tiny
from w2vcli.text import SPECIALS, Vocabulary

torch.manual_seed(0)
model = build_model("ctc", tiny(), Vocabulary(list(SPECIALS) + list("|ETAONIHS"))).eval()
wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
print("api", w2vcli.transcribe(model, wav).to_dict()["duration"])
save_checkpoint(sys.argv[1] + "/m.pt", model)
sf.write(sys.argv[1] + "/a.wav", wav, 16000)
r = CliRunner().invoke(app, ["transcribe", sys.argv[1] + "/m.pt", sys.argv[1] + "/a.wav", "--format", "jsonl"])
print("transcribe", r.exit_code, '"duration": 1.0' in r.output)
r = CliRunner().invoke(app, ["serve", sys.argv[1] + "/m.pt"])
print("serve", r.exit_code, r.output.strip())
print("loaded", sorted({m.split(".")[0] for m in sys.modules} & {"fastapi", "starlette", "uvicorn"}))
"""
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "api 1.0" and lines[1] == "transcribe 0 True", run.stdout
    assert lines[2].startswith("serve 1 error: w2v serve needs FastAPI and uvicorn"), run.stdout
    assert "pip install 'w2vcli[serve]'" in lines[2] and lines[3] == "loaded []", run.stdout


def test_a_circle_is_found_and_fails_the_script(tmp_path):
    assert imports.find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert imports.find_cycle({"a": {"b"}, "b": set()}) is None
    pkg = tmp_path / "w2vcli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from w2vcli import y  # still an arrow\n")
    (pkg / "y.py").write_text("import w2vcli.x\n")
    edges, inner = imports.graph(tmp_path)
    assert edges["w2vcli.x"] == {"w2vcli.y"} and edges["w2vcli.y"] == {"w2vcli.x"}
    assert [(line, what) for _, line, what in inner] == [(2, "w2vcli.y (no reason)")]
    assert imports.find_cycle(edges) == ["w2vcli.x", "w2vcli.y", "w2vcli.x"]
