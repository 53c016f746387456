"""The tests' tiny CTC model with random weights that give varied letters and words (a random
head alone gives one letter everywhere): the transcription, serving and page tests share it."""

from __future__ import annotations

from pathlib import Path

import torch

from w2vcli.model.build import build_model
from w2vcli.model.checkpoint import save_checkpoint
from w2vcli.model.config import tiny
from w2vcli.text import SPECIALS, Vocabulary

VOCAB = Vocabulary(list(SPECIALS) + list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ"))


def tiny_model(seed: int = 0):
    """The tiny preset, seeded, its head widened (std 2) and nudged towards the word separator."""
    torch.manual_seed(seed)
    model = build_model("ctc", tiny(), VOCAB)
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0)
        model.head.bias[VOCAB.index["|"]] += 1.0
    return model.eval()


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """`tiny_model(seed)` saved as a w2v checkpoint at `path`."""
    save_checkpoint(path, tiny_model(seed))
    return path
