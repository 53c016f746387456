"""`w2v prepare table`: a JSONL manifest from a table of (audio, transcript) rows, .tsv or .csv.

    FILE.tsv / FILE.csv   tab- / comma-separated (Python's csv module, Excel's conventions):
                          the first row names the columns; a field that holds the delimiter,
                          a quote or a line break is quoted ("Hello, world"; "" inside for ")
    audio column          the audio file, absolute or relative to the table's folder
    text column           its transcript
    speaker column        optional

Writes OUT.jsonl (rows in the table's order; `id` is the audio path relative to the table's
folder without its extension, or the file stem for a path outside it) and, beside it,
text_rules.json, vocab.json, dict.ltr.txt and words.txt. The vocabulary covers every labelled
manifest in OUT's folder: prepare train.csv and dev.csv into one folder, and it covers both
(they must share the text rules: other rules than the folder's text_rules.json are refused).
Rows without the named fields, with an empty transcript or with missing or unreadable audio
are named in warnings and in OUT.problems.txt, and left out.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from w2vcli.data.clips import read_clips
from w2vcli.data.librispeech import MAX_WARNINGS
from w2vcli.data.manifest import read_manifest, write_manifest
from w2vcli.data.transcripts import TextReport, check_same_rules, write_text_files
from w2vcli.errors import W2VError
from w2vcli.text import RULES_FILE, TextRules
from w2vcli.utils import atomic_open, log, warn

DIALECTS = {".tsv": "excel-tab", ".csv": "excel"}


@dataclass(frozen=True)
class Columns:
    """The names of the columns to read."""

    audio: str = "audio"
    text: str = "text"
    speaker: str | None = None  # None: the column "speaker" when the table has one


def read_table(path: str | os.PathLike, columns: Columns = Columns()) -> tuple[list[tuple[int, dict]], list[str]]:
    """([(line number, {"audio", "text", "speaker"?})], problems) of a .tsv/.csv table.

    Raises W2VError when the file is not a table or its header lacks a named column; a row
    with another number of fields than the header is a problem, and left out.
    """
    path = Path(path)
    dialect = DIALECTS.get(path.suffix.lower())
    if dialect is None:
        raise W2VError(f"{path}: expected a .tsv or .csv table")
    rows: list[tuple[int, dict]] = []
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: Excel starts with a byte-order mark
            reader = csv.reader(f, dialect=dialect)
            header = next(reader, None)
            wanted = _column_indices(path, header, columns)
            for fields in reader:
                n = reader.line_num
                if not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    problems.append(f"{path}:{n}: {len(fields)} fields, the header has {len(header)}")
                    continue
                rows.append((n, {key: fields[i] for key, i in wanted.items()}))
    except OSError as exc:
        raise W2VError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise W2VError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise W2VError(f"{path}:{reader.line_num}: {exc}") from None
    return rows, problems


def _column_indices(path: Path, header: list[str] | None, columns: Columns) -> dict[str, int]:
    if not header:
        raise W2VError(f"{path}: empty table (the first row must name the columns)")
    names = [h.strip() for h in header]
    wanted = {"audio": columns.audio, "text": columns.text}
    if columns.speaker or "speaker" in names:
        wanted["speaker"] = columns.speaker or "speaker"
    missing = [f"{name!r} (--{key}-column)" for key, name in wanted.items() if name not in names]
    if missing:
        raise W2VError(f"{path}:1: no column {', '.join(missing)}; the first row must name the columns, "
                       f"it holds {', '.join(map(repr, names))}")
    return {key: names.index(name) for key, name in wanted.items()}


def prepare_table(table: str | os.PathLike, out: str | os.PathLike, rules: TextRules, columns: Columns = Columns(),
                  jobs: int | None = None, force: bool = False) -> list[dict]:  # fmt: skip
    """Write `out` (JSONL) from a table, with the text files beside it (see the module docstring)."""
    table, out = Path(table), Path(out)
    if out.suffix != ".jsonl":
        raise W2VError(f"--out {out}: expected a .jsonl file name")
    folder = table.resolve().parent
    listed, problems = read_table(table, columns)
    check_same_rules(out.parent, rules, force)
    report = TextReport(rules)
    pending: list[dict] = []
    ids: dict[str, int] = {}
    for n, fields in listed:
        where = f"{table}:{n}"
        if not fields["audio"].strip():
            problems.append(f"{where}: empty audio path")
            continue
        if not fields["text"].strip():
            problems.append(f"{where}: empty transcript ({fields['audio']})")
            continue
        text = report.normalize(fields["text"])
        if text is None:  # left out by the text rules (counted in the report)
            continue
        if not text:
            problems.append(f"{where}: transcript {fields['text']!r} has no letters or digits")
            continue
        audio = (folder / fields["audio"].strip()).resolve()  # an absolute path stays as it is
        uid = _row_id(audio, folder)
        if uid in ids:
            problems.append(f"{where}: {fields['audio']} is listed twice (first on line {ids[uid]})")
            continue
        ids[uid] = n
        row = {"id": uid, "audio": str(audio), "text": text}
        if fields.get("speaker", "").strip():
            row["speaker"] = fields["speaker"].strip()
        pending.append(row)
    found = read_clips(sorted({r["audio"] for r in pending}), jobs or os.cpu_count() or 1)
    rows = []
    for row in pending:
        clip = found[row["audio"]]
        if isinstance(clip, str):
            problems.append(clip)
            continue
        rows.append({"id": row["id"], "audio": clip.audio, "num_samples": clip.num_samples,
                     "sample_rate": clip.sample_rate, "text": row["text"]}
                    | ({"speaker": row["speaker"]} if "speaker" in row else {}))
    _report(table, out, report, problems)
    if not rows:
        raise W2VError(f"{table}: no usable rows ({len(problems)} problem(s), see {_problems_file(out)})")
    write_manifest(out, rows)
    hours = sum(r["num_samples"] / r["sample_rate"] for r in rows) / 3600
    log(f"{len(rows)} utterances, {hours:.2f} h, {len(problems)} problem(s) -> {out}")
    labelled = _labelled_manifests(out.parent) | {out.stem: rows}
    vocab = write_text_files(out.parent, labelled, rules)
    log(f"vocabulary of {len(vocab)} tokens over {', '.join(sorted(labelled))} -> {out.parent / 'vocab.json'}; "
        f"text rules -> {out.parent / RULES_FILE}")
    return rows


def _row_id(audio: Path, folder: Path) -> str:
    """The audio path relative to the table's folder, without its extension (the stem outside it)."""
    try:
        return audio.relative_to(folder).with_suffix("").as_posix()
    except ValueError:
        return audio.stem


def _problems_file(out: Path) -> Path:
    return out.with_name(out.stem + ".problems.txt")


def _report(table: Path, out: Path, report: TextReport, problems: list[str]) -> None:
    """Log the text report and the problems; write OUT.problems.txt (remove a stale one)."""
    report.log(table.name)
    for p in problems[:MAX_WARNINGS]:
        warn(p)
    if len(problems) > MAX_WARNINGS:
        warn(f"{table.name}: {len(problems) - MAX_WARNINGS} more problems, see {_problems_file(out)}")
    if report.skipped:
        log(f"{table.name}: {report.skipped} row(s) left out by the text rules")
    if problems:
        with atomic_open(_problems_file(out), "w", encoding="utf-8") as f:
            f.writelines(p + "\n" for p in problems)
    elif _problems_file(out).exists():
        _problems_file(out).unlink()


def _labelled_manifests(folder: Path) -> dict[str, list[dict]]:
    """Every manifest in `folder` whose rows all have text (others, and other JSONL files, skipped)."""
    found = {}
    for path in sorted(folder.glob("*.jsonl")):
        try:
            rows = read_manifest(path)
        except W2VError:
            continue
        if rows and all(r.get("text") for r in rows):
            found[path.stem] = rows
    return found
