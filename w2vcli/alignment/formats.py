"""Output formats of `w2v align`: jsonl, srt, vtt, Praat TextGrid, CTM and Audacity labels.

Every renderer takes an alignment dict (`Alignment.to_dict()`, plus "id" in manifest mode)
with times in seconds:

    jsonl     the dict on one line: words with start, end, score (and "low"), their characters
    srt, vtt  subtitle cues of the text as written (w2vcli/decode/formats.py's cue rules)
    textgrid  Praat long TextGrid: tier "words" and tier "chars", intervals tiling 0..duration
    ctm       Kaldi/sclite: "UTT 1 START DURATION WORD SCORE" per word (UTT: id or file stem)
    audacity  Audacity's label track: "START<TAB>END<TAB>WORD" per word
"""

from __future__ import annotations

import json
from pathlib import Path

from w2vcli.decode.formats import to_srt, to_vtt

FORMATS = ("jsonl", "srt", "vtt", "textgrid", "ctm", "audacity")
SUFFIX = {"jsonl": "jsonl", "srt": "srt", "vtt": "vtt", "textgrid": "TextGrid", "ctm": "ctm", "audacity": "txt"}


def _tier(name: str, items: list[tuple[float, float, str]], duration: float) -> list[str]:
    """An IntervalTier whose intervals cover [0, duration]: the items, empty ones in between."""
    intervals: list[tuple[float, float, str]] = []
    t = 0.0
    for a, b, text in items:
        a = max(a, t)  # a character sharing a frame with the one before starts where that one ends
        if b <= a:
            continue
        if a > t:
            intervals.append((t, a, ""))
        intervals.append((a, b, text))
        t = b
    end = max(duration, t)
    if end > t or not intervals:
        intervals.append((t, end, ""))
    lines = ['        class = "IntervalTier"', f'        name = "{name}"', "        xmin = 0",
             f"        xmax = {end:g}", f"        intervals: size = {len(intervals)}"]  # fmt: skip
    for n, (a, b, text) in enumerate(intervals, 1):
        quoted = text.replace('"', '""')
        lines += [f"        intervals [{n}]:", f"            xmin = {a:g}", f"            xmax = {b:g}",
                  f'            text = "{quoted}"']  # fmt: skip
    return lines


def to_textgrid(a: dict) -> str:
    words = [(w["start"], w["end"], w["word"]) for w in a["words"]]
    chars = [(c["start"], c["end"], c["char"]) for w in a["words"] for c in w["chars"]]
    end = max([a["duration"]] + [b for _, b, _ in words])
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {end:g}",
             "tiers? <exists>", "size = 2", "item []:"]  # fmt: skip
    for n, (name, items) in enumerate((("words", words), ("chars", chars)), 1):
        lines += [f"    item [{n}]:", *_tier(name, items, end)]
    return "\n".join(lines) + "\n"


def to_ctm(a: dict) -> str:
    utt = str(a.get("id") or Path(a["audio"]).stem or "audio")
    return "".join(
        f"{utt} 1 {w['start']:.3f} {w['end'] - w['start']:.3f} {w['word']} {w['score']:.4f}\n" for w in a["words"]
    )


def to_audacity(a: dict) -> str:
    return "".join(f"{w['start']:.6f}\t{w['end']:.6f}\t{w['word']}\n" for w in a["words"])


def render(a: dict, fmt: str, with_path: bool = False) -> str:
    """The alignment in `fmt` (`with_path` is unused: every format names its words itself)."""
    if fmt == "jsonl":
        return json.dumps(a, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(a)
    if fmt == "vtt":
        return to_vtt(a)
    if fmt == "textgrid":
        return to_textgrid(a)
    if fmt == "ctm":
        return to_ctm(a)
    return to_audacity(a)
