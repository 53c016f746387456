"""Word-boundary error of `w2v align` and of ctc-segmentation on speech with exactly known boundaries.

    OMP_NUM_THREADS=1 python bench/studies/align_accuracy.py [--updates 160] [--out DIR]

No model the demo recipe trains can serve here: their character error rate is 73-94 %
(docs/demo-results.md), so any aligner's times on them measure the model. Instead a tiny CTC
model (the `tiny` preset, 41 k parameters, the paper's 20 ms frames) is trained from scratch
for `--updates` updates on the test suite's tone corpus (tests/train_data.py: each letter A-E a
80 ms tone of its own pitch, a space 40 ms of quiet), where every word's start and end is known
to the sample. Unseen test texts of 3-5 words are rendered the same way (no quiet at the ends: the model never heard
more than 40 ms of it and writes letters into longer quiet),
and both aligners run on the same emissions: `w2v align`'s word start is its first letter's
first frame, its end its last letter's last frame + 1; ctc-segmentation's start is its time for
the first letter, its end the end of the word's segment (`determine_utterance_segments` with
each word an utterance). Prints the median and 95th percentile of |error| in ms, per aligner,
for starts and ends, and the model's greedy CER on the test texts.

It also prints the calibration of `w2v transcribe`'s word confidence (greedy decoding, the
definition in w2vcli/decode/ctc.py) on the same test utterances: the share of hypothesis words
that are correct (equal to the reference word they align to, w2vcli.score.align) per bin.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from train_data import SR, make_corpus, random_text, render  # noqa: E402


def train(root: Path, updates: int) -> Path:
    from typer.testing import CliRunner

    from w2vcli.cli import app

    tr, dev = make_corpus(root, "train", 24, seed=0), make_corpus(root, "dev", 16, seed=1)
    out = root / "ft"
    args = ["finetune", "--from-scratch", "--preset", "tiny", "--train", tr, "--valid", dev, "--out", out,
            "--max-tokens", "64000", "--num-workers", "0", "--seed", "3", "--max-updates", updates, "--lr", "5e-3",
            "--mask-prob", "0.05", "--valid-interval", updates, "--precision", "fp32"]  # fmt: skip
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exit_code != 0:
        raise SystemExit(res.output)
    return out / "last.pt"


def test_set(root: Path, n: int, seed: int = 7):
    """(audio path, text, [(start s, end s)] per word) with known boundaries."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        text = random_text(rng, words=int(rng.integers(3, 6)))
        wav = render(text, rng)
        bounds, t = [], 0.0
        for w in text.split():
            bounds.append((t, t + 0.08 * len(w)))
            t += 0.08 * len(w) + 0.04
        path = root / f"test-{i:03d}.wav"
        sf.write(path, wav, SR, subtype="FLOAT")
        items.append((path, text, bounds))
    return items


def ctcseg_words(lp: np.ndarray, vocab, words: list[str], fs: float) -> list[tuple[float, float]]:
    import ctc_segmentation as cs

    cfg = cs.CtcSegmentationParameters()
    cfg.char_list = vocab.tokens
    cfg.index_duration = fs
    cfg.blank = 0
    gt, starts = cs.prepare_text(cfg, words)
    timings, probs, _ = cs.ctc_segmentation(cfg, lp.astype(np.float64), gt)
    segs = cs.determine_utterance_segments(cfg, starts, probs, timings, words)
    return [(float(timings[starts[i] + 1]), float(segs[i][1])) for i in range(len(words))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=160)
    ap.add_argument("--tests", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import w2vcli
    from w2vcli.alignment.align import AlignOptions, align_emissions
    from w2vcli.alignment.text import text_words
    from w2vcli.audio import load_audio
    from w2vcli.decode.ctc import GreedyDecoder
    from w2vcli.decode.emissions import EmissionOptions, Emitter
    from w2vcli.score import align, score_texts

    root = args.out or Path(tempfile.mkdtemp(prefix="align-acc-"))
    root.mkdir(parents=True, exist_ok=True)
    ckpt = train(root, args.updates)
    model = w2vcli.load_ctc_model(ckpt)
    emitter = Emitter(model, EmissionOptions(device="cpu"))
    fs = emitter.frame_seconds
    errors = {"w2v align": {"start": [], "end": []}, "ctc-segmentation": {"start": [], "end": []}}
    refs, hyps = {}, {}
    bins = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0001])
    right, seen = np.zeros(len(bins) - 1), np.zeros(len(bins) - 1)
    for path, text, bounds in test_set(root, args.tests):
        lp = emitter.batch([load_audio(path)])[0]
        hyp = GreedyDecoder(model.vocab).decode(lp)
        hyps[path.stem], refs[path.stem] = hyp.text, text
        for op, _, h in align(text.split(), hyp.text.split()):
            if h is not None:
                b = int(np.searchsorted(bins, hyp.words[h].confidence, side="right")) - 1
                seen[b] += 1
                right[b] += op == "="
        words = text_words(text, model.text_rules, model.vocab)
        a = align_emissions(lp, words, model.vocab.index["|"], fs, AlignOptions())
        ours = [(w.start, w.end) for w in a.words]
        theirs = ctcseg_words(lp, model.vocab, text.split(), fs)
        for name, got in (("w2v align", ours), ("ctc-segmentation", theirs)):
            for (s, e), (ts, te) in zip(got, bounds):
                errors[name]["start"].append(abs(s - ts) * 1000)
                errors[name]["end"].append(abs(e - te) * 1000)
    cer = score_texts(refs, hyps).cer
    print(json.dumps({"checkpoint": str(ckpt), "test_utterances": len(refs), "words": len(errors["w2v align"]["start"]),
                      "greedy_cer": round(cer, 4)}))  # fmt: skip
    print("| aligner | start median ms | start p95 ms | end median ms | end p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, e in errors.items():
        row = [np.median(e["start"]), np.percentile(e["start"], 95), np.median(e["end"]), np.percentile(e["end"], 95)]
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in row) + " |")
    print("\n| greedy word confidence | words | correct % |")
    print("|---|---:|---:|")
    for k in range(len(bins) - 1):
        share = f"{100 * right[k] / seen[k]:.0f}" if seen[k] else "-"
        print(f"| {bins[k]:.1f}-{min(bins[k + 1], 1.0):.1f} | {int(seen[k])} | {share} |")


if __name__ == "__main__":
    main()
