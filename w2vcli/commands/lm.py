"""`w2v lm`: n-gram language models with KenLM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.commands.layout import W2VCommand, W2VHelpGroup
from w2vcli.decode.lm import LMBuildConfig, build_lm, rules_beside
from w2vcli.errors import W2VError
from w2vcli.text import TextRules
from w2vcli.utils import count_text, log

app = typer.Typer(cls=W2VHelpGroup, help="Build n-gram language models with KenLM.", no_args_is_help=True, rich_markup_mode=None)


@app.command("build", cls=W2VCommand)
def build(
    texts: Annotated[list[Path], typer.Argument(help="Text files (plain or .gz), one sentence per line, or JSONL manifests (their text fields).", dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (KenLM binary, or ARPA with --arpa).", dir_okay=False)],
    order: Annotated[int, typer.Option("--order", "-n", help="n-gram order.")] = 4,
    prune: Annotated[str, typer.Option("--prune", help="lmplz --prune count thresholds, one per order from unigrams, e.g. '0 0 1' or 0,0,1 (drop singleton trigrams and above).")] = "",
    arpa: Annotated[bool, typer.Option("--arpa", help="Write an ARPA text file instead of a KenLM binary.")] = False,
    exclude: Annotated[Optional[list[Path]], typer.Option("--exclude", help="Keep these sentences out (text file, or JSONL manifest's text), e.g. dev/test transcripts.", dir_okay=False)] = None,
    memory: Annotated[str, typer.Option("--memory", help="Sorting memory for lmplz/build_binary (-S), e.g. 2G or 20%.")] = "2G",
    rules: Annotated[Optional[Path], typer.Option("--rules", help="text_rules.json of the training transcripts (default: the one beside the TEXTS, as `w2v prepare` writes it beside train.txt and the manifests; else English).", dir_okay=False)] = None,
) -> None:
    """Normalise text like the training transcripts and build an n-gram LM with lmplz/build_binary.

    Also writes OUT.unigrams.txt, the word list `w2v transcribe --lm OUT` picks up for pyctcdecode,
    and OUT.text_rules.json. KenLM's programs come from `scripts/install_kenlm.sh`.
    """
    if rules:
        text_rules = TextRules.load(rules)
        log(f"lm: normalising with {rules} (case {text_rules.case})")
    else:
        text_rules = rules_beside(texts)
    try:
        thresholds = tuple(int(x) for x in prune.replace(",", " ").split())
    except ValueError:
        raise W2VError(f"--prune takes whole numbers such as '0 0 1', got {prune!r}") from None

    cfg = LMBuildConfig(
        texts=tuple(texts), out=out, order=order, prune=thresholds, arpa=arpa,
        exclude=tuple(exclude or ()), memory=memory, rules=text_rules,
    )  # fmt: skip
    res = build_lm(cfg)
    log(
        f"wrote {res.model} ({count_text(res.model.stat().st_size)}B, order {order}, {res.vocabulary} words; "
        f"{res.sentences} sentences, {res.excluded} excluded) and {res.unigrams}"
    )
