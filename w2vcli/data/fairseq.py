"""`w2v prepare fairseq`: fairseq `.tsv` (+ `.wrd`/`.ltr`) manifests -> w2v JSONL manifests.

Every listed file's header is read, so the JSONL rows carry the true sample rate and sample
count; unreadable files are named in a warning and left out, as in `prepare librispeech`.
"""

from __future__ import annotations

import os
from pathlib import Path

from w2vcli.audio import audio_info
from w2vcli.data.manifest import read_manifest, write_manifest
from w2vcli.data.transcripts import TextReport, write_text_files
from w2vcli.errors import W2VError
from w2vcli.text import ENGLISH, RULES_FILE, TextRules
from w2vcli.utils import log, warn


def prepare_fairseq(tsvs: list[str | os.PathLike], out: str | os.PathLike,
                    rules: TextRules = ENGLISH) -> dict[str, list[dict]]:  # fmt: skip
    """Convert each `X.tsv` to `out/X.jsonl`, transcripts normalised by `rules`; write the
    vocabulary and text rules when transcripts exist."""
    out = Path(out)
    converted: dict[str, list[dict]] = {}
    for tsv in map(Path, tsvs):
        if tsv.suffix != ".tsv":
            raise W2VError(f"{tsv}: expected a fairseq .tsv manifest")
        rows = []
        report = TextReport(rules)
        for row in read_manifest(tsv):
            if "text" in row:
                row["text"] = report.normalize(row["text"])
                if row["text"] is None:  # left out by the text rules (counted in the report)
                    continue
            try:
                info = audio_info(row["audio"])
            except W2VError as exc:
                warn(str(exc))
                continue
            if info.num_samples != row["num_samples"]:
                warn(f"{row['audio']}: {tsv.name} says {row['num_samples']} samples, "
                     f"the file holds {info.num_samples}; using the file's count")
            rows.append(row | {"num_samples": info.num_samples, "sample_rate": info.sample_rate})
        report.log(tsv.stem)
        if not rows:
            raise W2VError(f"{tsv}: no usable audio files")
        name = tsv.stem
        if name in converted:
            raise W2VError(f"{tsv}: a manifest named {name} was already converted in this run")
        write_manifest(out / f"{name}.jsonl", rows)
        converted[name] = rows
        log(f"{name}: {len(rows)} utterances -> {out / (name + '.jsonl')}")
    labeled = {n: r for n, r in converted.items() if all("text" in x for x in r)}
    if labeled:
        write_text_files(out, labeled, rules)
        log(f"vocabulary -> {out / 'vocab.json'}, {out / 'dict.ltr.txt'}; word counts -> {out / 'words.txt'}; "
            f"text rules -> {out / RULES_FILE}")
    return converted
