"""`w2v transcribe`: speech to text with greedy CTC or KenLM beam search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.errors import W2VError
from w2vcli.utils import log, warn


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise W2VError(f"{option} takes numbers separated by commas, got {text!r}") from None
    if not values:
        raise W2VError(f"{option} is empty")
    return values


def transcribe(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="w2v checkpoint, Hugging Face directory, fairseq .pt, or .onnx from `w2v export --to onnx`.")],
    audio: Annotated[Optional[list[str]], typer.Argument(help="Audio files (any format soundfile reads); - reads one from standard input.", show_default=False)] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", "-m", help="Transcribe a JSONL/tsv manifest instead of files.", dir_okay=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="With --manifest: hypothesis JSONL to write ({id, text, words, ...} per line); with AUDIO files: write what would be printed (--format) to this file.", dir_okay=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output for files: txt | jsonl | srt | vtt.")] = "txt",
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write AUDIO-STEM.FORMAT files here instead of printing.", file_okay=False)] = None,
    lm: Annotated[Optional[Path], typer.Option("--lm", help="KenLM binary or ARPA model: beam search with shallow fusion.", dir_okay=False)] = None,
    beam: Annotated[Optional[int], typer.Option("--beam", help="Beam width (default 50 with --lm, else greedy; 0 = greedy).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="LM weight.")] = 0.5,
    beta: Annotated[float, typer.Option("--beta", help="Word insertion bonus.")] = 1.0,
    unigrams: Annotated[Optional[Path], typer.Option("--unigrams", "--lexicon", help="LM word list, or lexicon (first field used); default LM.unigrams.txt.", dir_okay=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --lexicon/--unigrams (or the LM's word list): words outside the list are impossible, not just penalised.")] = False,
    nbest: Annotated[int, typer.Option("--nbest", help="Write the N best beams with their scores to jsonl (beam search).", min=1)] = 1,
    timestamps: Annotated[str, typer.Option("--timestamps", help="word | char: char adds each word's letters (or pieces) with start and end.")] = "word",
    confidence: Annotated[bool, typer.Option("--confidence", help="srt/vtt: show each word's confidence after it (jsonl always has it).")] = False,
    hotwords: Annotated[Optional[str], typer.Option("--hotwords", help="Comma-separated words or phrases to favour (beam search).")] = None,
    hotword_weight: Annotated[float, typer.Option("--hotword-weight", help="Hotword score weight.")] = 10.0,
    chunk_seconds: Annotated[float, typer.Option("--chunk-seconds", help="Long audio: seconds kept per window (0 = never chunk).")] = 30.0,
    context_seconds: Annotated[float, typer.Option("--context-seconds", help="Long audio: seconds of context on each side of a window.")] = 5.0,
    stride_seconds: Annotated[Optional[float], typer.Option("--stride-seconds", hidden=True, help="Old name of --context-seconds.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Files (or windows) per forward pass.")] = 8,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Beam-search decoder processes (pure Python, one core each), overlapping with the model (default 1; with --tune, the usable cores).", min=1)] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 | fp16. auto: bf16/fp16 on CUDA; on a CPU bf16 where it is native (AVX512_BF16/AMX), else fp32 (docs/transcribe.md).")] = "auto",
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary (vocab.json or fairseq dict.ltr.txt) for a model that has none with it, or instead of its own.", exists=True, dir_okay=False)] = None,
    quantize: Annotated[str, typer.Option("--quantize", help="auto | none | int8: int8 runs the Transformer's linear layers in int8 (CPU).")] = "auto",
    tune: Annotated[bool, typer.Option("--tune", help="Search α and β on --manifest (with text) and print the WER table.")] = False,
    tune_alpha: Annotated[str, typer.Option("--tune-alpha", help="α values of the grid (or the range of random trials).")] = "0,0.25,0.5,0.75,1,1.5,2",
    tune_beta: Annotated[str, typer.Option("--tune-beta", help="β values of the grid (or the range of random trials).")] = "-1,0,1,2,3",
    tune_trials: Annotated[int, typer.Option("--tune-trials", help="Random (α, β) trials instead of the grid (0 = grid).")] = 0,
    tune_full: Annotated[bool, typer.Option("--tune-full", help="Try every pair of the grid, instead of every other value first and then the neighbours of the best.")] = False,
    tune_minutes: Annotated[float, typer.Option("--tune-minutes", help="Tune on at most this many minutes of --manifest, whole utterances spread over speakers (0 = all).", min=0)] = 5.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random trials.")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of the model (default: the usable cores less one per --jobs decoder process, or OMP_NUM_THREADS; 0 = torch's default).", min=0)] = None,
) -> None:
    """Transcribe audio files (or a manifest) with a CTC model.

    Greedy decoding by default; --lm switches to beam search through pyctcdecode. Files are
    printed in the order given (txt: the text; with several files "PATH<TAB>TEXT"). A missing
    or unreadable file is named in a warning, the others are transcribed, and the exit code is
    1 at the end. Long files are transcribed in overlapping windows with bounded memory.
    """
    from w2vcli import cpu
    from w2vcli.decode.output import Output

    if stride_seconds is not None:
        warn("--stride-seconds is renamed --context-seconds (context on each side of a window); the old name will go")
        context_seconds = stride_seconds
    files = list(audio or [])
    output = Output(fmt, out if files else None, out_dir, confidence=confidence)
    if bool(files) == bool(manifest):
        raise W2VError("give either AUDIO files or --manifest (one of them)")
    if manifest is not None and out is None and not tune:
        raise W2VError("--manifest needs --out HYP.jsonl (or --tune)")
    if tune and (manifest is None or lm is None):
        raise W2VError("--tune needs --manifest DEV.jsonl (with text) and --lm")
    if files.count("-") > 1:
        raise W2VError("- (standard input) can be given once")
    if fmt in ("srt", "vtt") and len(files) > 1 and out_dir is None:
        raise W2VError(f"--format {fmt} for several files needs --out-dir")

    import w2vcli  # torch loads here, after the options are checked
    from w2vcli.decode.ctc import DecodingOptions
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files_to, transcribe_manifest_to
    from w2vcli.utils import ProgressBar

    if jobs is None:  # tuning runs the model first, then only the beam search: every core decodes
        jobs = cpu.usable_cores() if tune else 1
    cpu.set_threads(cpu.inference_threads(cpu.AUTO if threads is None else threads, 1 if tune else jobs))
    model = w2vcli.load_ctc_model(model_path, device="cpu", vocab=vocab)
    beam_size = beam if beam is not None else (max(50, nbest) if lm is not None or hotwords or nbest > 1 else 0)
    # hotwords are spelled like the model's output: normalised by its text rules
    words = tuple(w for w in (model.text_rules.normalize(h) for h in (hotwords or "").split(",")) if w)
    options = TranscribeOptions(
        emission=EmissionOptions(batch_size, chunk_seconds, context_seconds, device, precision, quantize=quantize),
        decoding=DecodingOptions(
            beam_size=beam_size, lm=str(lm) if lm else None, alpha=alpha, beta=beta,
            unigrams=str(unigrams) if unigrams else None, hotwords=words, hotword_weight=hotword_weight,
            nbest=nbest, strict=strict, unit_times=timestamps == "char",
        ),
        jobs=jobs,
        timestamps=timestamps,
    )  # fmt: skip

    if manifest is not None:
        from w2vcli.data.manifest import read_manifest

        rows = read_manifest(manifest)
        if tune:
            _tune(model, rows, options, (tune_alpha, tune_beta, tune_trials, tune_full, tune_minutes), seed, out)
            return
        stats = transcribe_manifest_to(model, rows, options, out, progress=ProgressBar)
        log(f"wrote {stats.files} hypotheses to {out}")
    else:
        stats = transcribe_files_to(model, [_stdin() if f == "-" else f for f in files], options, output,
                                    progress=ProgressBar)
        if out is not None:
            log(f"wrote {stats.files} transcript(s) to {out}")
    log(stats.summary())
    if stats.failed:
        raise W2VError(f"{len(stats.failed)} of {stats.files + len(stats.failed)} file(s) could not be transcribed: "
                       + ", ".join(stats.failed[:5]) + (" ..." if len(stats.failed) > 5 else ""))  # fmt: skip


def _stdin():
    """`-`: one encoded audio file (wav, flac, ... what soundfile reads) from standard input."""
    import sys

    from w2vcli.audio import load_audio_bytes
    from w2vcli.decode.transcribe import AudioData

    if sys.stdin.isatty():
        raise W2VError("-: standard input is a terminal; pipe audio in, e.g. `ffmpeg -i IN -f wav - | w2v transcribe MODEL -`")
    return AudioData("-", load_audio_bytes(sys.stdin.buffer.read(), "-"))


def _tune(model, rows, options, search: tuple, seed: int, out: Path | None) -> None:
    """--tune: on at most --tune-minutes of the manifest, the coarse grid refined around its best
    (or the whole grid, or random trials), beams in --jobs processes; prints the WER table."""
    from rich.console import Console
    from rich.table import Table

    from w2vcli.data.manifest import duration, subset_manifest
    from w2vcli.decode.transcribe import coarse_pairs, tune_lm, tune_pairs
    from w2vcli.utils import ProgressBar, write_jsonl

    tune_alpha, tune_beta, trials, full, minutes = search
    alphas = sorted(set(_floats(tune_alpha, "--tune-alpha")))
    betas = sorted(set(_floats(tune_beta, "--tune-beta")))
    if minutes and all("num_samples" in r and "sample_rate" in r for r in rows):
        total = sum(map(duration, rows)) / 60
        if total > minutes:
            rows = subset_manifest(rows, minutes, seed=seed)
            log(f"tuning on {len(rows)} utterances, {sum(map(duration, rows)) / 60:.1f} of the manifest's "
                f"{total:.1f} min (--tune-minutes 0 for all)")
    refine = not trials and not full
    pairs = coarse_pairs(alphas, betas) if refine else tune_pairs(alphas, betas, trials, seed)
    results, stats = tune_lm(model, rows, options, pairs, grid=(alphas, betas) if refine else None, progress=ProgressBar)
    table = Table(title=f"WER by α, β (beam {options.decoding.beam_size}, {Path(options.decoding.lm).name})")
    for name in ("α", "β", "WER %", "CER %"):
        table.add_column(name, justify="right")
    for r in results:
        if r.alpha is None:
            table.add_row("greedy", "", f"{100 * r.wer:.2f}", f"{100 * r.cer:.2f}", style="dim")
        else:
            table.add_row(f"{r.alpha:g}", f"{r.beta:g}", f"{100 * r.wer:.2f}", f"{100 * r.cer:.2f}")
    Console().print(table)
    best = next(r for r in results if r.alpha is not None)
    if out is not None:
        write_jsonl(out, [{"alpha": r.alpha, "beta": r.beta, "wer": r.wer, "cer": r.cer} for r in results])
        log(f"wrote {out}")
    tried = len(results) - 1
    searched = (f" of the {len(alphas) * len(betas)}-pair grid (every other value, then the best's neighbours; "
                "--tune-full for all)" if refine else "")
    log(f"{tried} (α, β) pairs{searched} on {stats.files} utterances in {stats.wall_seconds:.1f} s "
        f"(emissions once: {stats.model_seconds:.1f} s; beam search in {stats.decode_jobs} process(es))")  # fmt: skip
    typer.echo(f"best: --alpha {best.alpha:g} --beta {best.beta:g}  (WER {100 * best.wer:.2f}%)")
    note = grid_edge_note(best.alpha, best.beta, alphas, betas)
    if note:
        log(note)


def grid_edge_note(alpha: float, beta: float, alphas: list[float], betas: list[float]) -> str | None:
    """A line when the best (α, β) lies on an outer edge of its grid, where the optimum may lie
    beyond it, which the table alone does not say. A smallest value of 0 or less is no edge: an LM
    weight or word bonus below it is rarely wanted."""
    edges = []
    for name, value, grid in (("α", alpha, alphas), ("β", beta, betas)):
        if len(grid) > 1 and value == grid[-1]:
            edges.append(f"{name} {value:g} is the largest of --tune-{'alpha' if name == 'α' else 'beta'}")
        elif len(grid) > 1 and value == grid[0] and value > 0:
            edges.append(f"{name} {value:g} is the smallest of --tune-{'alpha' if name == 'α' else 'beta'}")
    if not edges:
        return None
    return f"note: the best {' and '.join(edges)}: a grid reaching beyond it may find a lower WER"
