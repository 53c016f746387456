"""Manifests: one utterance per row, `{"id", "audio", "num_samples", "sample_rate", "text"?, "speaker"?}`.

w2v writes JSONL (one JSON object per line, `audio` an absolute path, `num_samples` at the
file's own `sample_rate`). Readers also accept fairseq's `.tsv` manifests: the first line is
the audio root directory, then `relpath<TAB>num_samples` lines; a sibling `.wrd` (words) or
`.ltr` (letters, `|` between words) file with the same stem gives one transcript per line.
fairseq assumes 16 kHz audio, so rows read from a `.tsv` carry `sample_rate` 16000.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from w2vcli.errors import W2VError
from w2vcli.text import WORD_BOUNDARY
from w2vcli.utils import atomic_open, log, warn, write_jsonl

REQUIRED = ("id", "audio", "num_samples", "sample_rate")
FAIRSEQ_RATE = 16000  # Hz, what fairseq's tsv manifests assume
MAX_COUNT = 2**63 - 1  # num_samples and sample_rate fit in int64 (and their ratio in a float)


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a `.jsonl` manifest or a fairseq `.tsv` manifest (text from `.wrd`/`.ltr` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise W2VError(f"{path}: manifest not found")
    try:
        return _read_tsv(path) if path.suffix == ".tsv" else _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise W2VError(f"{path}: not a manifest (not UTF-8 text at byte {exc.start})") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows: list[dict] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise W2VError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError):  # a number past Python's digit limit, arrays nested too deep
                raise W2VError(f"{path}:{n}: not valid JSON (a number too long or nesting too deep)") from None
            if not isinstance(row, dict):
                raise W2VError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise W2VError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            _check_fields(row, f"{path}:{n}")
            if "\\u" in line:  # a lone surrogate escape parses but can never be written back as UTF-8
                try:
                    json.dumps(row, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    raise W2VError(f"{path}:{n}: not valid Unicode (a lone surrogate \\u escape)") from None
            if row["id"] in seen:
                raise W2VError(f"{path}:{n}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            if not os.path.isabs(row["audio"]):  # relative paths are relative to the manifest
                row["audio"] = str((path.parent / row["audio"]).resolve())
            rows.append(row)
    return rows


def _check_fields(row: dict, where: str) -> None:
    """Check the types of a JSONL row's known fields (in place: `id`/`speaker` become strings).

    `id`: a non-empty string or an integer; `audio`: a non-empty path string; `num_samples`,
    `sample_rate`: positive integers; `text` (optional): a string; `speaker` (optional): a string
    or an integer, `null` meaning no speaker. Booleans are not integers here.
    """
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for key in ("num_samples", "sample_rate"):
        if not is_int(row[key]) or not 0 < row[key] <= MAX_COUNT:
            raise W2VError(f"{where}: field {key} must be a positive 64-bit integer, got {_short(row[key])}")
    if not (isinstance(row["id"], str) and row["id"]) and not is_int(row["id"]):
        raise W2VError(f"{where}: field id must be a non-empty string or an integer, got {_short(row['id'])}")
    row["id"] = str(row["id"])
    if not isinstance(row["audio"], str) or not row["audio"] or "\0" in row["audio"]:
        raise W2VError(f"{where}: field audio must be a path string, got {_short(row['audio'])}")
    if "text" in row and not isinstance(row["text"], str):
        raise W2VError(f"{where}: field text must be a string, got {_short(row['text'])}")
    if "speaker" in row:
        if row["speaker"] is None:
            del row["speaker"]
        elif isinstance(row["speaker"], str) or is_int(row["speaker"]):
            row["speaker"] = str(row["speaker"])
        else:
            raise W2VError(f"{where}: field speaker must be a string or an integer, got {_short(row['speaker'])}")


def _short(value, limit: int = 40) -> str:
    """`repr(value)` cut to `limit` characters, for one-line errors."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _read_tsv(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip() or "\0" in "".join(lines):
        raise W2VError(f"{path}:1: expected the audio root directory on the first line, then paths")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    entries: list[tuple[str, int]] = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        count = parts[1].strip() if len(parts) >= 2 else ""
        # isdigit alone takes '¹'; 19 digits at most keeps int() within its digit limit and int64
        if not (count.isascii() and count.isdigit() and len(count) <= 19) or not 0 < int(count) <= MAX_COUNT:
            raise W2VError(f"{path}:{n}: expected 'relpath<TAB>num_samples', got {_short(line, 60)}")
        if Path(parts[0]).name in ("", "..") or parts[0].endswith(("/", os.sep)):
            raise W2VError(f"{path}:{n}: expected an audio file path before the tab, got {parts[0]!r}")
        entries.append((parts[0], int(count)))
    texts = _read_fairseq_text(path, len(entries))
    stems = [Path(rel).with_suffix("").name for rel, _ in entries]
    unique = len(set(stems)) == len(stems)
    rows = []
    for i, (rel, num) in enumerate(entries):
        uid = stems[i] if unique else str(Path(rel).with_suffix(""))
        row = {"id": uid, "audio": str(root / rel), "num_samples": num, "sample_rate": FAIRSEQ_RATE}
        if texts is not None:
            row["text"] = texts[i]
        rows.append(row)
    return rows


def _read_fairseq_text(tsv: Path, count: int) -> list[str] | None:
    """Transcripts from `<stem>.wrd`, else `<stem>.ltr`, checked to have one line per tsv row."""
    for suffix in (".wrd", ".ltr"):
        side = tsv.with_suffix(suffix)
        if not side.is_file():
            continue
        try:
            lines = side.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise W2VError(f"{side}: not UTF-8 text (at byte {exc.start})") from None
        if lines and not lines[-1].strip() and len(lines) == count + 1:
            lines = lines[:-1]
        if len(lines) != count:
            raise W2VError(f"{side}: {len(lines)} lines but {tsv.name} lists {count} files")
        if suffix == ".ltr":
            lines = [line.replace(" ", "").replace(WORD_BOUNDARY, " ") for line in lines]
        return [" ".join(line.split()) for line in lines]  # normalised by the text rules of whoever reads them
    return None


CHECK_THREADS = 16  # header reads in flight at once (I/O bound: network file systems like many)


def check_audio(rows: list[dict], name: str, skip: bool = False, threads: int = CHECK_THREADS,
                quiet: bool = False) -> list[dict]:
    """Check, before training, that every row's audio exists and its header reads.

    A missing or unreadable file is a W2VError naming the row (and how many more there are);
    with `skip`, such rows are left out and counted in a warning instead. Rows whose header
    disagrees with their `num_samples`/`sample_rate` are counted in a warning (a stale
    manifest). Headers are read in `threads` threads. Returns the usable rows.
    """
    # lazy: the audio libraries only when audio is checked
    from w2vcli.audio import audio_info

    def header(path: str):
        try:
            return audio_info(path, check_end=False)
        except W2VError as exc:
            return str(exc)

    paths = list(dict.fromkeys(r["audio"] for r in rows))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        infos = dict(zip(paths, pool.map(header, paths)))
    bad = [r for r in rows if isinstance(infos[r["audio"]], str)]
    stale = [r for r in rows if not isinstance(infos[r["audio"]], str)
             and (infos[r["audio"]].num_samples, infos[r["audio"]].sample_rate) != (r["num_samples"], r["sample_rate"])]
    seconds = time.perf_counter() - t0
    if seconds > 2 and not quiet:
        log(f"{name}: checked {len(paths)} audio files in {seconds:.1f} s")
    if bad and not skip:
        more = f" (and {len(bad) - 1} more of {len(rows)} rows; --skip-bad-audio leaves them out)" if len(bad) > 1 else ""
        raise W2VError(f"{name}: row {bad[0]['id']!r}: {infos[bad[0]['audio']]}{more}")
    if bad and not quiet:
        warn(f"{name}: skipping {len(bad)} of {len(rows)} rows whose audio is missing or unreadable "
             f"(first: row {bad[0]['id']!r}: {infos[bad[0]['audio']]})")
    if stale and not quiet:
        r, info = stale[0], infos[stale[0]["audio"]]
        warn(f"{name}: {len(stale)} rows disagree with their audio's header (first: row {r['id']!r} says "
             f"{r['num_samples']} samples at {r['sample_rate']} Hz, the file holds {info.num_samples} at "
             f"{info.sample_rate} Hz): the manifest is out of date, prepare it again")
    if len(bad) == len(rows):
        raise W2VError(f"{name}: no row has readable audio")
    return [r for r in rows if not isinstance(infos[r["audio"]], str)] if bad else rows


def write_manifest(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write a JSONL manifest atomically (temp file + rename). Returns the number of rows."""
    return write_jsonl(path, rows)


def write_fairseq(tsv_path: str | os.PathLike, rows: list[dict], root: str | os.PathLike | None = None) -> None:
    """Write a fairseq `.tsv` (and `.ltr` + `.wrd` when every row has text).

    `root` defaults to the deepest directory that holds every audio file. Sample counts are
    written as they are (fairseq expects 16 kHz audio).
    """
    tsv_path = Path(tsv_path)
    if not rows:
        raise W2VError(f"{tsv_path}: nothing to write (no rows)")
    audio = [os.path.abspath(r["audio"]) for r in rows]
    root = Path(root).resolve() if root else Path(os.path.commonpath([os.path.dirname(a) for a in audio]))
    with atomic_open(tsv_path, "w", encoding="utf-8") as f:
        f.write(f"{root}\n")
        for a, r in zip(audio, rows):
            f.write(f"{os.path.relpath(a, root)}\t{r['num_samples']}\n")
    if all("text" in r for r in rows):
        with atomic_open(tsv_path.with_suffix(".wrd"), "w", encoding="utf-8") as f:
            f.writelines(r["text"] + "\n" for r in rows)
        with atomic_open(tsv_path.with_suffix(".ltr"), "w", encoding="utf-8") as f:
            for r in rows:
                words = r["text"].split()
                f.write(" ".join(" ".join(w) + f" {WORD_BOUNDARY}" for w in words) + "\n")


def duration(row: dict) -> float:
    """Length of a manifest row in seconds."""
    return row["num_samples"] / row["sample_rate"]


def subset_manifest(rows: list[dict], minutes: float, seed: int = 0) -> list[dict]:
    """Whole utterances adding up to at most `minutes`, spread over speakers round-robin.

    Deterministic for a given `seed`; the result keeps the input order. Rows without a
    speaker are treated as one speaker each.
    """
    budget = minutes * 60.0
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_speaker[str(r.get("speaker", f"#{i}"))].append(i)
    queues = [by_speaker[s] for s in sorted(by_speaker)]
    rng.shuffle(queues)
    for q in queues:
        rng.shuffle(q)
    chosen: list[int] = []
    total = 0.0
    while queues:
        still = []
        for q in queues:
            while q:  # this speaker's next utterance that still fits
                i = q.pop()
                if total + duration(rows[i]) <= budget:
                    chosen.append(i)
                    total += duration(rows[i])
                    still.append(q)
                    break
        queues = [q for q in still if q]
    return [rows[i] for i in sorted(chosen)]
