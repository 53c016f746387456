"""How far `w2v pretrain` travels from w2vcli/cli.py to the write of OUT/last.pt, and which files
`w2v pretrain` and `w2v transcribe` run code in (docs/architecture.md names them all;
tests/test_architecture.py keeps it so).

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
    ran            every w2vcli file a function of the run was called in (imports aside)

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/call_path.py [--list]
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/call_path.py --transcribe [--list]   # `ran` only
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
        self.ran: set[str] = set()  # files, relative to the repository

    def __call__(self, frame, event, _arg):
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(PACKAGE) or code.co_name == "<module>":
            return
        if frame.f_back is None or frame.f_back.f_code.co_name != "<module>":  # not called by an import
            self.ran.add(os.path.relpath(code.co_filename, ROOT))
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


def traced(tracer: Tracer, args: list[str]) -> None:
    """Run `w2v ARGS` in this process under `tracer`."""
    from typer.testing import CliRunner

    from w2vcli.cli import app

    save = torch.save

    def traced_save(obj, f, *a, **kw):
        tracer.saw_save(f)
        return save(obj, f, *a, **kw)

    torch.save = traced_save
    sys.setprofile(tracer)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        sys.setprofile(None)
        torch.save = save
    if result.exit_code != 0:
        raise SystemExit(f"w2v {args[0]} failed:\n{result.output}\n{result.exception!r}")


def pretrain_path(tmp: Path) -> Tracer:
    tracer = Tracer()
    manifest = make_corpus(tmp)
    traced(tracer, ["pretrain", "--train", str(manifest), "--out", str(tmp / "out"), "--preset", "tiny",
                    "--max-updates", "1", "--max-tokens", "64000", "--num-workers", "0", "--threads", "1"])
    if tracer.chain is None:
        raise SystemExit("last.pt was never written through torch.save")
    return tracer


def transcribe_path(tmp: Path) -> Tracer:
    """`w2v transcribe MODEL a.wav b.wav --out-dir` with a tiny random CTC checkpoint."""
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import get_preset

    make_corpus(tmp, 2)
    save_checkpoint(tmp / "ctc.pt", build_model("ctc", get_preset("tiny"), librispeech_vocab()))
    tracer = Tracer()
    traced(tracer, ["transcribe", str(tmp / "ctc.pt"), str(tmp / "utt0.wav"), str(tmp / "utt1.wav"),
                    "--out-dir", str(tmp / "out"), "--threads", "1"])
    return tracer


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if "--transcribe" in sys.argv:
            tracer = transcribe_path(Path(tmp))
            print(f"ran {len(tracer.ran)} files")
            if "--list" in sys.argv:
                print("ran:\n  " + "\n  ".join(sorted(tracer.ran)))
            return
        tracer = pretrain_path(Path(tmp))
    on_chain = set(tracer.chain)
    hops = list(dict.fromkeys([*tracer.chain, *(callee for caller, callee in tracer.edges if caller in on_chain)]))
    files = sorted({os.path.relpath(c.co_filename, ROOT) for c in hops})
    chain_files = sorted({os.path.relpath(c.co_filename, ROOT) for c in tracer.chain})
    print(f"chain depth {len(tracer.chain)}, chain files {len(chain_files)}, hops {len(hops)}, files {len(files)}, "
          f"ran {len(tracer.ran)} files")
    if "--list" in sys.argv:
        print("chain:\n  " + "\n  ".join(name(c) for c in tracer.chain))
        print("files:\n  " + "\n  ".join(files))
        print("hops:\n  " + "\n  ".join(name(c) for c in hops))
        print("ran:\n  " + "\n  ".join(sorted(tracer.ran)))


if __name__ == "__main__":
    main()
