"""commonvoice_epoch: one DataLoader epoch over Common Voice MP3 clips against their FLAC copies.

    python -m bench.studies.commonvoice_epoch --clips 200 --workers 2 --reps 3

Makes a Common Voice-layout folder of `--clips` German sentences spoken by espeak-ng (CV-like
lengths, about 2-5 s; 48 kHz mono MP3 as older releases ship, or `--rate 32000` as newer ones),
once, in bench/.cache/commonvoice-<clips>-<rate>. Three manifests of the same clips, prepared by
w2v itself:

    mp3         `w2v prepare commonvoice DIR`                 MP3 with a length header (Xing/Info)
    mp3-stream  the same clips without that header, as an encoder writing to a stream leaves
                them: w2v decodes these through a pipe (w2vcli/audio.py)
    flac        `w2v prepare commonvoice DIR --convert FLAC`  16 kHz mono FLAC copies

Each epoch is what fine-tuning reads: AudioDataset (no cropping) in length-bucketed batches of
`--max-tokens` samples, a DataLoader with `--workers` processes (worker start-up included, as
in every epoch of training). The epochs alternate between the manifests (A B C, C B A, ...).
Prints ABS lines (seconds per epoch, median/min/max) and `RATIO commonvoice_epoch <mp3 / flac
epoch time>`; the one-off conversion time is printed too.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from bench.common import CACHE, emit, interleaved, median

SENTENCES = [
    "Über den Fluß fährt ein Schiff.", "Die Größe der Bäume ist erstaunlich!", "Können Sie mir bitte helfen?",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.", "Der Bäcker öffnet um sechs Uhr.",
    "Schöne Grüße aus München.", "Wir trinken heißen Tee und essen Kuchen.",
    "Am Wochenende fahren wir mit dem Zug an die Nordsee.", "Das Wetter ist heute schöner als gestern.",
    "Bitte schließen Sie die Tür, wenn Sie gehen.",
]
HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
MPEG1_LAYER3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


def speak(text: str, speed: int, pitch: int, rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    wav = subprocess.run(["espeak-ng", "-v", "de", "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, sr, rate).astype(np.float32)


def without_length_header(data: bytes) -> bytes:
    """An MPEG-1 layer III file (as libsndfile writes it) without its first frame, the Xing/Info header."""
    assert data[0] == 0xFF and (data[1] >> 1) & 0xF == 0xD, "expected MPEG-1 layer III without an ID3 tag"
    assert b"Xing" in data[:64] or b"Info" in data[:64], "no Xing/Info header in the first frame"
    b2 = data[2]
    sr = (44100, 48000, 32000)[(b2 >> 2) & 3]
    return data[144 * MPEG1_LAYER3_KBPS[b2 >> 4] * 1000 // sr + ((b2 >> 1) & 1):]


def make_corpus(clips: int, rate: int) -> tuple[Path, Path]:
    """(folder with length headers, the same without them), made once."""
    import soundfile as sf

    base = CACHE / f"commonvoice-{clips}-{rate}"
    folders = base / "cv", base / "cv-stream"
    if (base / ".done").is_file():
        return folders
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    shutil.rmtree(base, ignore_errors=True)
    for folder in folders:
        (folder / "clips").mkdir(parents=True)
    lines = []
    for i in range(clips):
        text = SENTENCES[i % len(SENTENCES)]
        name = f"common_voice_de_{i:06d}.mp3"
        path = folders[0] / "clips" / name
        sf.write(path, speak(text, 130 + 10 * (i % 7), 30 + 7 * (i % 5), rate), rate, format="MP3")
        (folders[1] / "clips" / name).write_bytes(without_length_header(path.read_bytes()))
        lines.append(f"speaker{i % 20}\t{name}\t{text}\t2\t0\t\t\t\t\tde\t\n")
    for folder in folders:
        (folder / "train.tsv").write_text(HEADER + "".join(lines), encoding="utf-8")
    (base / ".done").write_text("")
    return folders


def prepare(clips: int, rate: int, jobs: int) -> dict[str, list[dict]]:
    """{"mp3", "mp3-stream", "flac"} -> manifest rows, and the conversion time printed."""
    from w2vcli.data.commonvoice import prepare_commonvoice
    from w2vcli.text import TextRules

    cv, stream = make_corpus(clips, rate)
    out = cv.parent / "prepared"
    rules = TextRules(case="lower")
    shutil.rmtree(out, ignore_errors=True)
    rows = {"mp3": prepare_commonvoice(cv, out / "mp3", rules, splits=["train"], jobs=jobs)["train"].rows,
            "mp3-stream": prepare_commonvoice(stream, out / "stream", rules, splits=["train"], jobs=jobs)["train"].rows}
    t0 = time.perf_counter()
    rows["flac"] = prepare_commonvoice(cv, out / "flac", rules, splits=["train"], jobs=jobs,
                                       convert_to=out / "flac" / "clips")["train"].rows
    emit(f"ABS commonvoice_convert w2v {time.perf_counter() - t0:.4g} s for {clips} clips ({jobs} jobs, one-off)")
    return rows


def run(clips: int = 200, rate: int = 48000, workers: int = 2, max_tokens: int = 1_280_000, reps: int = 3,
        jobs: int = 2, threads: int = 1) -> float:  # fmt: skip
    import torch

    from w2vcli.data.dataset import AudioDataset, BucketBatchSampler, make_loader

    torch.set_num_threads(threads)
    manifests = prepare(clips, rate, jobs)
    hours = sum(r["num_samples"] / r["sample_rate"] for r in manifests["flac"]) / 3600

    def epoch(rows: list[dict]):
        ds = AudioDataset(rows, seed=0)
        sampler = BucketBatchSampler(ds.sizes, max_tokens, seed=0, drop_last=False)

        def one() -> float:
            t0 = time.perf_counter()
            for _ in make_loader(ds, sampler, num_workers=workers):
                pass
            return time.perf_counter() - t0

        return one

    seconds = interleaved({name: epoch(rows) for name, rows in manifests.items()}, reps=reps)
    for name, xs in seconds.items():
        emit(f"ABS commonvoice_epoch {name} {median(xs):.4g} s/epoch ({clips} clips, {hours * 60:.1f} min of audio, "
             f"{workers} workers; min {min(xs):.4g}, max {max(xs):.4g}, n={len(xs)})")
    ratio = median(seconds["mp3"]) / median(seconds["flac"])
    emit(f"RATIO commonvoice_epoch {ratio:.2f}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--rate", type=int, default=48000, help="MP3 sample rate (Hz)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--max-tokens", type=int, default=1_280_000, help="samples per batch (16 kHz)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="processes for prepare and --convert")
    a = ap.parse_args()
    run(a.clips, a.rate, a.workers, a.max_tokens, a.reps, a.jobs)


if __name__ == "__main__":
    main()
