"""Speech with known word boundaries in the demo recipe's domain and voices, for
bench/align_accuracy.py (its docstring describes both sets and their limits):

    connected_set(exp, rows)           the test files themselves, with the synthesizers' word times
    word_by_word_set(exp, rows, out)   the same sentences said word by word, boundaries from the audio

Both rebuild the demo corpus's speakers from EXP/corpus/synth.done and call the engines as
w2vcli/data/synth.py does (its private `_flite_lib`, `_finish` and friends: this is a
benchmark, and the point is the very same samples).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from w2vcli.audio import SAMPLE_RATE

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
