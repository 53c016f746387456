"""`w2v prepare`: JSONL manifests, a letter vocabulary and transcripts from a corpus."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from w2vcli.commands.layout import W2VCommand, W2VHelpGroup
from w2vcli.errors import W2VError

app = typer.Typer(cls=W2VHelpGroup, help="Write JSONL manifests, a vocabulary and transcripts from a corpus.", no_args_is_help=True,
                  rich_markup_mode=None)

Jobs = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores).")]


# text rules (w2vcli/text.py), shared by the commands that read transcripts
Case = Annotated[Optional[str], typer.Option("--case", help="upper | lower | keep (default: upper for LibriSpeech and fairseq, lower for Common Voice and tables).")]
Keep = Annotated[Optional[str], typer.Option("--keep", help="Punctuation kept as characters, e.g. \"'-\" (default: the apostrophe). Letters, marks and digits of every script are always kept.")]
Digits = Annotated[str, typer.Option("--digits", help="keep: digits are characters; skip: leave out utterances with digits. Never deleted silently.")]
WordBoundary = Annotated[Optional[bool], typer.Option("--word-boundary/--no-word-boundary", help="Words separated by `|` (default: yes, unless the transcripts are in a script written without spaces: Chinese, Japanese, Thai...).", show_default=False)]
RulesFile = Annotated[Optional[Path], typer.Option("--rules", help="Use the text rules of another prepared corpus (its text_rules.json); overrides --case/--keep/--digits.", dir_okay=False)]


@contextlib.contextmanager
def _interrupted(left: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C: say what was finished and what a rerun does (`left()`), exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
        from w2vcli.utils import log

        log(f"interrupted: {left()}")
        raise typer.Exit(130) from None


def _finished_subsets(out: Path) -> str:
    done = sorted(p.name[: -len(".done")] for p in out.glob("*.done")) if out.is_dir() else []
    if not done:
        return f"no subset finished in {out} yet; the same command starts again"
    return (f"finished in {out}: {', '.join(done)}; the same command again skips them and prepares the rest "
            "(the vocabulary then covers all)")


def _converted(out: Path, convert: Path | None) -> str:
    copies = sum(1 for _ in convert.rglob("*.flac")) if convert is not None and convert.is_dir() else 0
    kept = (f"{copies} FLAC copies in {convert} are kept and reused by the same command again"
            if copies else "the same command starts again")
    return f"the manifests in {out} are written at the end, so none yet; {kept}"


def _nothing_written(out: Path) -> str:
    return f"nothing was written to {out} (outputs are written at the end); run the same command again"


def _split(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def _out_folder(out: Path) -> Path:
    """--out names a folder to write into: not an existing file."""
    if out.exists() and not out.is_dir():
        raise W2VError(f"--out {out}: a file, not a folder (give a folder for the outputs)")
    return out


def _out_file(out: Path) -> Path:
    """--out names a manifest file to write: not an existing folder."""
    if out.is_dir():
        raise W2VError(f"--out {out}: a folder, not a file (give the manifest's name, e.g. {out / 'train.jsonl'})")
    return out


@app.command("librispeech", cls=W2VCommand)
def librispeech(
    root: Annotated[Path, typer.Argument(help="LibriSpeech root (holding SUBSET/SPK/CHAP) or one subset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for manifests and vocabulary.")],
    subsets: Annotated[Optional[str], typer.Option(help="Comma-separated subsets to prepare (default: all found).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo subsets that are already prepared.")] = False,
    jobs: Jobs = None,
    case: Case = None,
    keep: Keep = None,
    digits: Digits = "keep",
    word_boundary: WordBoundary = None,
    rules: RulesFile = None,
) -> None:
    """Read a LibriSpeech-layout tree: writes OUT/<subset>.jsonl and .txt, vocab.json, dict.ltr.txt,
    words.txt and text_rules.json.

    Reads audio headers only. Missing, empty, truncated or unreadable audio, audio without a
    transcript line and transcript lines without audio are named in warnings and left out.
    Transcripts that normalising changes beyond case and punctuation are counted, with examples.
    Finished subsets are skipped on a re-run unless --force.
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.librispeech import prepare_librispeech, sample_transcripts
    from w2vcli.data.transcripts import choose_rules

    sample = sample_transcripts(root) if word_boundary is None and rules is None else None
    text_rules = choose_rules(case or "upper", keep, digits, word_boundary, sample, rules)
    with _interrupted(lambda: _finished_subsets(out)):
        prepare_librispeech(root, _out_folder(out), subsets=_split(subsets), force=force, jobs=jobs, rules=text_rules)


@app.command("fairseq", cls=W2VCommand)
def fairseq(
    tsv: Annotated[list[Path], typer.Argument(help="fairseq .tsv manifests (.wrd/.ltr beside them give text).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: one <name>.jsonl per .tsv.")],
    case: Case = None,
    keep: Keep = None,
    digits: Digits = "keep",
    word_boundary: WordBoundary = None,
    rules: RulesFile = None,
) -> None:
    """Convert fairseq .tsv (+ .wrd/.ltr) manifests to w2v JSONL manifests, checking every audio file."""
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.fairseq import prepare_fairseq
    from w2vcli.data.manifest import read_manifest
    from w2vcli.data.transcripts import choose_rules

    sample = None
    if word_boundary is None and rules is None:
        sample = [r["text"] for t in tsv if t.suffix == ".tsv" for r in read_manifest(t)[:200] if r.get("text")]
    with _interrupted(lambda: _nothing_written(out)):
        prepare_fairseq(tsv, _out_folder(out), choose_rules(case or "upper", keep, digits, word_boundary, sample, rules))


@app.command("commonvoice", cls=W2VCommand)
def commonvoice(
    root: Annotated[Path, typer.Argument(help="One Common Voice language folder (clips/, train.tsv, dev.tsv, test.tsv, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for manifests and vocabulary.")],
    splits: Annotated[str, typer.Option("--splits", help="Comma-separated tsv files to prepare, e.g. train,dev,test,validated,other.")] = "train,dev,test",
    convert: Annotated[Optional[Path], typer.Option("--convert", help="Decode every clip once into a 16 kHz mono FLAC copy in this directory (same file stem); the manifests point to the copies.", file_okay=False)] = None,
    min_up_votes: Annotated[Optional[int], typer.Option("--min-up-votes", min=0, help="Leave out clips with fewer up-votes (default: no limit; train/dev/test hold validated clips only).")] = None,
    max_down_votes: Annotated[Optional[int], typer.Option("--max-down-votes", min=0, help="Leave out clips with more down-votes (default: no limit).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert again clips already converted; replace OUT's text rules.")] = False,
    jobs: Jobs = None,
    case: Case = None,
    keep: Keep = None,
    digits: Digits = "keep",
    word_boundary: WordBoundary = None,
    rules: RulesFile = None,
) -> None:
    """Read a Common Voice language folder: writes OUT/<split>.jsonl and .txt, vocab.json,
    dict.ltr.txt, words.txt and text_rules.json.

    id = the clip's file name without extension, speaker = client_id. Sentences are lower-cased
    by default (the XLS-R convention). Clips are MP3, decoded by soundfile (libsndfile); reading
    the converted FLAC copies (--convert) is faster in every epoch. Rows with the wrong number
    of fields, an empty sentence, or a missing or unreadable clip are named in warnings and in
    OUT/<split>.problems.txt, and left out. Columns are read by name (old and new releases).
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.commonvoice import VoteFilter, prepare_commonvoice, sample_sentences
    from w2vcli.data.transcripts import choose_rules

    names = _split(splits) or []
    sample = sample_sentences(root, names) if word_boundary is None and rules is None else None
    text_rules = choose_rules(case or "lower", keep, digits, word_boundary, sample, rules)
    with _interrupted(lambda: _converted(out, convert)):
        prepare_commonvoice(root, _out_folder(out), text_rules, splits=names,
                            votes=VoteFilter(min_up_votes, max_down_votes), convert_to=convert, jobs=jobs, force=force)


@app.command("table", cls=W2VCommand)
def table(
    file: Annotated[Path, typer.Argument(help="A .tsv or .csv table whose first row names the columns.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output manifest (.jsonl); text_rules.json and vocab.json go beside it.", dir_okay=False)],
    audio_column: Annotated[str, typer.Option("--audio-column", help="Column of audio paths (relative to the table's folder, or absolute).")] = "audio",
    text_column: Annotated[str, typer.Option("--text-column", help="Column of transcripts.")] = "text",
    speaker_column: Annotated[Optional[str], typer.Option("--speaker-column", help="Column of speaker names (default: 'speaker' when there is one).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the text rules already in OUT's folder.")] = False,
    jobs: Jobs = None,
    case: Case = None,
    keep: Keep = None,
    digits: Digits = "keep",
    word_boundary: WordBoundary = None,
    rules: RulesFile = None,
) -> None:
    """A manifest from a table of (audio, transcript) rows: writes OUT.jsonl, and beside it
    text_rules.json, vocab.json, dict.ltr.txt and words.txt (over every labelled manifest there).

    .tsv is tab-separated, .csv comma-separated; quoted fields ("a, b") as Excel writes them.
    Transcripts are lower-cased by default (--case). Rows with a missing field, an empty
    transcript, or missing or unreadable audio are named in warnings and in OUT.problems.txt,
    and left out.
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.table import Columns, prepare_table, read_table
    from w2vcli.data.transcripts import choose_rules

    columns = Columns(audio_column, text_column, speaker_column)
    sample = [r["text"] for _, r in read_table(file, columns)[0][:200]] if word_boundary is None and rules is None else None
    text_rules = choose_rules(case or "lower", keep, digits, word_boundary, sample, rules)
    with _interrupted(lambda: _nothing_written(out)):
        prepare_table(file, _out_file(out), text_rules, columns, jobs=jobs, force=force)


@app.command("folder", cls=W2VCommand)
def folder(
    directory: Annotated[Path, typer.Argument(help="Folder searched recursively for audio files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output manifest (.jsonl).")],
    jobs: Jobs = None,
) -> None:
    """An unlabeled manifest (for pretraining) of every audio file soundfile reads under DIRECTORY."""
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.folder import prepare_folder

    with _interrupted(lambda: _nothing_written(out)):
        prepare_folder(directory, _out_file(out), jobs=jobs)


@app.command("synth", cls=W2VCommand)
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output corpus root (LibriSpeech layout).")],
    hours: Annotated[float, typer.Option(min=0.0, help="Hours of training audio (subset train-clean).")] = 1.0,
    dev_minutes: Annotated[float, typer.Option(min=0.0, help="Minutes of dev-clean audio (unseen speakers and sentences).")] = 10.0,
    test_minutes: Annotated[float, typer.Option(min=0.0, help="Minutes of test-clean audio (unseen speakers and sentences).")] = 10.0,
    speakers: Annotated[int, typer.Option(min=1, help="Training speakers (dev and test get their own, 4 each by default).")] = 32,
    heldout_speakers: Annotated[int, typer.Option(min=1, help="Speakers in each of dev-clean and test-clean.")] = 4,
    sentences: Annotated[Optional[Path], typer.Option(help="Sentence list (one per line, .txt or .txt.gz); default: the shipped one.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same corpus.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a corpus already in OUT.")] = False,
    jobs: Jobs = None,
) -> None:
    """Synthesize an English multi-speaker corpus (flite, festival, espeak-ng) laid out like LibriSpeech.

    Writes OUT/{train-clean,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-UTT.flac with
    SPK-CHAP.trans.txt and OUT/SPEAKERS.TXT; dev and test speakers and sentences are disjoint
    from training and from each other. Then run `w2v prepare librispeech OUT --out DATA`.
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.synth import SynthConfig, synthesize

    cfg = SynthConfig(train_hours=hours, dev_minutes=dev_minutes, test_minutes=test_minutes,
                      train_speakers=speakers, heldout_speakers=heldout_speakers,
                      sentences=sentences, seed=seed)
    with _interrupted(lambda: f"the corpus in {out} is unfinished; the same command again synthesizes it anew"):
        synthesize(cfg, _out_folder(out), jobs=jobs, force=force)


@app.command("subset", cls=W2VCommand)
def subset(
    manifest: Annotated[Path, typer.Argument(help="Manifest to draw from (.jsonl or fairseq .tsv).", exists=True, dir_okay=False)],
    minutes: Annotated[float, typer.Option("--minutes", min=0.0, help="Duration to draw, in minutes (whole utterances, at most this much).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output manifest (.jsonl).", dir_okay=False)],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same subset.")] = 0,
    labeled: Annotated[bool, typer.Option("--labeled", help="Draw only from utterances with a transcript.")] = False,
) -> None:
    """A subset of whole utterances adding up to at most --minutes, spread over speakers round-robin.

    Deterministic for a given --seed and keeps the input order; like Libri-Light's 10 min / 1 h
    splits, e.g. `w2v prepare subset data/train-clean.jsonl --minutes 10 --out data/train-10m.jsonl`.
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.data.manifest import duration, read_manifest, subset_manifest, write_manifest
    from w2vcli.utils import log

    _out_file(out)
    rows = read_manifest(manifest)
    if labeled:
        rows = [r for r in rows if r.get("text")]
    chosen = subset_manifest(rows, minutes, seed=seed)
    if not chosen:
        raise W2VError(f"{manifest}: no utterance fits in {minutes:g} minutes")
    write_manifest(out, chosen)
    speakers = len({r.get("speaker", r["id"]) for r in chosen})
    log(f"{len(chosen)} utterances, {sum(map(duration, chosen)) / 60:.2f} min, {speakers} speakers -> {out}")
