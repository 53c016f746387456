"""Word-boundary error of `w2v align` and of ctc-segmentation on speech with exactly known
boundaries, and the calibration of `w2v transcribe`'s word confidence.

    OMP_NUM_THREADS=1 python bench/align_accuracy.py [--updates 160] [--tests 40] [--out DIR]
    OMP_NUM_THREADS=1 python bench/align_accuracy.py --demo recipes/demo/exp [--model CKPT] [--hyp F ...] [--out DIR]

Both aligners run on the same emissions of one model: `w2v align`'s word start is its first
letter's first frame, its end its last letter's last frame + 1; ctc-segmentation's start is its
time for the first letter, its end the end of the word's segment (`determine_utterance_segments`
with each word an utterance). Prints the median and 95th percentile of |error| in ms, per
aligner, for starts and ends, and the model's greedy CER on the same utterances. The calibration
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
fine-tuned one (default EXP/seed-0/ft-pretrained-10m/last.pt, `--model` for another). The
speech with known boundaries is the demo's test set (EXP/data/test-clean.jsonl: sentences and
speakers never used in training) said again word by word: each word of a sentence is
synthesized on its own with that test speaker's engine, voice and duration stretch
(w2vcli/data/synth.py: `make_speakers` with the corpus's settings from EXP/corpus/synth.done,
the same engine calls), trimmed to where its power over a moving 5 ms (about its mean there:
DC offsets are not speech) is within `TRIM_DB` (40 dB) of the word's loudest 5 ms, and the
words are joined by pauses drawn uniformly from 0-200 ms (digital
silence), with 200 ms before the first and after the last. `_finish` (the corpus's own resampling
by the speaker's speed, level and noise floor) then makes the 16 kHz audio, so every word's
start and end is known to a sample at the engine's rate. Word by word rather than the engines'
segment timings of connected speech because it works the same for all four test voices (flite
reports no timings through its command line or w2v's in-process calls; festival, one of the
four, does) and because the boundary is then a property of the audio, not of a synthesizer's
label. The price: isolated words are not connected speech. Each word is said as a whole
utterance (citation form, its own final lengthening and falling pitch, no coarticulation
across the boundary), the pauses are cleaner than the corpus's, and every token of a word by
one speaker is the same audio; the model hears audio unlike its training data, which its
greedy CER on these utterances (printed) shows against its CER on the connected test set.
The boundaries also depend on the threshold: a weak final fricative or a release ("five",
"eight") fades over 20-60 ms, and -40 dB puts its end late in the fade.

Calibration in demo mode is on the demo's real test set (connected speech): greedy decoding
of the model's emissions here, and every `--hyp` file (a `w2v transcribe` JSONL output on
EXP/data/test-clean.jsonl; default: the recipe's EXP/seed-0/decode/pretrained-10m/lm.hyp.jsonl
when it exists, the 4-gram beam search with its tuned weights), matched by audio path.
`--out DIR` keeps the word-by-word audio and a manifest with each word's true start and end.
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

from train_data import SR, make_corpus, random_text, render  # noqa: E402

TRIM_DB = 40.0  # a word spans the samples whose 5 ms moving RMS is within this of its loudest
TRIM_WINDOW = 0.005  # s
PAUSE = (0.0, 0.2)  # s, uniform, between words
EDGE = 0.2  # s of silence before the first word and after the last
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


# --- known boundaries from word-by-word synthesis (demo mode) ----------------------------------
def trim(wav: np.ndarray, sr: int, floor_db: float = TRIM_DB, window: float = TRIM_WINDOW) -> tuple[int, int]:
    """[first, last + 1) samples whose power in a centred `window` s (its variance there: about the
    window's own mean) is within `floor_db` of the loudest; (0, 0) for silence. The variance, not
    the mean square: festival's diphone voices leave a DC offset in their trailing silence, 35 dB
    below a short word's peak, which would otherwise count as speech."""
    x = wav.astype(np.float64)
    box = np.ones(max(1, int(round(window * sr)))) / max(1, int(round(window * sr)))
    power = np.maximum(np.convolve(x**2, box, mode="same") - np.convolve(x, box, mode="same") ** 2, 0.0)  # [S]
    loud = np.flatnonzero(power >= power.max() * 10 ** (-floor_db / 10)) if power.max() > 0 else []
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)


def say_words(spk, words: list[str], tmp: str) -> dict[str, tuple[np.ndarray, int]]:
    """Each distinct word synthesized alone by `spk` (one engine call for all), trimmed: word ->
    (audio at the engine's rate, rate)."""
    from w2vcli.data.synth import ENGINES

    distinct = sorted(set(words))
    out = {}
    for word, (wav, sr) in zip(distinct, ENGINES[spk.engine](spk, distinct, tmp)):
        a, b = trim(wav, sr)
        if b <= a:
            raise SystemExit(f"{spk.name}: '{word}' came out silent")
        out[word] = (wav[a:b], sr)
    return out


def join_words(spk, text: str, cut: dict[str, tuple[np.ndarray, int]], rng: np.random.Generator):
    """16 kHz audio of `text`'s words from `cut` with drawn pauses, through synth's `_finish`, and
    each word's (start s, end s)."""
    from w2vcli.data.synth import _finish

    srs = {cut[w][1] for w in text.split()}
    if len(srs) != 1:
        raise SystemExit(f"{spk.name}: words at several sample rates {sorted(srs)}")
    sr = srs.pop()
    rate = sr * spk.speed  # _finish resamples by the speed factor: a sample at sr lasts 1 / (sr * speed) s
    edge = int(round(EDGE * rate))
    pieces, bounds, at = [np.zeros(edge, np.float32)], [], edge
    for k, word in enumerate(text.split()):
        if k:
            gap = int(round(rng.uniform(*PAUSE) * rate))
            pieces.append(np.zeros(gap, np.float32))
            at += gap
        pieces.append(cut[word][0])
        bounds.append((at, at + len(cut[word][0])))
        at += len(cut[word][0])
    pieces.append(np.zeros(edge, np.float32))
    return _finish(np.concatenate(pieces), sr, spk, rng), [(a / rate, b / rate) for a, b in bounds]


def demo_speakers(exp: Path) -> dict[int, object]:
    """The corpus's speakers by id, rebuilt from the settings in its synth.done marker."""
    from w2vcli.data.synth import make_speakers

    marker = exp / "corpus" / "synth.done"
    if not marker.is_file():
        raise SystemExit(f"{marker}: not found (run recipes/demo/run.sh first)")
    cfg = json.loads(marker.read_text(encoding="utf-8"))["config"]
    n = cfg["train_speakers"] + 2 * cfg["heldout_speakers"]
    return {s.id: s for s in make_speakers(n, cfg["seed"])}


def read_rows(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read JSONL ({exc})") from None


def word_by_word_set(exp: Path, rows: list[dict], out: Path | None, seed: int = 11):
    """(key, audio [S], text, bounds) for each test row, said again word by word by its speaker."""
    speakers = demo_speakers(exp)
    by_spk: dict[int, list[dict]] = {}
    for r in rows:
        by_spk.setdefault(int(r["speaker"]), []).append(r)
    items = []
    with tempfile.TemporaryDirectory(prefix="align-acc-synth-") as tmp:
        for sid, spk_rows in sorted(by_spk.items()):
            spk = speakers[sid]
            cut = say_words(spk, [w for r in spk_rows for w in r["text"].split()], tmp)
            for r in spk_rows:
                rng = np.random.default_rng([seed, sid, len(items)])
                wav, bounds = join_words(spk, r["text"], cut, rng)
                items.append((r["id"], wav, r["text"], bounds))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "word-by-word.jsonl", "w", encoding="utf-8") as f:
            for key, wav, text, bounds in items:
                sf.write(out / f"{key}.flac", wav, SR)
                words = [{"word": w, "start": round(a, 5), "end": round(b, 5)} for w, (a, b) in zip(text.split(), bounds)]
                f.write(json.dumps({"id": key, "audio": str(out / f"{key}.flac"), "text": text, "words": words}) + "\n")
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
    """{aligner: {"start"|"end": [|error| ms]}} (and "key": each word's utterance), the greedy
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
                errors[name]["start"].append(abs(s - ts) * 1000)
                errors[name]["end"].append(abs(e - te) * 1000)
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
    print("| aligner | start median ms | start p95 ms | end median ms | end p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, e in errors.items():
        row = [np.median(e["start"]), np.percentile(e["start"], 95), np.median(e["end"]), np.percentile(e["end"], 95)]
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in row) + " |")


def print_speakers(errors, speaker_of) -> None:
    """Median |error| per speaker and aligner."""
    print("\n| speaker | aligner | words | start median ms | end median ms |")
    print("|---|---|---:|---:|---:|")
    for spk in sorted({speaker_of(k) for k in errors["w2v align"]["key"]}):
        for name, e in errors.items():
            mine = np.array([speaker_of(k) == spk for k in e["key"]])
            start, end = np.array(e["start"])[mine], np.array(e["end"])[mine]
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
    manifest = exp / "data" / "test-clean.jsonl"
    rows = read_rows(manifest)[: args.tests or None]
    model = w2vcli.load_ctc_model(ckpt)
    emitter = Emitter(model, EmissionOptions(device="cpu"))
    items = word_by_word_set(exp, rows, args.out)
    errors, refs, hyps = boundary_errors(model, emitter.frame_seconds, items, emissions(emitter, [it[1] for it in items]))
    # the same sentences as the corpus says them (connected speech): greedy CER and calibration
    lps = emissions(emitter, [load_audio(r["audio"]) for r in rows])
    connected = {r["id"]: greedy_words(model, lp) for r, lp in zip(rows, lps)}
    print(json.dumps({
        "checkpoint": str(ckpt), "test_utterances": len(rows), "words": len(errors["w2v align"]["start"]),
        "speakers": sorted({r["speaker"] for r in rows}),
        "greedy_cer_word_by_word": round(score_texts(refs, hyps).cer, 4),
        "greedy_cer_connected": round(score_texts(refs, {k: " ".join(w for w, _ in v) for k, v in connected.items()}).cer, 4),
        "trim_db": TRIM_DB, "pause_s": PAUSE, "edge_s": EDGE}))  # fmt: skip
    print_errors(errors)
    names = {str(k): spk.name for k, spk in demo_speakers(exp).items()}
    spk_of = {r["id"]: f"{r['speaker']} ({names[str(r['speaker'])]})" for r in rows}
    print_speakers(errors, spk_of.get)
    texts = {r["id"]: r["text"] for r in rows}
    print_calibration("greedy word confidence (connected test set)",
                      *calibration((texts[k], v) for k, v in connected.items()))
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
