"""Where transcripts go: standard output, one file (`--out`), or one file per audio file (`--out-dir`).

    output = Output(fmt="srt", out_dir=Path("subs"))
    with transcript_writer(output, with_path=True) as write:
        write(transcript)             # subs/AUDIO-STEM.srt

Every file is written atomically (`w2vcli.utils.atomic_open`): `--out` appears complete once
all files are transcribed, each `--out-dir` file once its audio is. Two audio files with the
same stem (from different folders) get `STEM.FORMAT` and `STEM-2.FORMAT`, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from w2vcli.decode.formats import FORMATS, render
from w2vcli.errors import W2VError
from w2vcli.utils import atomic_open, warn


@dataclass(frozen=True)
class Output:
    """Where and how to write the transcripts of audio files; validates itself."""

    fmt: str = "txt"  # txt | jsonl | srt | vtt (w2vcli/decode/formats.py)
    out: Path | None = None  # everything in this one file; None (and no out_dir): standard output
    out_dir: Path | None = None  # one AUDIO-STEM.FORMAT file per audio file in this folder
    formats: tuple[str, ...] = FORMATS  # the formats of the command (`w2v align` has its own)
    suffix: str = ""  # file name suffix of --out-dir files (default: the format's name)
    confidence: bool = False  # srt/vtt: each word's confidence after it

    def __post_init__(self) -> None:
        if self.fmt not in self.formats:
            raise W2VError(f"--format must be one of {', '.join(self.formats)}, got {self.fmt!r}")
        if self.out is not None and self.out_dir is not None:
            raise W2VError("give --out FILE (everything in one file) or --out-dir DIR (one file per audio file), not both")


class _PerFileTargets:
    """`out_dir / STEM.FORMAT` for each audio file, numbered where a stem comes back."""

    def __init__(self, out_dir: Path, fmt: str):
        self.out_dir, self.fmt = out_dir, fmt
        self.taken: set[Path] = set()

    def __call__(self, audio: str) -> Path:
        stem, n = Path(audio).stem, 1
        target = self.out_dir / f"{stem}.{self.fmt}"
        while target in self.taken:  # same file name in different directories
            n += 1
            target = self.out_dir / f"{stem}-{n}.{self.fmt}"
        if n > 1:
            warn(f"{audio}: {stem}.{self.fmt} is taken in {self.out_dir}, writing {target.name}")
        self.taken.add(target)
        return target


@contextlib.contextmanager
def transcript_writer(output: Output, with_path: bool = False, render=render) -> Iterator[Callable[[object], None]]:
    """A function that writes one transcript where `output` says; `with_path`: txt lines start
    with "PATH<TAB>" (several files in one stream). A transcript is a dict, or a typed result
    with `to_dict()` (`Transcript`, `Alignment`), turned into one here, at the writer;
    `render(dict, fmt, with_path) -> str`."""
    base = functools.partial(render, confidence=True) if output.confidence else render

    def text(transcript) -> str:
        return base(transcript if isinstance(transcript, dict) else transcript.to_dict(), output.fmt, with_path)

    if output.out_dir is not None:
        target = _PerFileTargets(output.out_dir, output.suffix or output.fmt)

        def write_file(transcript) -> None:
            audio = transcript["audio"] if isinstance(transcript, dict) else transcript.audio
            with atomic_open(target(audio), "w", encoding="utf-8") as f:
                f.write(text(transcript))

        yield write_file
        return
    sink = atomic_open(output.out, "w", encoding="utf-8") if output.out is not None else contextlib.nullcontext(sys.stdout)
    with sink as stream:

        def write_stream(transcript) -> None:
            stream.write(text(transcript))
            stream.flush()

        yield write_stream
