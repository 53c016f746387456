"""The same random weights in w2v and in transformers, and real-length audio batches.

A w2v model is built from a preset (layer drop off, so both sides run every layer every step),
exported with `export_hf` (the Hugging Face layout users load) and read back with
`transformers`' `from_pretrained`, so both hold identical parameters.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import REAL_MINI
from w2vcli.model.build import build_model, librispeech_vocab
from w2vcli.model.config import get_preset
from w2vcli.model.hf_dir import export_hf


def model_pair(kind: str, preset: str, seed: int = 0):
    """(w2v model, transformers model), both in eval mode, same weights. kind: "pretrain" | "ctc"."""
    import transformers

    torch.manual_seed(seed)
    config = get_preset(preset).replace(layer_drop=0.0)
    vocab = librispeech_vocab() if kind == "ctc" else None
    ours = build_model(kind, config, vocab)
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        export_hf(ours, tmp)
        cls = transformers.Wav2Vec2ForCTC if kind == "ctc" else transformers.Wav2Vec2ForPreTraining
        ref = cls.from_pretrained(tmp)
    return ours.eval(), ref.eval()


@functools.lru_cache(maxsize=2)
def real_audio(root: Path = REAL_MINI) -> np.ndarray:
    """All utterances under `root` (default real-mini) concatenated (16 kHz float32): a source of
    speech-like samples."""
    from w2vcli.audio import load_audio

    files = sorted(Path(root).rglob("*.flac"))
    if not files:
        raise SystemExit(f"no audio under {root}")
    return np.concatenate([load_audio(str(f)) for f in files])


def audio_batch(seconds: list[float], seed: int = 0, root: Path = REAL_MINI) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch wav [B,S] of utterances of the given durations, cut from real speech."""
    src = real_audio(Path(root))
    rng = np.random.default_rng(seed)
    lengths = [int(s * 16000) for s in seconds]
    wav = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        reps = -(-n // len(src)) + 1
        tiled = np.tile(src, reps)
        start = int(rng.integers(0, len(src)))
        wav[b, :n] = torch.from_numpy(tiled[start:start + n])
    return wav, torch.tensor(lengths, dtype=torch.long)


def hf_attention_mask(lengths: torch.Tensor, S: int) -> torch.Tensor | None:
    """transformers' attention_mask [B,S] (None when nothing is padded: its fastest path)."""
    if bool((lengths == S).all()):
        return None
    return (torch.arange(S)[None, :] < lengths[:, None]).long()
