"""Word-boundary error of `w2v align` and of ctc-segmentation on speech with exactly known
boundaries, and the calibration of `w2v transcribe`'s word confidence.

    OMP_NUM_THREADS=1 python bench/align_accuracy.py [--updates 160] [--tests 40] [--out DIR]
    OMP_NUM_THREADS=1 python bench/align_accuracy.py --demo recipes/demo/exp [--model CKPT] [--hyp F ...] [--out DIR]

Both aligners run on the same emissions of one model: `w2v align`'s word start is its first
letter's first frame, its end its last letter's last frame + 1; ctc-segmentation's start is its
time for the first letter, its end the end of the word's segment (`determine_utterance_segments`
with each word an utterance). Prints the median and 95th percentile of |error| in ms, per
aligner, for starts and ends, the median signed error (bias: + is late), and the model's
greedy CER on the same utterances. The calibration
tables give, per bin of word confidence (the definition in w2vcli/decode/ctc.py), how many
hypothesis words fell in it and the share that are correct (equal to the reference word they
align to, w2vcli.score.align).

Tone mode (default). A tiny CTC model (the `tiny` preset, 41 k parameters, the paper's 20 ms
frames) is trained from scratch for `--updates` updates on the test suite's tone corpus
(tests/train_data.py: each letter A-E a 80 ms tone of its own pitch, a space 40 ms of quiet),
where every word's start and end is known to the sample. Unseen test texts of 3-5 words are
rendered the same way (no quiet at the ends: the model never heard more than 40 ms of it and
writes letters into longer quiet). Calibration: greedy, on the same test utterances.

Demo mode (`--demo EXP`, the folder `recipes/demo/run.sh` writes). The model is the demo's
fine-tuned one (default EXP/seed-0/ft-pretrained-10m/last.pt, `--model` for another); the
speakers and sentences are the demo's test set (EXP/data/test-clean.jsonl: never used in
training). Two sets with known word boundaries:

A. The test set itself, connected speech, with the synthesizers' own word times. Each test
   utterance is synthesized again exactly as `w2v prepare synth` made it (w2vcli/data/synth.py:
   the speaker rebuilt from EXP/corpus/synth.done, the same engine call, `_finish` with the
   utterance's seed) and kept only if that equals the corpus's file to its 16-bit rounding, so
   the times belong to that very audio. A word starts where the segment before its first
   phone ends and ends where its last phone ends (flite's Segment relation through libflite,
   festival's through its Scheme interpreter; divided by the speaker's speed factor). These are
   the synthesizer's labels: where one phone hands over to the next inside connected speech is
   a convention of its duration model, as a human labeller's is; festival's diphone audio runs
   ~30 ms past its last label (wave 1.49 s for labels ending 1.46 s in one check).
B. The same sentences said word by word: each word synthesized on its own by the same speaker,
   trimmed to where its power over a moving 5 ms (about its mean there: DC offsets are not
   speech) is within `TRIM_DB` (40 dB) of the word's loudest 5 ms, joined by pauses drawn
   uniformly from 0-200 ms (digital silence) with 200 ms before the first and after the last,
   then `_finish`; every boundary is known to a sample and is a property of the audio, not of
   a label. But isolated words are not connected speech: each is said as a whole utterance
   (citation form, final lengthening, no coarticulation), the pauses are cleaner than the
   corpus's, every token of a word by one speaker is the same audio, and -40 dB counts the
   weak tails of some voices (flite's slt and rms fade over 100-200 ms) as the word. The
   model's greedy CER on these utterances, printed beside the connected set's, shows how far
   this is from what it was trained on.

Calibration in demo mode is on the test set (connected speech): greedy decoding of the model's
emissions here, and every `--hyp` file (a `w2v transcribe` JSONL output on
EXP/data/test-clean.jsonl; default: the recipe's EXP/seed-0/decode/pretrained-10m/lm.hyp.jsonl
when it exists, the 4-gram beam search with its tuned weights), matched by audio path.
`--out DIR` keeps set B's audio and a manifest with each word's true start and end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench.known_bounds import PAUSE, TRIM_DB, connected_set, demo_speakers, read_rows, word_by_word_set  # noqa: E402
from train_data import SR, make_corpus, random_text, render  # noqa: E402

BINS = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0001])


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
    """(key, audio [S], text, [(start s, end s)] per word) of tone texts with known boundaries."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        text = random_text(rng, words=int(rng.integers(3, 6)))
        wav = render(text, rng)
        bounds, t = [], 0.0
        for w in text.split():
            bounds.append((t, t + 0.08 * len(w)))
            t += 0.08 * len(w) + 0.04
        sf.write(root / f"test-{i:03d}.wav", wav, SR, subtype="FLOAT")
        items.append((f"test-{i:03d}", wav.astype(np.float32), text, bounds))
    return items


# --- measurement ---------------------------------------------------------------------------------
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


def emissions(emitter, wavs: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    return [lp for i in range(0, len(wavs), batch) for lp in emitter.batch(wavs[i:i + batch])]


def boundary_errors(model, fs: float, items, lps: list[np.ndarray]):
    """{aligner: {"start"|"end": [signed error ms]}} (and "key": each word's utterance), the greedy
    {key: text} and {key: reference}, from the emissions `lps` of `items`."""
    from w2vcli.alignment.align import AlignOptions, align_emissions
    from w2vcli.alignment.text import text_words
    from w2vcli.decode.ctc import GreedyDecoder

    errors = {name: {"start": [], "end": [], "key": []} for name in ("w2v align", "ctc-segmentation")}
    refs, hyps = {}, {}
    for (key, _, text, bounds), lp in zip(items, lps, strict=True):
        hyps[key], refs[key] = GreedyDecoder(model.vocab).decode(lp).text, text
        words = text_words(text, model.text_rules, model.vocab)
        a = align_emissions(lp, words, model.vocab.index["|"], fs, AlignOptions())
        ours = [(w.start, w.end) for w in a.words]
        theirs = ctcseg_words(lp, model.vocab, text.split(), fs)
        for name, got in (("w2v align", ours), ("ctc-segmentation", theirs)):
            for (s, e), (ts, te) in zip(got, bounds, strict=True):
                errors[name]["start"].append((s - ts) * 1000)
                errors[name]["end"].append((e - te) * 1000)
                errors[name]["key"].append(key)
    return errors, refs, hyps


def calibration(pairs) -> tuple[np.ndarray, np.ndarray]:
    """(words, correct) per confidence bin over (reference text, [(hyp word, confidence)]) pairs."""
    from w2vcli.score import align

    right, seen = np.zeros(len(BINS) - 1), np.zeros(len(BINS) - 1)
    for ref, words in pairs:
        for op, _, h in align(ref.split(), [w for w, _ in words]):
            if h is not None:
                b = int(np.searchsorted(BINS, words[h][1], side="right")) - 1
                seen[b] += 1
                right[b] += op == "="
    return seen, right


def print_errors(errors) -> None:
    """Median and 95th percentile of |error|, and the median signed error (+: later than the truth)."""
    print("| aligner | start median ms | start p95 ms | end median ms | end p95 ms | start bias ms | end bias ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, e in errors.items():
        s, t = np.abs(e["start"]), np.abs(e["end"])
        row = [np.median(s), np.percentile(s, 95), np.median(t), np.percentile(t, 95), np.median(e["start"]),
               np.median(e["end"])]  # fmt: skip
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in row) + " |")


def print_speakers(errors, speaker_of) -> None:
    """Median |error| per speaker and aligner."""
    print("\n| speaker | aligner | words | start median ms | end median ms |")
    print("|---|---|---:|---:|---:|")
    for spk in sorted({speaker_of(k) for k in errors["w2v align"]["key"]}):
        for name, e in errors.items():
            mine = np.array([speaker_of(k) == spk for k in e["key"]])
            start, end = np.abs(e["start"])[mine], np.abs(e["end"])[mine]
            print(f"| {spk} | {name} | {len(start)} | {np.median(start):.0f} | {np.median(end):.0f} |")


def print_calibration(title: str, seen: np.ndarray, right: np.ndarray) -> None:
    total = f"{100 * right.sum() / seen.sum():.0f}" if seen.sum() else "-"
    print(f"\n| {title} | words | correct % |")
    print("|---|---:|---:|")
    for k in range(len(BINS) - 1):
        share = f"{100 * right[k] / seen[k]:.0f}" if seen[k] else "-"
        print(f"| {BINS[k]:.1f}-{min(BINS[k + 1], 1.0):.1f} | {int(seen[k])} | {share} |")
    print(f"| all | {int(seen.sum())} | {total} |")


def greedy_words(model, lp: np.ndarray) -> list[tuple[str, float]]:
    from w2vcli.decode.ctc import GreedyDecoder

    return [(w.word, w.confidence) for w in GreedyDecoder(model.vocab).decode(lp).words]


def tone_main(args) -> None:
    import w2vcli
    from w2vcli.decode.emissions import EmissionOptions, Emitter
    from w2vcli.score import score_texts

    root = args.out or Path(tempfile.mkdtemp(prefix="align-acc-"))
    root.mkdir(parents=True, exist_ok=True)
    ckpt = train(root, args.updates)
    model = w2vcli.load_ctc_model(ckpt)
    emitter = Emitter(model, EmissionOptions(device="cpu"))
    items = test_set(root, args.tests)
    lps = emissions(emitter, [it[1] for it in items])
    errors, refs, hyps = boundary_errors(model, emitter.frame_seconds, items, lps)
    cer = score_texts(refs, hyps).cer
    print(json.dumps({"checkpoint": str(ckpt), "test_utterances": len(refs), "words": len(errors["w2v align"]["start"]),
                      "greedy_cer": round(cer, 4)}))  # fmt: skip
    print_errors(errors)
    print_calibration("greedy word confidence", *calibration((it[2], greedy_words(model, lp)) for it, lp in zip(items, lps)))


def demo_main(args) -> None:
    import w2vcli
    from w2vcli.audio import load_audio
    from w2vcli.decode.emissions import EmissionOptions, Emitter
    from w2vcli.score import score_texts

    exp = args.demo
    ckpt = args.model or exp / "seed-0" / "ft-pretrained-10m" / "last.pt"
    rows = read_rows(exp / "data" / "test-clean.jsonl")[: args.tests or None]
    model = w2vcli.load_ctc_model(ckpt)
    emitter = Emitter(model, EmissionOptions(device="cpu"))
    fs, texts = emitter.frame_seconds, {r["id"]: r["text"] for r in rows}
    lps = dict(zip(texts, emissions(emitter, [load_audio(r["audio"]) for r in rows])))  # the test set as it is
    greedy = {k: greedy_words(model, lp) for k, lp in lps.items()}
    names = {k: spk.name for k, spk in demo_speakers(exp).items()}
    spk_of = {r["id"]: f"{r['speaker']} ({names[int(r['speaker'])]})" for r in rows}
    print(json.dumps({"checkpoint": str(ckpt), "test_utterances": len(rows),
                      "greedy_cer": round(score_texts(texts, {k: " ".join(w for w, _ in v) for k, v in greedy.items()}).cer, 4)}))  # fmt: skip

    timed, skipped, edges = connected_set(exp, rows)
    for key, why in skipped:
        print(f"{key}: not timed ({why})", file=sys.stderr)
    errors, refs, hyps = boundary_errors(model, fs, timed, [lps[it[0]] for it in timed])
    print(f"\nA. The test set itself (connected speech), word times from the engines' segment labels: "
          f"{len(timed)} of {len(rows)} utterances, {len(errors['w2v align']['start'])} words, "
          f"greedy CER {score_texts(refs, hyps).cer:.4f}. Labels against the audio (medians, + is later): the speech "
          f"(-{TRIM_DB:.0f} dB) begins {np.median([a for a, _ in edges]) * 1000:+.0f} ms from the first word's "
          f"labelled start and ends {np.median([b for _, b in edges]) * 1000:+.0f} ms from the last word's labelled end\n")
    print_errors(errors)
    print_speakers(errors, spk_of.get)

    items = word_by_word_set(exp, rows, args.out)
    errors, refs, hyps = boundary_errors(model, fs, items, emissions(emitter, [it[1] for it in items]))
    print(f"\nB. The same sentences said word by word, boundaries from the audio (-{TRIM_DB:.0f} dB), pauses "
          f"{PAUSE[0] * 1000:.0f}-{PAUSE[1] * 1000:.0f} ms: {len(items)} utterances, "
          f"{len(errors['w2v align']['start'])} words, greedy CER {score_texts(refs, hyps).cer:.4f}\n")
    print_errors(errors)
    print_speakers(errors, spk_of.get)

    print_calibration("greedy word confidence (test set)", *calibration((texts[k], v) for k, v in greedy.items()))
    hyp_files = args.hyp
    if hyp_files is None:
        default = exp / "seed-0" / "decode" / "pretrained-10m" / "lm.hyp.jsonl"
        hyp_files = [default] if default.is_file() else []
    by_audio = {r["audio"]: r["text"] for r in rows}
    for path in hyp_files:
        got = [h for h in read_rows(path) if h.get("audio") in by_audio]
        if len(got) < len(rows):
            print(f"{path}: {len(rows) - len(got)} of {len(rows)} test rows have no hypothesis here", file=sys.stderr)
        pairs = ((by_audio[h["audio"]], [(w["word"], w["confidence"]) for w in h["words"]]) for h in got)
        print_calibration(f"word confidence, {path}", *calibration(pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=160, help="tone mode: training updates")
    ap.add_argument("--tests", type=int, default=None, help="test utterances (tone mode: 40; demo: all)")
    ap.add_argument("--demo", type=Path, default=None, help="the demo recipe's experiment folder: demo mode")
    ap.add_argument("--model", type=Path, default=None, help="demo mode: the checkpoint")
    ap.add_argument("--hyp", type=Path, nargs="*", default=None, help="demo mode: w2v transcribe JSONL outputs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.demo is not None:
        demo_main(args)
    else:
        args.tests = args.tests or 40
        tone_main(args)


if __name__ == "__main__":
    main()
