"""`w2v align`: forced alignment of known text to its audio (words and characters with times and scores)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.alignment.align import LOW_SCORE, STAR_PENALTY
from w2vcli.errors import W2VError
from w2vcli.utils import ProgressBar, log, warn


def align(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="CTC model: w2v checkpoint, Hugging Face directory, fairseq .pt, or .onnx.")],
    audio: Annotated[Optional[Path], typer.Argument(metavar="AUDIO", help="The recording (any format soundfile reads).", show_default=False, dir_okay=False)] = None,
    text: Annotated[Optional[Path], typer.Argument(metavar="TEXT", help="Its text, UTF-8, as written (punctuation, any case).", show_default=False, dir_okay=False)] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", "-m", help="Align every row of a JSONL/tsv manifest with its 'text' instead.", dir_okay=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl | srt | vtt | textgrid | ctm | audacity.")] = "jsonl",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file instead of printing.", dir_okay=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="One AUDIO-STEM.FORMAT file per recording in this folder.", file_okay=False)] = None,
    segment: Annotated[Optional[float], typer.Option("--segment", help="Cut the recording into utterances of at most this many seconds and write a training manifest to --out (audio in --out-dir).", min=1.0)] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="With --segment: drop utterances whose score is below this.")] = 0.2,
    star: Annotated[bool, typer.Option("--star/--no-star", help="A garbage unit at the ends and between words absorbs speech that is not in the text.")] = True,
    star_penalty: Annotated[float, typer.Option("--star-penalty", help="Nats per frame the garbage unit pays below the frame's best unit.")] = STAR_PENALTY,
    low_score: Annotated[float, typer.Option("--low-score", help="Words scoring below this are flagged 'low'.")] = LOW_SCORE,
    chunk_seconds: Annotated[float, typer.Option("--chunk-seconds", help="Long audio: seconds kept per model window (0 = never chunk).")] = 30.0,
    context_seconds: Annotated[float, typer.Option("--context-seconds", help="Long audio: seconds of context on each side of a window.")] = 5.0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Files (or windows) per forward pass.")] = 8,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 | fp16.")] = "auto",
    quantize: Annotated[str, typer.Option("--quantize", help="auto | none | int8 (CPU).")] = "auto",
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary for a model that has none with it.", exists=True, dir_okay=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of the model (0 = torch's default).", min=0)] = None,
) -> None:
    """Align known text to its recording: every word and character with start, end and score.

    The text is normalised by the model's text rules and aligned by CTC forced alignment (Viterbi
    over the model's units); the output keeps the words as written. Words the audio does not
    support are flagged "low", audio the text does not cover is listed as "unaligned" (docs/align.md).
    """
    import w2vcli
    from w2vcli import cpu
    from w2vcli.alignment.align import AlignOptions, align_items
    from w2vcli.alignment.formats import FORMATS, SUFFIX, render
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.output import Output, transcript_writer

    if (audio is None) != (text is None) or (audio is None) == (manifest is None):
        raise W2VError("give AUDIO and TEXT, or --manifest M (rows with 'text'), not both")
    if segment is not None and (manifest is not None or out is None or out_dir is None):
        raise W2VError("--segment needs one AUDIO and TEXT, --out MANIFEST.jsonl and --out-dir for the audio pieces")
    output = Output(fmt, out, out_dir, formats=FORMATS, suffix=SUFFIX.get(fmt, fmt)) if segment is None else None
    if segment is None and manifest is not None and fmt in ("srt", "vtt", "textgrid", "audacity") and out_dir is None:
        raise W2VError(f"--format {fmt} for a manifest needs --out-dir (one file per recording)")
    if audio is not None:
        try:
            text_str = text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise W2VError(f"{text}: cannot read the text ({getattr(exc, 'strerror', None) or exc})") from None
        items = [(str(audio), str(audio), text_str)]
    else:
        from w2vcli.data.manifest import read_manifest

        rows = read_manifest(manifest)
        missing = [str(r.get("id")) for r in rows if not isinstance(r.get("text"), str)]
        if missing:
            raise W2VError(f"{manifest}: no 'text' for id {missing[0]} (align needs each row's text)")
        items = [(str(r["id"]), str(r["audio"]), r["text"]) for r in rows]

    cpu.set_threads(cpu.inference_threads(cpu.AUTO if threads is None else threads, 1))
    model = w2vcli.load_ctc_model(model_path, device="cpu", vocab=vocab)
    options = AlignOptions(star=star, star_penalty=star_penalty, low_score=low_score)
    emission = EmissionOptions(batch_size, chunk_seconds, context_seconds, device, precision, quantize=quantize)
    t0 = time.perf_counter()
    failed: list[str] = []

    def on_error(path: str, message: str) -> None:
        failed.append(path)
        warn(message)

    if segment is not None:
        from w2vcli.alignment.segment import write_segments

        results = []
        align_items(model, items, options, emission, lambda _k, a: results.append(a), on_error, ProgressBar)
        if results:
            kept, total = write_segments(results[0], segment, min_score, out, out_dir, model.text_rules)
            log(f"wrote {kept} of {total} utterances (at most {segment:g} s, score >= {min_score:g}) to {out}, audio in {out_dir}")
    else:
        ids = manifest is not None
        with transcript_writer(output, render=render) as write:

            def on_result(key: str, a) -> None:
                d = a.to_dict()
                write({"id": key, **d} if ids else d)
                low = sum(w.low for w in a.words)
                if low or a.unaligned:
                    warn(f"{a.audio}: {low} of {len(a.words)} words scored below {low_score:g}, "
                         f"{len(a.unaligned)} span(s) of audio not in the text")  # fmt: skip

            stats = align_items(model, items, options, emission, on_result, on_error, ProgressBar)
        if out is not None:
            log(f"wrote {stats.files} alignment(s) to {out}")
        log(f"aligned {stats.files} file(s), {stats.audio_seconds:.1f} s of audio in {time.perf_counter() - t0:.1f} s "
            f"(model {stats.model_seconds:.1f} s)")  # fmt: skip
    if failed:
        raise W2VError(f"{len(failed)} of {len(items)} recording(s) could not be aligned: " + ", ".join(failed[:5]))
