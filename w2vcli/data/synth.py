"""`w2v prepare synth`: an offline multi-speaker English corpus, laid out exactly like LibriSpeech.

    OUT/SPEAKERS.TXT
    OUT/{train-clean,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-UTT.flac   16 kHz mono 16-bit FLAC
    OUT/{train-clean,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP.trans.txt  upper-case transcripts

A speaker is a fixed (engine, voice, duration stretch, speed, pitch) combination of the Debian
voices in ../shared/DATA.md, mostly the more natural flite (rms, awb, slt, kal16) and festival
(slt-hts, kal, ked) voices plus a few espeak-ng ones. The speed factor resamples the voice
(tempo and pitch together, like `sox speed`); each speaker also gets its own level and a faint
noise floor. Dev and test have their own speakers and their own sentences, disjoint from
training and from each other. One worker task per chapter (at most `CHAPTER_SECONDS` of audio);
flite and espeak-ng run once per sentence, festival once per batch of sentences. Everything is
seeded, so a seed gives the same files, byte for byte.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gzip
import json
import math
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from w2vcli.audio import SAMPLE_RATE, write_flac
from w2vcli.errors import W2VError
from w2vcli.text import normalize_text
from w2vcli.utils import ProgressBar, atomic_open, log

SUBSETS = ("train-clean", "dev-clean", "test-clean")
CHAPTER_SECONDS = 600.0  # a speaker's audio is split into chapters of at most this much
SECONDS_PER_WORD = 0.36  # rough speaking rate at stretch 1, speed 1 (for planning only)
DEFAULT_SENTENCES = Path(__file__).resolve().parents[1] / "resources" / "sentences.txt.gz"
FESTIVAL_VOICES = {"slt-hts": "cmu_us_slt_arctic_hts", "kal": "kal_diphone", "ked": "ked_diphone"}
ESPEAK_VOICES = ["en-us+m3", "en-gb+f2", "en-gb-scotland+m1", "en-029+f4", "en-gb-x-rp+m5", "en-us-nyc+f3",
                 "en-us+m7", "en-gb-x-gbcwmd+f1"]
# one cycle of voices, weighted towards the natural ones and the fast ones (flite kal16 makes ~800 s
# of audio per CPU second in-process, rms/awb/slt ~50, festival slt-hts ~20); speaker i gets
# VOICE_CYCLE[i % 10], so dev (speakers 0-3) and test (4-7) both get natural voices
VOICE_CYCLE = [("flite", "rms"), ("flite", "kal16"), ("flite", "awb"), ("festival", "slt-hts"),
               ("flite", "slt"), ("flite", "rms"), ("flite", "kal16"), ("festival", None),
               ("espeak", None), ("festival", None)]  # festival None: kal and ked in turn
FEMALE = {"slt", "slt-hts"}
STRETCHES = (0.9, 1.0, 1.1, 1.2)  # duration stretch (speaking rate)
SPEEDS = (0.9, 0.95, 1.0, 1.05, 1.1)  # resampling speed factor (tempo and pitch)


@dataclass(frozen=True)
class SynthConfig:
    train_hours: float = 1.0
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    train_speakers: int = 32  # at least 24 is sensible
    heldout_speakers: int = 4  # speakers in each of dev and test
    sentences: Path | None = None  # one sentence per line (.txt or .txt.gz); None: the shipped list
    seed: int = 0


@dataclass(frozen=True)
class Speaker:
    id: int
    engine: str  # flite | festival | espeak
    voice: str
    stretch: float  # duration stretch (1.2 = 20% slower speech)
    speed: float  # resampling factor, changes tempo and pitch
    pitch: int  # espeak-ng -p (0..99); unused by flite and festival
    gain: float  # peak level
    snr_db: float  # noise floor below the speech peak

    @property
    def sex(self) -> str:
        if self.engine == "espeak":
            return "F" if "+f" in self.voice else "M"
        return "F" if self.voice in FEMALE else "M"

    @property
    def name(self) -> str:
        return f"{self.engine} {self.voice} stretch={self.stretch} speed={self.speed} pitch={self.pitch}"


@dataclass(frozen=True)
class Task:
    """One chapter: synthesize `sentences` in order until `budget` seconds of audio are made."""

    subset: str
    speaker: Speaker
    chapter: int
    sentences: tuple[str, ...]
    budget: float  # seconds
    seed: int


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """`n` distinct speakers cycling through the weighted voice list, parameters drawn from `seed`."""
    rng = np.random.default_rng([seed, 1])
    grid = [(s, v) for s in STRETCHES for v in SPEEDS]
    used: dict[tuple[str, str], list] = {}
    speakers = []
    festival_turn = espeak_turn = 0
    for i in range(n):
        engine, voice = VOICE_CYCLE[i % len(VOICE_CYCLE)]
        if engine == "festival" and voice is None:
            voice = ("kal", "ked")[festival_turn % 2]
            festival_turn += 1
        if engine == "espeak":
            voice = ESPEAK_VOICES[espeak_turn % len(ESPEAK_VOICES)]
            espeak_turn += 1
        combos = used.setdefault((engine, voice), [grid[j] for j in rng.permutation(len(grid))])
        stretch, speed = combos.pop() if combos else (float(rng.choice(STRETCHES)), float(rng.choice(SPEEDS)))
        speakers.append(Speaker(
            id=1001 + i, engine=engine, voice=voice, stretch=stretch, speed=speed,
            pitch=int(rng.integers(30, 71)), gain=round(float(rng.uniform(0.4, 0.9)), 2),
            snr_db=round(float(rng.uniform(35.0, 50.0)), 1)))
    return speakers


@functools.lru_cache(maxsize=4)
def load_sentences(path: Path | None) -> tuple[str, ...]:
    """Normalised, de-duplicated sentences from a text file (gzip if it ends in .gz)."""
    path = Path(path) if path else DEFAULT_SENTENCES
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = [normalize_text(line) for line in f]
    except OSError as exc:
        raise W2VError(f"{path}: cannot read sentence list ({exc})") from None
    return tuple(dict.fromkeys(s for s in lines if s))


def _estimate(sentence: str, spk: Speaker) -> float:
    return len(sentence.split()) * SECONDS_PER_WORD * spk.stretch / spk.speed + 0.3


def plan(cfg: SynthConfig) -> list[Task]:
    """Speakers, chapters and sentences of every subset; sentence sets are disjoint across subsets."""
    n_held = cfg.heldout_speakers
    speakers = make_speakers(cfg.train_speakers + 2 * n_held, cfg.seed)
    by_subset = {"dev-clean": speakers[:n_held], "test-clean": speakers[n_held:2 * n_held],
                 "train-clean": speakers[2 * n_held:]}
    seconds = {"train-clean": cfg.train_hours * 3600, "dev-clean": cfg.dev_minutes * 60,
               "test-clean": cfg.test_minutes * 60}
    pool = load_sentences(cfg.sentences)
    order = np.random.default_rng([cfg.seed, 2]).permutation(len(pool))
    pool = [pool[i] for i in order]
    mean_words = float(np.mean([len(s.split()) for s in pool[:2000]])) if pool else 0.0

    def needed(subset: str) -> int:  # sentences to set aside, with a margin
        per = mean_words * SECONDS_PER_WORD * 1.2 + 0.3
        return int(math.ceil(seconds[subset] / per * 1.5)) + 8 * len(by_subset[subset]) if seconds[subset] else 0

    n_dev, n_test = needed("dev-clean"), needed("test-clean")
    if n_dev + n_test + 100 > len(pool):
        raise W2VError(f"{cfg.sentences or DEFAULT_SENTENCES}: {len(pool)} distinct sentences are too few "
                       f"for dev and test ({n_dev + n_test} needed) plus training")
    parts = {"dev-clean": pool[:n_dev], "test-clean": pool[n_dev:n_dev + n_test],
             "train-clean": pool[n_dev + n_test:]}
    tasks = []
    for subset in SUBSETS:
        spks, total, sents = by_subset[subset], seconds[subset], parts[subset]
        if total <= 0:
            continue
        per_speaker = total / len(spks)
        n_chap = max(1, math.ceil(per_speaker / CHAPTER_SECONDS))
        want = needed(subset) // (len(spks) * n_chap) + 8
        cursor = 0
        for spk in spks:
            for c in range(n_chap):
                take = [sents[(cursor + k) % len(sents)] for k in range(want)]  # wraps only if the pool runs out
                cursor += want
                tasks.append(Task(subset, spk, c + 1, tuple(take), per_speaker / n_chap, cfg.seed))
    return tasks


# --- engines: text -> (float32 audio, sample rate) -----------------------------------------------
def _read_wav(path: str) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    return wav.mean(axis=1), sr


class _Wave(ctypes.Structure):  # flite's cst_wave
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


class _Voice(ctypes.Structure):  # the head of flite's cst_voice
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]


_FLITE: dict = {}  # per worker process: "lib" -> libflite, voice name -> registered voice


def _flite_lib(voice: str):
    """libflite and a registered voice, loaded in-process once; None when the libraries are missing."""
    if voice in _FLITE:
        return _FLITE["lib"], _FLITE[voice]
    try:
        if "lib" not in _FLITE:
            for dep in ("flite", "flite_usenglish", "flite_cmulex"):
                name = ctypes.util.find_library(dep)
                if name is None:
                    raise OSError(f"lib{dep} not found")
                lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
                if dep == "flite":
                    _FLITE["main"] = lib
            lib = _FLITE["main"]
            lib.flite_init()
            lib.flite_text_to_wave.restype = ctypes.POINTER(_Wave)
            lib.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
            lib.flite_feat_set_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
            lib.delete_wave.argtypes = [ctypes.POINTER(_Wave)]
            _FLITE["lib"] = lib
            _FLITE["libc"] = ctypes.CDLL(ctypes.util.find_library("c"))
        name = ctypes.util.find_library(f"flite_cmu_us_{voice}")
        if name is None:
            raise OSError(f"libflite_cmu_us_{voice} not found")
        register = getattr(ctypes.CDLL(name), f"register_cmu_us_{voice}")
        register.restype, register.argtypes = ctypes.POINTER(_Voice), [ctypes.c_char_p]
        _FLITE[voice] = register(None)
    except (OSError, AttributeError):
        return None, None
    return _FLITE["lib"], _FLITE[voice]


def _flite(spk: Speaker, texts: list[str], tmp: str) -> list[tuple[np.ndarray, int]]:
    """In-process through libflite (same samples as the `flite` program), else one `flite` run per sentence."""
    lib, voice = _flite_lib(spk.voice)
    out = []
    for text in texts:
        if lib is not None:
            lib.flite_feat_set_float(voice.contents.features, b"duration_stretch", spk.stretch)
            _FLITE["libc"].srand(1)  # clustergen voices draw noise from rand(): start as a fresh process does
            w = lib.flite_text_to_wave(text.lower().encode(), voice)
            pcm = np.ctypeslib.as_array(w.contents.samples, shape=(w.contents.num_samples,))
            out.append((pcm.astype(np.float32) / 32768.0, int(w.contents.sample_rate)))
            lib.delete_wave(w)
            continue
        wav = os.path.join(tmp, "flite.wav")
        subprocess.run(["flite", "-voice", spk.voice, "--setf", f"duration_stretch={spk.stretch}",
                        "-t", text.lower(), "-o", wav], check=True, capture_output=True)
        out.append(_read_wav(wav))
    return out


def _espeak(spk: Speaker, texts: list[str], tmp: str) -> list[tuple[np.ndarray, int]]:
    out = []
    for text in texts:
        wav = os.path.join(tmp, "espeak.wav")
        subprocess.run(["espeak-ng", "-v", spk.voice, "-p", str(spk.pitch), "-s", str(round(170 / spk.stretch)),
                        "-w", wav, text.lower()], check=True, capture_output=True)
        out.append(_read_wav(wav))
    return out


def _festival(spk: Speaker, texts: list[str], tmp: str) -> list[tuple[np.ndarray, int]]:
    """One festival process synthesizes the whole batch."""
    script = [f"(voice_{FESTIVAL_VOICES[spk.voice]})", f"(Parameter.set 'Duration_Stretch {spk.stretch})"]
    paths = [os.path.join(tmp, f"fest{k}.wav") for k in range(len(texts))]
    for text, p in zip(texts, paths):
        script.append(f'(utt.save.wave (SynthText "{text.lower()}") "{p}" \'riff)')
    scm = os.path.join(tmp, "batch.scm")
    Path(scm).write_text("\n".join(script) + "\n", encoding="utf-8")
    subprocess.run(["festival", "-b", scm], check=True, capture_output=True)
    return [_read_wav(p) for p in paths]


ENGINES = {"flite": _flite, "espeak": _espeak, "festival": _festival}


def _finish(wav: np.ndarray, sr: int, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Speed change by resampling, the speaker's level and noise floor: float32 at 16 kHz."""
    wav = soxr.resample(wav, sr * spk.speed, SAMPLE_RATE, quality="HQ")  # [S]
    peak = float(np.max(np.abs(wav))) or 1.0
    wav = wav * (spk.gain / peak)
    noise = rng.standard_normal(len(wav)).astype(np.float32) * (spk.gain * 10 ** (-spk.snr_db / 20))
    return (wav + noise).astype(np.float32)


def run_task(task: Task, root: str) -> tuple[str, int, float]:
    """Synthesize one chapter under `root`. Returns (subset, utterances, seconds). Runs in a worker."""
    spk = task.speaker
    chap_dir = Path(root) / task.subset / str(spk.id) / str(task.chapter)
    chap_dir.mkdir(parents=True, exist_ok=True)
    engine = ENGINES[spk.engine]
    lines: list[str] = []
    made = 0.0
    queue = list(task.sentences)
    with tempfile.TemporaryDirectory(prefix="w2v-synth-") as tmp:
        while queue and made < task.budget:
            # festival pays a start-up per call: batch what should fill the budget; others go one by one
            n = 1
            if spk.engine == "festival":
                left, n = task.budget - made, 0
                while n < len(queue) and left > 0:
                    left -= _estimate(queue[n], spk) * 1.05
                    n += 1
            batch, queue = queue[:n], queue[n:]
            for text, (wav, sr) in zip(batch, engine(spk, batch, tmp)):
                k = len(lines)
                rng = np.random.default_rng([task.seed, spk.id, task.chapter, k])
                audio = _finish(wav, sr, spk, rng)
                dur = len(audio) / SAMPLE_RATE
                if made + dur / 2 > task.budget:  # nearest to the budget, whole utterances only
                    queue = []
                    break
                uid = f"{spk.id}-{task.chapter}-{k:04d}"
                write_flac(chap_dir / f"{uid}.flac", audio)
                lines.append(f"{uid} {text}")
                made += dur
    with atomic_open(chap_dir / f"{spk.id}-{task.chapter}.trans.txt", "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return task.subset, len(lines), made


def check_engines() -> None:
    """Fail early, naming the missing program or voice."""
    for prog in ("flite", "festival", "espeak-ng"):
        if shutil.which(prog) is None:
            raise W2VError(f"{prog} not found: run scripts/setup.sh (Debian packages flite festival espeak-ng)")
    voices = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
    for v in ("rms", "awb", "slt", "kal16"):
        if v not in voices:
            raise W2VError(f"flite voice {v} not available: install Debian package flite")
    for name, pkg in (("cmu_us_slt_arctic_hts", "festvox-us-slt-hts"), ("kal_diphone", "festvox-kallpc16k"),
                      ("ked_diphone", "festvox-kdlpc16k")):
        if not list(Path("/usr/share/festival/voices").glob(f"*/{name}")):
            raise W2VError(f"festival voice {name} not found: install Debian package {pkg}")


def write_speakers(out: Path, tasks: list[Task], seconds: dict[int, float]) -> None:
    """SPEAKERS.TXT in LibriSpeech's format; NAME records the synthesis settings."""
    seen: dict[int, Task] = {}
    for t in tasks:
        seen.setdefault(t.speaker.id, t)
    with atomic_open(out / "SPEAKERS.TXT", "w", encoding="utf-8") as f:
        f.write("; Synthetic speakers made by `w2v prepare synth`\n;ID  |SEX| SUBSET           |MINUTES| NAME\n")
        for sid, t in sorted(seen.items()):
            f.write(f"{sid:<5}| {t.speaker.sex} | {t.subset:<16} | {seconds.get(sid, 0) / 60:5.2f} | "
                    f"{t.speaker.name}\n")


def synthesize(cfg: SynthConfig, out: str | os.PathLike, jobs: int | None = None, force: bool = False) -> dict:
    """Make the corpus in `out`; returns {subset: {"utterances", "hours"}}. Skips a finished identical corpus."""
    out = Path(out)
    marker = out / "synth.done"
    settings = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}, sort_keys=True)
    if marker.exists() and not force:
        done = json.loads(marker.read_text(encoding="utf-8"))
        if json.dumps(done["config"], sort_keys=True) == settings:
            log(f"{out}: corpus already synthesized with these settings (use --force to redo)")
            return done["summary"]
        raise W2VError(f"{out}: holds a corpus made with other settings; use --force to replace it")
    if cfg.train_hours <= 0:
        raise W2VError("--hours must be positive")
    check_engines()
    tasks = plan(cfg)
    marker.unlink(missing_ok=True)
    for subset in SUBSETS:  # a partial or older corpus is replaced, never mixed in
        shutil.rmtree(out / subset, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    # slow engines first, so the last tasks to finish are short ones
    order = sorted(tasks, key=lambda t: (t.speaker.engine != "festival", -t.budget))
    jobs = min(jobs or os.cpu_count() or 1, len(tasks))
    summary = {s: {"utterances": 0, "hours": 0.0} for s in SUBSETS}
    spk_seconds: dict[int, float] = {}
    total = sum(t.budget for t in tasks)
    with ProgressBar("synthesizing", total, "s of audio") as progress, ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_task, t, str(out)): t for t in order}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                subset, n, secs = fut.result()
            except subprocess.CalledProcessError as exc:
                err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                raise W2VError(f"{exc.cmd[0]} failed for speaker {task.speaker.id}: {err[-1] if err else exc}") from None
            summary[subset]["utterances"] += n
            summary[subset]["hours"] += secs / 3600
            spk_seconds[task.speaker.id] = spk_seconds.get(task.speaker.id, 0.0) + secs
            progress.advance(task.budget)
    write_speakers(out, tasks, spk_seconds)
    summary = {s: v for s, v in summary.items() if v["utterances"]}
    for s, v in summary.items():
        log(f"{s}: {v['utterances']} utterances, {v['hours']:.2f} h -> {out / s}")
    with atomic_open(marker, "w", encoding="utf-8") as f:
        json.dump({"config": json.loads(settings), "summary": summary}, f, indent=1)
    return summary
