"""Audio files listed by a corpus, read in worker processes with a progress bar: the header of
each (`audio_info`), or with `convert_to` a 16 kHz mono FLAC copy of each (same file stem).

    found = read_clips(paths, jobs=8)                      # path -> Clip, or the problem line
    found = read_clips(paths, jobs=8, convert_to=flac_dir)  # Clip.audio is then the FLAC copy

A FLAC copy that is already there (from an earlier run: copies are written atomically, so one
that exists is whole) is reused, unless `force`.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from w2vcli.audio import SAMPLE_RATE, audio_info, load_audio, write_flac
from w2vcli.errors import W2VError
from w2vcli.utils import console

CHUNK = 32  # files per worker task


@dataclass(frozen=True)
class Clip:
    """What a manifest row needs to know about one audio file."""

    audio: str  # absolute path of the file the manifest points to (the FLAC copy when converting)
    num_samples: int  # at sample_rate
    sample_rate: int  # Hz


def _read_one(path: str, convert_to: str | None, force: bool) -> Clip | str:
    """The Clip of one file, or the problem line naming it. Runs in a worker process."""
    try:
        if convert_to is None:
            info = audio_info(path)
            return Clip(os.path.abspath(path), info.num_samples, info.sample_rate)
        flac = os.path.abspath(os.path.join(convert_to, Path(path).stem + ".flac"))
        if os.path.exists(flac) and not force:
            try:
                info = audio_info(flac)
                if info.sample_rate == SAMPLE_RATE and info.channels == 1:
                    return Clip(flac, info.num_samples, SAMPLE_RATE)
            except W2VError:
                pass  # a damaged copy: convert again
        audio_info(path)  # a truncated or damaged file is a problem, not a shorter copy
        wav = load_audio(path)  # [S] float32, 16 kHz mono
        write_flac(flac, wav)
        return Clip(flac, len(wav), SAMPLE_RATE)
    except W2VError as exc:
        return str(exc)


def _read_chunk(paths: list[str], convert_to: str | None, force: bool) -> list[Clip | str]:
    return [_read_one(p, convert_to, force) for p in paths]


def read_clips(paths: list[str], jobs: int, convert_to: str | os.PathLike | None = None,
               force: bool = False) -> dict[str, Clip | str]:  # fmt: skip
    """Path -> Clip (or the problem line) for every path, `jobs` worker processes at once."""
    target = None if convert_to is None else str(Path(convert_to).resolve())
    if target is not None:
        Path(target).mkdir(parents=True, exist_ok=True)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    jobs = max(1, min(jobs, len(chunks)))
    found: dict[str, Clip | str] = {}
    what = f"converting to 16 kHz FLAC in {target}" if target else "reading audio headers"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(what, total=len(paths))

        def collect(chunk: list[str], results: list[Clip | str]) -> None:
            found.update(zip(chunk, results))
            progress.advance(bar, len(chunk))

        if jobs == 1:
            for chunk in chunks:
                collect(chunk, _read_chunk(chunk, target, force))
            return found
        pool = ProcessPoolExecutor(max_workers=jobs)
        try:
            for chunk, results in zip(chunks, pool.map(_read_chunk, chunks, [target] * len(chunks),
                                                       [force] * len(chunks))):
                collect(chunk, results)
        except BaseException:  # Ctrl-C or an error: drop the queued work, nothing is written yet
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    return found
