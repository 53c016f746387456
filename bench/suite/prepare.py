"""prepare: files/s of `w2v prepare librispeech` on a synthetic LibriSpeech tree.

    python -m bench.suite.prepare --files 10000

The tree is generated once into bench/.cache/prepare-<N>/: one short FLAC cut from real speech,
copied under N names (SPK/CHAP/SPK-CHAP-UTT.flac, 100 utterances per chapter) with a
transcript file per chapter. Compared with what fairseq users run for the same job, its
`examples/wav2vec/wav2vec_manifest.py` (walk the tree, `soundfile.info` per file, write a .tsv)
followed by `libri_labels.py` (.wrd/.ltr from the transcripts), re-implemented here in a few
lines, single process as there. Each repetition writes fresh outputs (`--force` for w2v).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import CACHE, REAL_MINI, interleaved, report, timed

PER_CHAPTER = 100


def synthetic_tree(n: int) -> Path:
    """bench/.cache/prepare-N/train-synth/SPK/CHAP/*.flac + .trans.txt (made once)."""
    import soundfile as sf

    root = CACHE / f"prepare-{n}"
    subset = root / "train-synth"
    if (root / ".done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    src = sorted(REAL_MINI.rglob("*.flac"))[0]
    wav, sr = sf.read(str(src), dtype="float32")
    one = root / "one.flac"
    one.parent.mkdir(parents=True)
    sf.write(str(one), wav[: sr // 2], sr, format="FLAC")  # 0.5 s
    data = one.read_bytes()
    for i in range(n):
        spk, chap, utt = 1000 + i // (PER_CHAPTER * 10), (i // PER_CHAPTER) % 10, i % PER_CHAPTER
        d = subset / str(spk) / str(chap)
        if utt == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"{spk}-{chap}-{utt:04d}.flac").write_bytes(data)
        with open(d / f"{spk}-{chap}.trans.txt", "a") as f:
            f.write(f"{spk}-{chap}-{utt:04d} HELLO WORLD NUMBER {i}\n")
    (root / ".done").touch()
    return root


def fairseq_style(root: Path, out: Path) -> None:
    """wav2vec_manifest.py + libri_labels.py: a .tsv of relative paths and frame counts, .wrd and .ltr."""
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    subset = root / "train-synth"
    files = sorted(Path(p) for p in __import__("glob").iglob(str(subset / "**" / "*.flac"), recursive=True))
    with open(out / "train.tsv", "w") as tsv:
        print(subset, file=tsv)
        for f in files:
            print(f"{f.relative_to(subset)}\t{sf.info(str(f)).frames}", file=tsv)
    transcriptions: dict[str, dict[str, str]] = {}
    with open(out / "train.tsv") as tsv, open(out / "train.wrd", "w") as wrd, open(out / "train.ltr", "w") as ltr:
        base = next(tsv).strip()
        for line in tsv:
            rel = line.split("\t")[0]
            d = os.path.dirname(os.path.join(base, rel))
            if d not in transcriptions:
                parts = rel.split("/")
                trans = os.path.join(d, f"{parts[-3]}-{parts[-2]}.trans.txt")
                with open(trans) as t:
                    transcriptions[d] = dict(x.strip().split(" ", 1) for x in t)
            text = transcriptions[d][os.path.basename(rel).split(".")[0]]
            print(text, file=wrd)
            print(" ".join(text.replace(" ", "|")) + " |", file=ltr)


def run(n: int, reps: int) -> float:
    root = synthetic_tree(n)
    w2v = [sys.executable, "-m", "w2vcli", "prepare", "librispeech", str(root), "--force"]
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        def ours() -> float:
            subprocess.run([*w2v, "--out", str(Path(tmp) / "w2v")], check=True, capture_output=True)
            return n

        def ref() -> float:
            fairseq_style(root, Path(tmp) / "fairseq")
            return n

        speeds = interleaved({"w2v": lambda: n / timed(ours), "fairseq-scripts": lambda: n / timed(ref)}, reps, warmup=0)
    return report("prepare", speeds, f"files/s ({n} files)", ref="fairseq-scripts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    run(a.files, a.reps)


if __name__ == "__main__":
    main()
