"""`w2v export`: write a w2v checkpoint, Hugging Face directory or fairseq .pt as a Hugging Face
directory, a w2v checkpoint or an ONNX file (fairseq files are read, never written)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from w2vcli.errors import W2VError
from w2vcli.utils import count_text, log


STORAGE_DTYPES = ("float32", "float16", "bfloat16")


def export(
    checkpoint: Annotated[Path, typer.Argument(help="A w2v checkpoint, a Hugging Face model directory or a fairseq .pt.", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: a directory for --to hf, a .pt file for --to w2v, a .onnx file for --to onnx.")],
    to: Annotated[str, typer.Option("--to", help="Target format: hf (a directory transformers loads), w2v (a w2v checkpoint) or onnx (a CTC model for onnxruntime).")] = "hf",
    quantize: Annotated[str, typer.Option("--quantize", help="With --to onnx: none, or int8 (dynamic int8 Transformer MatMuls).")] = "none",
    vocab: Annotated[Optional[Path], typer.Option("--vocab", help="Vocabulary (vocab.json or fairseq dict.ltr.txt) for a CTC model, overriding the one found with it.", exists=True, dir_okay=False)] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="With --to w2v or hf: the weights' storage type, float32, float16 (half the file) or bfloat16. Models load back in float32.")] = "float32",
) -> None:
    """Write CHECKPOINT in another format.

    `--to hf` writes config.json, model.safetensors, preprocessor_config.json and, for a CTC
    model, vocab.json and tokenizer files: `Wav2Vec2ForCTC.from_pretrained(OUT)` loads it.
    `--to w2v` turns a Hugging Face directory or fairseq checkpoint into a w2v checkpoint
    (e.g. for `w2v finetune --init`).
    `--dtype float16` stores the weights in half precision, for a file half the size (e.g. a
    checkpoint to publish); every reader loads them back into a float32 model.
    `--to onnx` writes a CTC model as one .onnx file (dynamic batch and length; inputs waveform
    and lengths, outputs logits and frame_lengths; vocabulary and text rules in its metadata)
    that `w2v transcribe OUT.onnx` runs with onnxruntime (docs/export.md).
    """
    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    import torch

    # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
    from w2vcli.model import export_hf, load_model, save_checkpoint

    if to not in ("hf", "w2v", "onnx"):
        raise W2VError(f"--to must be 'hf', 'w2v' or 'onnx', got {to!r}")
    if quantize != "none" and to != "onnx":
        raise W2VError("--quantize applies to --to onnx (for PyTorch models, use `w2v transcribe --quantize int8`)")
    if dtype not in STORAGE_DTYPES:
        raise W2VError(f"--dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    if dtype != "float32" and to == "onnx":
        raise W2VError("--dtype applies to --to w2v and hf (for a smaller ONNX model, use --quantize int8)")
    model = load_model(checkpoint, vocab=vocab)
    if not isinstance(model, torch.nn.Module):
        raise W2VError(f"{checkpoint}: an ONNX model cannot be converted further; export from the checkpoint it came from")
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))  # floating-point weights and buffers only
        log(f"storing the weights as {dtype}: they load back into a float32 model, rounded to {dtype}'s precision")
    if to == "onnx":
        # lazy: the command's work only: --help and option errors answer before torch (1.3 s) / audio libraries load
        from w2vcli.model.onnx import export_onnx

        if out.is_dir():
            raise W2VError(f"--out {out} is a directory; give a .onnx file name")
        export_onnx(model, out, quantize=quantize)
    elif to == "hf":
        if out.exists() and not out.is_dir():
            raise W2VError(f"--out {out} exists and is not a directory")
        export_hf(model, out)
    else:
        if out.is_dir():
            raise W2VError(f"--out {out} is a directory; give a .pt file name")
        save_checkpoint(out, model)
    log(f"wrote {type(model).__name__} ({count_text(sum(p.numel() for p in model.parameters()))} parameters) to {out}")
