"""Output formats of `w2v transcribe`: txt, jsonl, srt, vtt.

A transcript is a dict `{"audio", "text", "words": [{"word", "start", "end"}], "duration"}`
(times in seconds, plus "id" in manifest mode). Subtitles group words into cues that break at
pauses longer than `MAX_GAP`, after `MAX_CUE_SECONDS` or `MAX_CUE_CHARS` characters.
"""

from __future__ import annotations

import json

FORMATS = ("txt", "jsonl", "srt", "vtt")
MAX_GAP = 1.0  # s of silence between words that starts a new cue
MAX_CUE_SECONDS = 6.0  # longest cue
MAX_CUE_CHARS = 84  # longest cue text (two subtitle lines of 42)


def cues(words: list[dict], confidence: bool = False) -> list[tuple[float, float, str]]:
    """(start, end, text) subtitle cues from timed words; `confidence`: "WORD (0.93)"."""
    if confidence:
        words = [{**w, "word": f"{w['word']} ({w['confidence']:.2f})"} if "confidence" in w else w for w in words]
    out: list[tuple[float, float, str]] = []
    group: list[dict] = []
    for w in words:
        if group:
            text_len = sum(len(g["word"]) + 1 for g in group) + len(w["word"])
            if (
                w["start"] - group[-1]["end"] > MAX_GAP
                or w["end"] - group[0]["start"] > MAX_CUE_SECONDS
                or text_len > MAX_CUE_CHARS
            ):
                out.append((group[0]["start"], group[-1]["end"], " ".join(g["word"] for g in group)))
                group = []
        group.append(w)
    if group:
        out.append((group[0]["start"], group[-1]["end"], " ".join(g["word"] for g in group)))
    return out


def timestamp(seconds: float, decimal: str) -> str:
    """HH:MM:SS,mmm (srt, decimal ",") or HH:MM:SS.mmm (vtt, decimal ".")."""
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_srt(transcript: dict, confidence: bool = False) -> str:
    blocks = [
        f"{n}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{text}\n"
        for n, (a, b, text) in enumerate(cues(transcript["words"], confidence), 1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: dict, confidence: bool = False) -> str:
    blocks = [f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n{text}\n" for a, b, text in cues(transcript["words"], confidence)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(transcript: dict, fmt: str, with_path: bool = False, confidence: bool = False) -> str:
    """The transcript in `fmt`; txt puts "PATH<TAB>" in front when `with_path` (several files);
    `confidence`: subtitles show each word's confidence after it."""
    if fmt == "jsonl":
        return json.dumps(transcript, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(transcript, confidence)
    if fmt == "vtt":
        return to_vtt(transcript, confidence)
    return (f"{transcript['audio']}\t" if with_path else "") + transcript["text"] + "\n"
