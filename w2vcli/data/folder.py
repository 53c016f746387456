"""`w2v prepare folder`: an unlabeled manifest from every audio file under a directory (for pretraining).

Any format soundfile reads counts as audio (by file extension); headers are read in worker
processes; unreadable files are named in a warning and left out. Ids are the paths relative to
the folder without their extension.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from w2vcli.audio import audio_info
from w2vcli.data.manifest import write_manifest
from w2vcli.errors import W2VError
from w2vcli.utils import ProgressBar, log, warn

CHUNK = 256  # files per worker task


def audio_extensions() -> set[str]:
    """Lower-case file extensions (with the dot) of the formats libsndfile reads here."""
    formats = {k.upper() for k in sf.available_formats()} - {"RAW"}  # raw PCM needs its parameters
    exts = {"." + k.lower() for k in formats}
    if "AIFF" in formats:
        exts |= {".aif"}
    if "OGG" in formats:
        exts |= {".oga", ".opus"}
    return exts


def _infos(paths: list[str]) -> list[tuple[str, int, int] | str]:
    """(path, num_samples, sample_rate) per file, or the error line. Runs in a worker process."""
    out: list[tuple[str, int, int] | str] = []
    for p in paths:
        try:
            info = audio_info(p)
            out.append((p, info.num_samples, info.sample_rate))
        except W2VError as exc:
            out.append(str(exc))
    return out


def prepare_folder(folder: str | os.PathLike, out: str | os.PathLike, jobs: int | None = None) -> list[dict]:
    """Write `out` (JSONL) listing every readable audio file under `folder`, sorted by path."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise W2VError(f"{folder}: directory not found")
    exts = audio_extensions()
    paths = sorted(str(Path(d) / f) for d, _, files in os.walk(root) for f in files
                   if Path(f).suffix.lower() in exts)
    if not paths:
        raise W2VError(f"{folder}: no audio files found (looked for {', '.join(sorted(exts))})")
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    jobs = min(jobs or os.cpu_count() or 1, len(chunks))
    results: list[tuple[str, int, int] | str] = []
    with ProgressBar("reading headers", len(paths), "files") as progress:
        if jobs <= 1:
            mapped = map(_infos, chunks)
        else:
            pool = ProcessPoolExecutor(max_workers=jobs)
            mapped = pool.map(_infos, chunks)
        for part in mapped:
            results.extend(part)
            progress.advance(len(part))
        if jobs > 1:
            pool.shutdown()
    rows = []
    for r in results:
        if isinstance(r, str):
            warn(r)
            continue
        path, num, rate = r
        uid = Path(os.path.relpath(path, root)).with_suffix("").as_posix()
        rows.append({"id": uid, "audio": path, "num_samples": num, "sample_rate": rate})
    if not rows:
        raise W2VError(f"{folder}: no readable audio files")
    write_manifest(out, rows)
    hours = sum(r["num_samples"] / r["sample_rate"] for r in rows) / 3600
    log(f"{len(rows)} files, {hours:.2f} h, {len(results) - len(rows)} unreadable -> {out}")
    return rows
