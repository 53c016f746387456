"""How every `w2v ... --help` reads: click's plain layout, with

- the usage line naming arguments like their help entries (`w2v transcribe [OPTIONS] MODEL [AUDIO]...`),
  where Typer would write `{MODEL} [audio]...`;
- options grouped under the `rich_help_panel` each one names (plain text, not Rich boxes),
  required ones marked;
- a command's summary in `w2v --help` being its whole first sentence, never cut at 45 characters.

Commands use `W2VCommand` (`app.command(..., cls=W2VCommand)`), groups `W2VHelpGroup`.
"""

from __future__ import annotations

import re

from typer.core import TyperCommand, TyperGroup

try:
    from typer import _click as click  # typer 0.2x carries its own copy of click
except ImportError:  # older typer: click itself
    import click

OPTIONS_PANEL = "Options"


def first_sentence(text: str | None) -> str:
    """The first sentence of a help text (its first paragraph up to ". "), whole."""
    paragraph = re.split(r"\n\s*\n", (text or "").strip(), maxsplit=1)[0]
    words = " ".join(paragraph.split())
    end = re.search(r"[.!?](\s|$)", words)
    return words[: end.start() + 1].rstrip(".") if end else words


def argument_name(param) -> str:
    """ROOT, [AUDIO]..., TEXTS...: an argument as the usage line and its help entry name it."""
    name = (param.metavar or param.name or "").upper()
    if not param.required:
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


class W2VCommand(TyperCommand):
    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or first_sentence(self.help)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        args = [argument_name(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return ([self.options_metavar] if self.options_metavar else []) + args

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        args, panels = [], {OPTIONS_PANEL: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((argument_name(param), record[1]))
            else:
                panels.setdefault(getattr(param, "rich_help_panel", None) or OPTIONS_PANEL, []).append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        untagged = panels.pop(OPTIONS_PANEL)
        for title, records in [*panels.items(), (OPTIONS_PANEL if not panels else "Other options", untagged)]:
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class W2VHelpGroup(TyperGroup):
    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or first_sentence(self.help)
