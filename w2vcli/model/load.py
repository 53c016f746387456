"""One loader above the formats: `load_model(path)` reads a w2v checkpoint, a Hugging Face
`save_pretrained` directory, a fairseq `.pt` or an exported `.onnx` file, and hands it to the
module of that format. The format modules never import this one (nor each other); each ends in
w2vcli/model/build.py.

- w2v checkpoint: w2vcli/model/checkpoint.py (the format, written by `w2v pretrain/finetune`);
- a Hugging Face directory of Wav2Vec2ForPreTraining / Wav2Vec2ForCTC / Wav2Vec2Model:
  w2vcli/model/hf_dir.py (which files, which layouts, what is refused);
- a fairseq checkpoint such as `wav2vec_small.pt` (pretraining) or `wav2vec_small_960h.pt`
  (CTC): w2vcli/model/fairseq.py, with the letter dictionary from `dict.ltr.txt` beside it or an
  explicit `vocab`; without either, a 32-output head is read with LibriSpeech's letter order
  (that of every released fairseq letter model), with a warning, and any other head is refused;
- an `.onnx` file written by `w2v export --to onnx`: w2vcli/model/onnx.py (inference only).

No file is unpickled with arbitrary globals (w2vcli/model/safe_load.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from w2vcli.errors import W2VError
from w2vcli.model.build import Model, check_vocab, model_kind
from w2vcli.model.checkpoint import model_from_checkpoint
from w2vcli.model.fairseq import model_from_fairseq
from w2vcli.model.hf_dir import load_hf_dir
from w2vcli.model.onnx import OnnxCTCModel, load_onnx
from w2vcli.model.safe_load import safe_torch_load
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC
from w2vcli.text import Vocabulary


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", vocab: Vocabulary | str | os.PathLike | None = None
) -> Model:
    """Load a model for inference or further training, in eval mode, on `device`.

    `path` is a w2v checkpoint, a Hugging Face `save_pretrained` directory or a fairseq `.pt`.
    Returns `Wav2Vec2ForCTC` (with `.vocab`), `Wav2Vec2ForPreTraining` or `Wav2Vec2Model`; an
    `.onnx` file written by `w2v export --to onnx` gives an `OnnxCTCModel` (for transcription).
    `vocab` (a Vocabulary or a path to vocab.json / dict.ltr.txt) overrides the vocabulary found
    with the checkpoint, or supplies one where none is found.
    """
    path = Path(path)
    if path.suffix == ".onnx" and path.is_file():  # an exported CTC model (w2vcli/model/onnx.py), inference only
        return load_onnx(path, Vocabulary.load(vocab) if isinstance(vocab, (str, os.PathLike)) else vocab).to(device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise W2VError(f"{path} is a directory without config.json: not a Hugging Face model directory")
        model = load_hf_dir(path, vocab)  # reads a vocab.json path with the directory's tokenizer settings
    elif path.is_file():
        if isinstance(vocab, (str, os.PathLike)):
            vocab = Vocabulary.load(vocab)
        ckpt = safe_torch_load(path)
        if not isinstance(ckpt, dict):
            raise W2VError(f"{path}: not a model checkpoint (holds a {type(ckpt).__name__})")
        if ckpt.get("format") == "w2v":
            model = model_from_checkpoint(ckpt, str(path))
            if vocab is not None and isinstance(model, Wav2Vec2ForCTC):
                check_vocab(vocab, model.head.out_features, str(path))
                model.vocab = vocab
        elif "model" in ckpt and ("cfg" in ckpt or "args" in ckpt):
            model = model_from_fairseq(ckpt, path, vocab)
        else:
            raise W2VError(f"{path}: neither a w2v nor a fairseq checkpoint (keys: {sorted(ckpt)[:8]})")
    else:
        raise W2VError(f"model not found: {path}")
    return model.to(device).eval()


def load_ctc_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", vocab: Vocabulary | str | os.PathLike | None = None
):
    """`load_model` for transcription: a `Wav2Vec2ForCTC` or an `OnnxCTCModel` (both with `.vocab`
    and `.text_rules`), or a W2VError naming what `path` holds instead."""
    model = load_model(path, device, vocab)
    if isinstance(model, (Wav2Vec2ForCTC, OnnxCTCModel)):
        return model
    holds = {"pretrain": "a pretraining model", "encoder": "an encoder without a head"}[model_kind(model)]
    raise W2VError(f"{path}: {holds} ({type(model).__name__}), not a CTC model: it has no vocabulary or "
                   f"output layer; fine-tune it first (`w2v finetune --init {path}`)")  # fmt: skip
