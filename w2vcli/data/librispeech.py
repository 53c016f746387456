"""`w2v prepare librispeech`: JSONL manifests, letter vocabulary and transcripts from a LibriSpeech tree.

Expected layout (LibriSpeech, and the corpora `w2v prepare synth` makes):

    ROOT/SUBSET/SPK/CHAP/SPK-CHAP-UTT.flac
    ROOT/SUBSET/SPK/CHAP/SPK-CHAP.trans.txt      "SPK-CHAP-UTT TRANSCRIPT" lines

ROOT may also be one subset directory itself (holding SPK/CHAP directly). Only headers are
read (plus a few thousand samples at the end of each file to catch truncation); chapters are
scanned in worker processes. Outputs in DIR:

    <subset>.jsonl   one row per usable utterance, sorted by id (absolute audio paths)
    <subset>.txt     its normalised transcripts, one per line (LM training text)
    <subset>.done    marker: the subset is finished; a re-run skips it unless --force
    vocab.json       character vocabulary (Hugging Face layout), dict.ltr.txt (fairseq's)
    words.txt        "WORD COUNT" lines over the training subsets (names starting "train"),
                     or over every subset when none is named so
    text_rules.json  how the transcripts were normalised (w2vcli/text.py), read by finetune,
                     lm build and score
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from w2vcli.audio import audio_info
from w2vcli.data.manifest import read_manifest, write_manifest
from w2vcli.data.transcripts import TextReport, check_same_rules, write_text_files
from w2vcli.errors import W2VError
from w2vcli.text import ENGLISH, RULES_FILE, TextRules
from w2vcli.utils import atomic_open, console, log, warn

AUDIO_EXTS = (".flac", ".wav")
MAX_WARNINGS = 20  # per subset on the console; all of them go to <subset>.problems.txt


@dataclass
class SubsetResult:
    """A prepared subset: its rows and the problems met on the way."""

    name: str
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: bool = False  # already done in an earlier run
    report: TextReport | None = None  # what normalising the transcripts changed

    @property
    def hours(self) -> float:
        return sum(r["num_samples"] / r["sample_rate"] for r in self.rows) / 3600


def _is_subset_dir(path: Path) -> bool:
    """True when `path` holds SPK/CHAP directories with transcripts or audio in them."""
    for spk in _subdirs(path):
        for chap in _subdirs(spk):
            with os.scandir(chap) as it:
                if any(e.name.endswith(".trans.txt") or e.name.endswith(AUDIO_EXTS) for e in it):
                    return True
    return False


def _subdirs(path: Path) -> list[Path]:
    with os.scandir(path) as it:
        return sorted(Path(e.path) for e in it if e.is_dir())


def find_subsets(root: Path) -> dict[str, Path]:
    """Subset name -> directory: ROOT itself when it is a subset, else its subset children."""
    root = Path(root)
    if not root.is_dir():
        raise W2VError(f"{root}: corpus directory not found")
    if _is_subset_dir(root):
        return {root.resolve().name: root.resolve()}
    found = {d.name: d.resolve() for d in _subdirs(root) if _is_subset_dir(d)}
    if not found:
        raise W2VError(f"{root}: no LibriSpeech subsets found (expected SUBSET/SPK/CHAP/SPK-CHAP-UTT.flac)")
    return found


def sample_transcripts(root: str | os.PathLike, lines: int = 200) -> list[str]:
    """Up to `lines` raw transcripts from the first chapters found (to tell the script they are in)."""
    found: list[str] = []
    for subset in find_subsets(Path(root)).values():
        for chap in _chapters(subset):
            for path in sorted(chap.glob("*.trans.txt")):
                with open(path, encoding="utf-8", errors="replace") as f:
                    found += [line.split(maxsplit=1)[1] for line in f if len(line.split(maxsplit=1)) == 2]
                if len(found) >= lines:
                    return found[:lines]
    return found


def scan_chapter(chapter: str, rules: TextRules = ENGLISH) -> tuple[list[dict], list[str], TextReport]:
    """Rows, problems and the text report of one SPK/CHAP directory. Runs in a worker process."""
    chap = Path(chapter)
    spk = chap.parent.name
    transcripts: dict[str, str] = {}
    audio: dict[str, Path] = {}
    problems: list[str] = []
    report = TextReport(rules)
    skipped: set[str] = set()  # left out by the text rules (counted in the report)
    with os.scandir(chap) as it:
        entries = sorted(Path(e.path) for e in it if e.is_file())
    for path in entries:
        if path.name.endswith(".trans.txt"):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError as exc:
                problems.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); chapter left out")
                continue
            for n, line in enumerate(lines, 1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                text = report.normalize(parts[1]) if len(parts) > 1 else ""
                if text is None:
                    skipped.add(parts[0])
                    continue
                if not text:
                    problems.append(f"{path}:{n}: transcript line without text ({parts[0]})")
                    continue
                transcripts[parts[0]] = text
        elif path.suffix.lower() in AUDIO_EXTS:
            audio[path.stem] = path
    rows = []
    for uid in sorted((set(audio) | set(transcripts)) - skipped):
        if uid not in audio:
            problems.append(f"{chap}/{uid}: transcript line without audio file")
            continue
        if uid not in transcripts:
            problems.append(f"{audio[uid]}: audio without a transcript line")
            continue
        try:
            info = audio_info(audio[uid])
        except W2VError as exc:
            problems.append(str(exc))
            continue
        rows.append({
            "id": uid,
            "audio": str(audio[uid]),
            "num_samples": info.num_samples,
            "sample_rate": info.sample_rate,
            "text": transcripts[uid],
            "speaker": spk,
        })
    return rows, problems, report


def _chapters(subset_dir: Path) -> list[Path]:
    return [chap for spk in _subdirs(subset_dir) for chap in _subdirs(spk)]


def scan_subsets(subsets: dict[str, Path], jobs: int, rules: TextRules = ENGLISH) -> dict[str, SubsetResult]:
    """Scan every chapter of the given subsets, `jobs` worker processes at once, with a progress bar."""
    tasks = [(name, str(chap)) for name, d in subsets.items() for chap in _chapters(d)]
    results = {name: SubsetResult(name, report=TextReport(rules)) for name in subsets}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chapters"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(f"reading {', '.join(subsets)}", total=len(tasks))

        def collect(name: str, out: tuple[list[dict], list[str], TextReport]) -> None:
            results[name].rows.extend(out[0])
            results[name].problems.extend(out[1])
            results[name].report.merge(out[2])
            progress.advance(bar)

        if jobs <= 1 or len(tasks) <= 1:
            for name, chap in tasks:
                collect(name, scan_chapter(chap, rules))
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
                futures = {pool.submit(scan_chapter, chap, rules): name for name, chap in tasks}
                for fut in as_completed(futures):
                    collect(futures[fut], fut.result())
    for res in results.values():
        res.rows.sort(key=lambda r: r["id"])
        res.problems.sort()
    return results


def write_split(out: Path, res: SubsetResult) -> None:
    """`<name>.jsonl` and `<name>.txt` (when it has rows) and the problem list (removed when
    there are none), each written atomically. Shared by the corpus readers."""
    if res.rows:
        write_manifest(out / f"{res.name}.jsonl", res.rows)
        with atomic_open(out / f"{res.name}.txt", "w", encoding="utf-8") as f:
            f.writelines(r["text"] + "\n" for r in res.rows)
    problems = out / f"{res.name}.problems.txt"
    if res.problems:
        with atomic_open(problems, "w", encoding="utf-8") as f:
            f.writelines(p + "\n" for p in res.problems)
    elif problems.exists():
        problems.unlink()


def write_subset(out: Path, res: SubsetResult) -> None:
    """`write_split`'s files, then the `.done` marker."""
    write_split(out, res)
    with atomic_open(out / f"{res.name}.done", "w", encoding="utf-8") as f:
        f.write(f"{len(res.rows)} utterances {res.hours:.3f} hours {len(res.problems)} problems\n")


def prepare_librispeech(
    root: str | os.PathLike,
    out: str | os.PathLike,
    subsets: list[str] | None = None,
    force: bool = False,
    jobs: int | None = None,
    rules: TextRules = ENGLISH,
) -> dict[str, SubsetResult]:
    """Prepare the (selected) subsets of a LibriSpeech-layout tree into `out`, transcripts normalised
    by `rules`. Safe to re-run (with the same rules: other rules than the finished subsets' are refused)."""
    out = Path(out)
    found = find_subsets(Path(root))
    if subsets:
        unknown = [s for s in subsets if s not in found]
        if unknown:
            raise W2VError(f"{root}: no subset {', '.join(unknown)} (found: {', '.join(sorted(found))})")
        found = {s: found[s] for s in subsets}
    out.mkdir(parents=True, exist_ok=True)
    check_same_rules(out, rules, force, redone=set(found) if force else set())
    todo = {n: d for n, d in found.items() if force or not (out / f"{n}.done").exists()}
    for name in sorted(set(found) - set(todo)):
        log(f"{name}: already prepared in {out} (use --force to redo)")
    jobs = jobs or os.cpu_count() or 1
    results = scan_subsets(todo, jobs, rules) if todo else {}
    for name, res in sorted(results.items()):
        res.report.log(name)
        for p in res.problems[:MAX_WARNINGS]:
            warn(p)
        if len(res.problems) > MAX_WARNINGS:
            warn(f"{name}: {len(res.problems) - MAX_WARNINGS} more problems, see {out / (name + '.problems.txt')}")
        if not res.rows:
            raise W2VError(f"{found[name]}: no usable utterances in subset {name}")
        write_subset(out, res)
        skipped = f", {res.report.skipped} left out by the text rules" if res.report.skipped else ""
        log(f"{name}: {len(res.rows)} utterances, {res.hours:.2f} h, {len(res.problems)} problem(s){skipped} "
            f"-> {out / (name + '.jsonl')}")
    for name in found:
        if name not in results:
            results[name] = SubsetResult(name, rows=read_manifest(out / f"{name}.jsonl"), skipped=True)
    done = {p.name[: -len(".done")] for p in out.glob("*.done")}
    everything = {n: results[n].rows if n in results else read_manifest(out / f"{n}.jsonl") for n in sorted(done)}
    vocab = write_text_files(out, everything, rules)
    log(f"vocabulary of {len(vocab)} tokens -> {out / 'vocab.json'}, {out / 'dict.ltr.txt'}; "
        f"word counts -> {out / 'words.txt'}; text rules -> {out / RULES_FILE}")
    return results
