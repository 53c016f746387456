"""How far `w2v pretrain` travels from w2vcli/cli.py to the write of OUT/last.pt.

Runs `w2v pretrain --preset tiny --max-updates 1` in this process on a tiny synthetic corpus
with a `sys.setprofile` tracer that records every call from one w2vcli function to another
(frames of torch, typer and the standard library in between are skipped). When `torch.save`
starts writing last.pt, the w2vcli frames on the stack are "the chain". It reports:

    chain depth    w2vcli functions on the stack at the write, from cli.py down
    chain files    distinct w2vcli files on that stack
    hops           distinct w2vcli functions a reader follows: the chain's functions and every
                   w2vcli function they call directly (the side trips off the chain; a module's
                   first import is not a hop)
    files          distinct w2vcli files those hops live in

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/call_path.py [--list]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(ROOT / "w2vcli") + os.sep
SR = 16000


def make_corpus(folder: Path, n: int = 4) -> Path:
    """`n` one-second tone utterances and their manifest."""
    import json

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        t = np.arange(SR) / SR
        wav = (0.5 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(SR)).astype(np.float32)
        path = folder / f"utt{i}.wav"
        sf.write(path, wav, SR, subtype="FLOAT")
        rows.append({"id": f"utt{i}", "audio": str(path), "num_samples": SR, "sample_rate": SR})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def name(code) -> str:
    return f"{os.path.relpath(code.co_filename, ROOT)}:{code.co_qualname}"


class Tracer:
    """Records w2vcli caller -> callee edges, and the w2vcli stack when last.pt is written."""

    def __init__(self):
        self.edges: dict[tuple, None] = {}  # insertion-ordered set of (caller code, callee code)
        self.chain: list | None = None

    def __call__(self, frame, event, _arg):
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(PACKAGE) or code.co_name == "<module>":
            return
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(PACKAGE):
            caller = caller.f_back
        if caller is not None:
            self.edges.setdefault((caller.f_code, frame.f_code), None)

    def saw_save(self, target) -> None:
        where = getattr(target, "name", target)
        if isinstance(where, int):  # a file opened from a descriptor (atomic_open)
            where = os.readlink(f"/proc/self/fd/{where}")
        if self.chain is None and Path(where).name.startswith(".last.pt."):
            frame, stack = sys._getframe(2), []
            while frame is not None:
                if frame.f_code.co_filename.startswith(PACKAGE):
                    stack.append(frame.f_code)
                frame = frame.f_back
            self.chain = stack[::-1]


def main() -> None:
    from typer.testing import CliRunner

    from w2vcli.cli import app

    tracer = Tracer()
    save = torch.save

    def traced_save(obj, f, *args, **kwargs):
        tracer.saw_save(f)
        return save(obj, f, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_corpus(Path(tmp))
        args = ["pretrain", "--train", str(manifest), "--out", str(Path(tmp) / "out"), "--preset", "tiny",
                "--max-updates", "1", "--max-tokens", "64000", "--num-workers", "0", "--threads", "1"]
        torch.save = traced_save
        sys.setprofile(tracer)
        try:
            result = CliRunner().invoke(app, args)
        finally:
            sys.setprofile(None)
            torch.save = save
        if result.exit_code != 0:
            raise SystemExit(f"w2v pretrain failed:\n{result.output}\n{result.exception!r}")
    if tracer.chain is None:
        raise SystemExit("last.pt was never written through torch.save")
    on_chain = set(tracer.chain)
    hops = list(dict.fromkeys([*tracer.chain, *(callee for caller, callee in tracer.edges if caller in on_chain)]))
    files = sorted({os.path.relpath(c.co_filename, ROOT) for c in hops})
    chain_files = sorted({os.path.relpath(c.co_filename, ROOT) for c in tracer.chain})
    print(f"chain depth {len(tracer.chain)}, chain files {len(chain_files)}, hops {len(hops)}, files {len(files)}")
    if "--list" in sys.argv:
        print("chain:\n  " + "\n  ".join(name(c) for c in tracer.chain))
        print("files:\n  " + "\n  ".join(files))
        print("hops:\n  " + "\n  ".join(name(c) for c in hops))


if __name__ == "__main__":
    main()
