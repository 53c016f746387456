"""`w2v prepare commonvoice`: JSONL manifests, vocabulary and text rules from one language of
Mozilla Common Voice.

Expected layout (one language folder of a release, e.g. cv-corpus-17.0-2024-03-15/de):

    DIR/clips/*.mp3
    DIR/train.tsv, dev.tsv, test.tsv     the official splits (disjoint speakers and sentences)
    DIR/validated.tsv, invalidated.tsv, other.tsv, ...
    header: client_id path sentence up_votes down_votes age gender accents variant locale segment
            (newer releases add sentence_id, sentence_domain; columns are read by name)

The tab-separated files are not quoted (a sentence may hold a '"'). Outputs in OUT, per split:

    <split>.jsonl          {"id": clip stem, "audio": absolute path, "num_samples", "sample_rate",
                            "text": normalised sentence, "speaker": client_id}, in the tsv's order
    <split>.txt            the normalised sentences (LM training text)
    <split>.problems.txt   every row left out and why (when there is one)

and vocab.json, dict.ltr.txt, words.txt (over the training splits) and text_rules.json.
Text is lower-cased by default (the XLS-R convention). Votes: the official train/dev/test
hold validated clips only (at least two up-votes, more up than down), so by default nothing is
filtered; `min_up_votes` / `max_down_votes` filter every split read (useful with `validated`
or `other`). With `convert_to`, every clip is decoded once into a 16 kHz mono FLAC copy there
and the manifests point to the copies, which load faster than MP3 in every epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from w2vcli.data.clips import Clip, read_clips
from w2vcli.data.librispeech import MAX_WARNINGS, SubsetResult, write_split
from w2vcli.data.transcripts import TextReport, check_same_rules, write_text_files
from w2vcli.errors import W2VError
from w2vcli.text import RULES_FILE, TextRules
from w2vcli.utils import log, warn

SPLITS = ("train", "dev", "test")  # prepared by default
HELD_OUT = ("dev", "test")  # never the training split for the vocabulary and word counts
REQUIRED = ("client_id", "path", "sentence")


@dataclass(frozen=True)
class VoteFilter:
    """Which clips to keep by their votes; validates itself. None: no limit."""

    min_up_votes: int | None = None
    max_down_votes: int | None = None

    def __post_init__(self) -> None:
        for name in ("min_up_votes", "max_down_votes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise W2VError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")

    @property
    def columns(self) -> tuple[str, ...]:
        return (("up_votes",) if self.min_up_votes is not None else ()) + \
            (("down_votes",) if self.max_down_votes is not None else ())

    def keeps(self, up: int, down: int) -> bool:
        return ((self.min_up_votes is None or up >= self.min_up_votes)
                and (self.max_down_votes is None or down <= self.max_down_votes))


@dataclass
class Listed:
    """The usable rows of one split's tsv before its audio is read."""

    name: str
    rows: list[dict] = field(default_factory=list)  # id, clip path, text, speaker
    problems: list[str] = field(default_factory=list)
    voted_out: int = 0  # left out by the vote filter
    report: TextReport | None = None


def read_split(tsv: Path, clips: dict[str, str], rules: TextRules, votes: VoteFilter) -> Listed:
    """Rows of one split's tsv: sentences normalised, bad rows named in `problems`.

    `clips` maps the file names in DIR/clips to their paths.
    """
    listed = Listed(tsv.stem, report=TextReport(rules))
    try:
        _read_rows(tsv, listed, clips, votes)
    except UnicodeDecodeError as exc:
        raise W2VError(f"{tsv}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return listed


def _read_rows(tsv: Path, listed: Listed, clips: dict[str, str], votes: VoteFilter) -> None:
    """Fill `listed` from the rows of `tsv` (see `read_split`)."""
    with open(tsv, encoding="utf-8", newline="\n") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        missing = [c for c in REQUIRED + votes.columns if c not in header]
        if missing:
            raise W2VError(f"{tsv}:1: no column {', '.join(missing)} in the header (found: {', '.join(header)})")
        col = {name: header.index(name) for name in REQUIRED + votes.columns}
        seen: set[str] = set()
        for n, line in enumerate(f, 2):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            problem = _check_row(fields, header, col, clips, votes, seen)
            if problem == "voted out":
                listed.voted_out += 1
                continue
            if problem:
                listed.problems.append(f"{tsv}:{n}: {problem}")
                continue
            name = fields[col["path"]]
            text = listed.report.normalize(fields[col["sentence"]])
            if text is None:  # left out by the text rules (counted in the report)
                continue
            if not text:
                listed.problems.append(f"{tsv}:{n}: sentence {fields[col['sentence']]!r} has no letters or digits")
                continue
            seen.add(name)
            listed.rows.append({"id": Path(name).stem, "clip": clips.get(name) or clips[name + ".mp3"],
                                "text": text, "speaker": fields[col["client_id"]]})


def _check_row(fields: list[str], header: list[str], col: dict[str, int], clips: dict[str, str],
               votes: VoteFilter, seen: set[str]) -> str | None:  # fmt: skip
    """What is wrong with a tsv row ("voted out" when the vote filter drops it), or None."""
    if len(fields) != len(header):
        return f"{len(fields)} fields, the header has {len(header)}"
    name = fields[col["path"]]
    if not fields[col["sentence"]].strip():
        return f"empty sentence ({name})"
    if name not in clips and name + ".mp3" not in clips:
        return f"no clip {name} in clips/"
    if name in seen:
        return f"{name} is listed twice"
    if votes.columns:
        try:
            up = int(fields[col["up_votes"]]) if "up_votes" in col else 0
            down = int(fields[col["down_votes"]]) if "down_votes" in col else 0
        except ValueError:
            return f"votes are not whole numbers ({name})"
        if not votes.keeps(up, down):
            return "voted out"
    return None


def sample_sentences(root: str | os.PathLike, splits: list[str], lines: int = 200) -> list[str]:
    """Up to `lines` raw sentences of each split's tsv (to tell the script they are in)."""
    found: list[str] = []
    for name in splits:
        tsv = Path(root) / f"{name}.tsv"
        if not tsv.is_file():
            continue
        with open(tsv, encoding="utf-8", errors="replace", newline="\n") as f:
            header = f.readline().rstrip("\r\n").split("\t")
            if "sentence" not in header:
                continue
            i = header.index("sentence")
            for n, line in enumerate(f):
                fields = line.rstrip("\r\n").split("\t")
                if n == lines:
                    break
                if len(fields) == len(header):
                    found.append(fields[i])
    return found


def prepare_commonvoice(
    root: str | os.PathLike,
    out: str | os.PathLike,
    rules: TextRules,
    splits: list[str] | None = None,
    votes: VoteFilter = VoteFilter(),
    convert_to: str | os.PathLike | None = None,
    jobs: int | None = None,
    force: bool = False,
) -> dict[str, SubsetResult]:
    """Prepare the splits of a Common Voice language folder into `out` (see the module docstring)."""
    root, out = Path(root), Path(out)
    splits = list(splits or SPLITS)
    if not (root / "clips").is_dir():
        raise W2VError(f"{root}: not a Common Voice language folder (no clips/ directory)")
    absent = [s for s in splits if not (root / f"{s}.tsv").is_file()]
    if absent:
        present = sorted(p.stem for p in root.glob("*.tsv"))
        raise W2VError(f"{root}: no {', '.join(s + '.tsv' for s in absent)} (found: {', '.join(present) or 'none'})")
    out.mkdir(parents=True, exist_ok=True)
    check_same_rules(out, rules, force)
    with os.scandir(root / "clips") as it:
        clips = {e.name: os.path.abspath(e.path) for e in it if e.is_file()}
    listed = {s: read_split(root / f"{s}.tsv", clips, rules, votes) for s in splits}
    paths = sorted({r["clip"] for lst in listed.values() for r in lst.rows})
    found = read_clips(paths, jobs or os.cpu_count() or 1, convert_to=convert_to, force=force)
    results = {s: _split_result(lst, found) for s, lst in listed.items()}
    for name, res in results.items():
        _log_split(out, res, listed[name])
    usable = {n: r.rows for n, r in results.items() if r.rows}
    if not usable:
        raise W2VError(f"{root}: no usable clips in {', '.join(s + '.tsv' for s in splits)}")
    for res in results.values():
        write_split(out, res)
    train = [n for n in usable if n not in HELD_OUT] or list(usable)
    vocab = write_text_files(out, usable, rules, train=train)
    log(f"vocabulary of {len(vocab)} tokens -> {out / 'vocab.json'}, {out / 'dict.ltr.txt'}; "
        f"word counts ({', '.join(train)}) -> {out / 'words.txt'}; text rules -> {out / RULES_FILE}")
    return results


def _split_result(listed: Listed, found: dict[str, Clip | str]) -> SubsetResult:
    res = SubsetResult(listed.name, problems=list(listed.problems), report=listed.report)
    for row in listed.rows:
        clip = found[row["clip"]]
        if isinstance(clip, str):
            res.problems.append(clip)
            continue
        res.rows.append({"id": row["id"], "audio": clip.audio, "num_samples": clip.num_samples,
                         "sample_rate": clip.sample_rate, "text": row["text"], "speaker": row["speaker"]})
    return res


def _log_split(out: Path, res: SubsetResult, listed: Listed) -> None:
    res.report.log(res.name)
    for p in res.problems[:MAX_WARNINGS]:
        warn(p)
    if len(res.problems) > MAX_WARNINGS:
        warn(f"{res.name}: {len(res.problems) - MAX_WARNINGS} more problems, see {out / (res.name + '.problems.txt')}")
    left_out = [f"{len(res.problems)} problem(s)"]
    if listed.voted_out:
        left_out.append(f"{listed.voted_out} left out by the vote filter")
    if res.report.skipped:
        left_out.append(f"{res.report.skipped} left out by the text rules")
    if not res.rows:
        warn(f"{res.name}: no usable clips ({', '.join(left_out)}); no {res.name}.jsonl written")
        return
    log(f"{res.name}: {len(res.rows)} clips, {res.hours:.2f} h, {', '.join(left_out)} -> {out / (res.name + '.jsonl')}")
