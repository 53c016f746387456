"""Word-boundary error of `w2v align` and of ctc-segmentation on speech with exactly known
boundaries, and the calibration of `w2v transcribe`'s word confidence.

    OMP_NUM_THREADS=1 python bench/studies/align_accuracy.py [--updates 160] [--tests 40] [--out DIR]
    OMP_NUM_THREADS=1 python bench/studies/align_accuracy.py --demo recipes/demo/exp [--model CKPT] [--hyp F ...] [--out DIR]

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

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from train_data import SR, make_corpus, random_text, render  # noqa: E402

from w2vcli.audio import SAMPLE_RATE  # noqa: E402

# --- speech with known word boundaries in the demo's domain and voices (demo mode, sets A and B) ---
# Both rebuild the demo corpus's speakers from EXP/corpus/synth.done and call the engines as
# w2vcli/data/synth.py does (its private `_flite_lib`, `_finish` and friends: this is a
# benchmark, and the point is the very same samples).

TRIM_DB = 40.0  # a word spans the samples whose 5 ms power (about its mean) is within this of its loudest
TRIM_WINDOW = 0.005  # s
PAUSE = (0.0, 0.2)  # s, uniform, between words
EDGE = 0.2  # s of silence before the first word and after the last


# --- set B: word by word, boundaries from the audio ----------------------------------------------
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
                sf.write(out / f"{key}.flac", wav, SAMPLE_RATE)
                words = [{"word": w, "start": round(a, 5), "end": round(b, 5)} for w, (a, b) in zip(text.split(), bounds)]
                f.write(json.dumps({"id": key, "audio": str(out / f"{key}.flac"), "text": text, "words": words}) + "\n")
    return items


# --- set A: connected speech, the engines' own word times ----------------------------------------
WORD_START = b"R:SylStructure.daughter1.daughter1.R:Segment.p.end"  # end of the segment before its first
WORD_END = b"R:SylStructure.daughtern.daughtern.R:Segment.end"  # end of its last segment


def _flite_api(voice: str):
    """libflite with the utterance calls typed, and the registered voice (w2vcli/data/synth.py loads them)."""
    import ctypes

    from w2vcli.data import synth

    lib, vox = synth._flite_lib(voice)
    if lib is None:
        raise SystemExit("libflite not found: run scripts/setup.sh")
    p, s = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (("flite_synth_text", p, [s, p]), ("utt_wave", ctypes.POINTER(synth._Wave), [p]),
                            ("utt_relation", p, [p, s]), ("relation_head", p, [p]), ("item_next", p, [p]),
                            ("ffeature_float", ctypes.c_float, [p, s]), ("delete_utterance", None, [p])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib, vox, synth._FLITE["libc"]


def flite_timed(spk, texts: list[str], tmp: str) -> list[tuple[np.ndarray, int, list[tuple[float, float]]]]:
    """(audio, rate, each word's (start s, end s) at that rate) per text: the same samples as
    synth's `_flite` (same stretch, same srand), the times from flite's Segment relation."""
    lib, vox, libc = _flite_api(spk.voice)
    out = []
    for text in texts:
        lib.flite_feat_set_float(vox.contents.features, b"duration_stretch", spk.stretch)
        libc.srand(1)
        utt = lib.flite_synth_text(text.lower().encode(), vox)
        w = lib.utt_wave(utt)
        pcm = np.ctypeslib.as_array(w.contents.samples, shape=(w.contents.num_samples,)).astype(np.float32) / 32768.0
        words, item = [], lib.relation_head(lib.utt_relation(utt, b"Word"))
        while item:
            words.append((float(lib.ffeature_float(item, WORD_START)), float(lib.ffeature_float(item, WORD_END))))
            item = lib.item_next(item)
        out.append((pcm, int(w.contents.sample_rate), words))
        lib.delete_utterance(utt)
    return out


def festival_timed(spk, texts: list[str], tmp: str) -> list[tuple[np.ndarray, int, list[tuple[float, float]]]]:
    """The same as `flite_timed` through one festival run (synth's `_festival` script, which also
    prints each word's times)."""
    import subprocess

    from w2vcli.data.synth import FESTIVAL_VOICES, _read_wav

    script = [f"(voice_{FESTIVAL_VOICES[spk.voice]})", f"(Parameter.set 'Duration_Stretch {spk.stretch})"]
    paths = [str(Path(tmp) / f"fest{k}.wav") for k in range(len(texts))]
    for k, (text, path) in enumerate(zip(texts, paths)):
        script += [f'(set! u (SynthText "{text.lower()}"))', f"(utt.save.wave u \"{path}\" 'riff)",
                   f'(format t "U\\t{k}\\n")',
                   f'(mapcar (lambda (w) (format t "W\\t%s\\t%s\\n" (item.feat w "{WORD_START.decode()}") '
                   f'(item.feat w "{WORD_END.decode()}"))) (utt.relation.items u \'Word))']
    scm = Path(tmp) / "timed.scm"
    scm.write_text("\n".join(script) + "\n", encoding="utf-8")
    res = subprocess.run(["festival", "-b", str(scm)], check=True, capture_output=True, text=True)
    words: list[list[tuple[float, float]]] = [[] for _ in texts]
    k = -1
    for line in res.stdout.splitlines():
        f = line.split("\t")
        if f[0] == "U":
            k = int(f[1])
        elif f[0] == "W" and k >= 0:
            words[k].append((float(f[1]), float(f[2])))
    return [(*_read_wav(p), w) for p, w in zip(paths, words)]


TIMED = {"flite": flite_timed, "festival": festival_timed}


def connected_set(exp: Path, rows: list[dict]):
    """(key, audio [S], text, bounds) for the test rows whose audio the engine gives again, the
    corpus's own file with the engine's word times; the rows it could not time, with why; and per
    kept row, where `trim` finds the speech begin and end minus the first word's labelled start
    and the last word's labelled end (s): a check that labels and audio agree.

    Each row is synthesized again exactly as `w2v prepare synth` made it (the engine call, then
    `_finish` with the row's seed), and kept only if that equals the file in the corpus (to its
    16-bit rounding): then the times belong to that very audio."""
    from w2vcli.audio import load_audio
    from w2vcli.data.synth import _finish

    cfg_seed = json.loads((exp / "corpus" / "synth.done").read_text(encoding="utf-8"))["config"]["seed"]
    speakers = demo_speakers(exp)
    by_spk: dict[int, list[dict]] = {}
    for r in rows:
        by_spk.setdefault(int(r["speaker"]), []).append(r)
    items, skipped, edges = [], [], []
    with tempfile.TemporaryDirectory(prefix="align-acc-timed-") as tmp:
        for sid, spk_rows in sorted(by_spk.items()):
            spk = speakers[sid]
            if spk.engine not in TIMED:
                skipped += [(r["id"], f"no timings from {spk.engine}") for r in spk_rows]
                continue
            for r, (pcm, sr, words) in zip(spk_rows, TIMED[spk.engine](spk, [r["text"] for r in spk_rows], tmp)):
                _, chapter, k = r["id"].split("-")
                again = _finish(pcm, sr, spk, np.random.default_rng([cfg_seed, sid, int(chapter), int(k)]))
                wav = load_audio(r["audio"])
                if len(words) != len(r["text"].split()):
                    skipped.append((r["id"], f"{len(words)} words timed for {len(r['text'].split())}"))
                elif len(again) != len(wav) or np.abs(again - wav).max() > 2 / 32768:
                    skipped.append((r["id"], "synthesized again, it differs from the corpus file"))
                else:
                    rate = sr * spk.speed  # _finish resamples by the speed factor
                    items.append((r["id"], wav, r["text"], [(a * sr / rate, b * sr / rate) for a, b in words]))
                    a, b = trim(pcm, sr)
                    edges.append(((a / sr - words[0][0]) / spk.speed, (b / sr - words[-1][1]) / spk.speed))
    return items, skipped, edges


# --- measuring ---

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
    ap.add_argument("--out", type=lambda p: Path(p).resolve(), default=None)  # absolute: the manifests it writes hold paths
    args = ap.parse_args()
    if args.demo is not None:
        demo_main(args)
    else:
        args.tests = args.tests or 40
        tone_main(args)


if __name__ == "__main__":
    main()
