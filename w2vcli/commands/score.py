"""`w2v score`: WER and CER of hypotheses against references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from w2vcli.score import check_ids, read_transcripts, score_texts, write_details
from w2vcli.text import ENGLISH, RULES_FILE, TextRules
from w2vcli.utils import log


def score(
    ref: Annotated[Path, typer.Option("--ref", help="References: JSONL manifest (id, text) or Kaldi-style 'ID TEXT' file.", dir_okay=False)],
    hyp: Annotated[Path, typer.Option("--hyp", help="Hypotheses, same formats (e.g. from `w2v transcribe --manifest ... --out`).", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    details: Annotated[Optional[Path], typer.Option("--details", help="Write per-utterance alignments and the most frequent errors into this directory.", file_okay=False)] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="Normalise both sides by the text rules first.")] = True,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="text_rules.json to normalise with (default: the one `w2v prepare` wrote beside --ref, else English: upper case, letters, digits, apostrophes).", dir_okay=False)] = None,
    wer: Annotated[bool, typer.Option("--wer", hidden=True, help="Accepted for compatibility; WER is always reported.")] = False,
) -> None:
    """Word and character error rates with substitution, deletion and insertion counts.

    Utterances are matched by id. A reference id missing from HYP counts as all deletions
    (with a warning naming it); hypothesis ids without a reference are ignored (warned). An
    empty file, or no id in common, is an error.
    WER and CER equal jiwer's on the same (normalised) strings; CER counts spaces between words.
    For scripts written without spaces CER is the headline figure (WER is then the sentence error rate).
    """
    text_rules = TextRules.load(rules) if rules else TextRules.beside(ref)
    if text_rules is None:
        text_rules = ENGLISH
        if normalize:
            log(f"no {RULES_FILE} beside {ref}: normalising with the English rules (--rules to choose)")
    elif normalize and not as_json:  # --json: stdout and stderr are often read together
        log(f"score: normalising with {rules or ref.parent / RULES_FILE} (case {text_rules.case})")
    refs, hyps = read_transcripts(ref), read_transcripts(hyp)
    check_ids(refs, hyps, str(ref), str(hyp))
    report = score_texts(refs, hyps, normalize=normalize, rules=text_rules)
    if details is not None:
        paths = write_details(report, details)
        log(f"wrote {', '.join(str(p) for p in paths)}")
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    _print_table(report, ref, hyp)


def _print_table(report, ref: Path, hyp: Path) -> None:
    table = Table(title=f"{hyp} vs {ref}  ({len(report.utterances)} utterances)")
    for name in ("", "rate %", "errors", "sub", "del", "ins", "correct", "ref tokens"):
        table.add_column(name, justify="left" if not name else "right")
    rows = (("WER", report.words), ("CER", report.chars))
    for name, c in (rows[::-1] if report.headline == "cer" else rows):
        table.add_row(
            name, f"{100 * c.rate:.2f}", str(c.errors), str(c.substitutions), str(c.deletions),
            str(c.insertions), str(c.hits), str(c.ref_len),
        )  # fmt: skip
    Console().print(table)
    if report.note:
        log(f"note: {report.note}")
