"""A model of a kind (pretraining, CTC, encoder) from a config, a vocabulary and weights: where
every format's reader ends (w2vcli/model/checkpoint.py for w2v's own, hf_dir.py, fairseq.py).

Nothing here reads a file, so each format module imports this one and none imports another.
"""

from __future__ import annotations

import torch

from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model
from w2vcli.text import SPECIALS, TextRules, Vocabulary

# fairseq's dict.ltr.txt for LibriSpeech (letters by falling frequency), after the 4 specials
LIBRISPEECH_LETTERS = list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ")

Model = Wav2Vec2ForPreTraining | Wav2Vec2ForCTC | Wav2Vec2Model


def librispeech_vocab() -> Vocabulary:
    """The 32-token letter vocabulary of the released LibriSpeech CTC models (HF and fairseq)."""
    return Vocabulary(list(SPECIALS) + LIBRISPEECH_LETTERS)


def model_kind(model: Model) -> str:
    if isinstance(model, Wav2Vec2ForCTC):
        return "ctc"
    if isinstance(model, Wav2Vec2ForPreTraining):
        return "pretrain"
    if isinstance(model, Wav2Vec2Model):
        return "encoder"
    raise TypeError(f"not a w2v model: {type(model).__name__}")


def build_model(kind: str, config: ModelConfig, vocab: Vocabulary | None = None,
                text_rules: TextRules | None = None) -> Model:  # fmt: skip
    """A freshly initialised model of `kind` ("pretrain", "ctc" needs `vocab`, "encoder")."""
    if kind == "pretrain":
        return Wav2Vec2ForPreTraining(config)
    if kind == "ctc":
        if vocab is None:
            raise W2VError("a CTC model needs a vocabulary")
        return Wav2Vec2ForCTC(config, vocab, text_rules)
    if kind == "encoder":
        return Wav2Vec2Model(config)
    raise W2VError(f"unknown model kind {kind!r} (pretrain, ctc or encoder)")


def load_state(model: torch.nn.Module, state: dict, where: str, allow_missing: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not any(k.endswith(a) for a in allow_missing)]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise W2VError(
            f"{where}: weights do not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise W2VError(f"{where}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


def check_vocab(vocab: Vocabulary, size: int, where: str) -> None:
    if len(vocab) != size:
        raise W2VError(f"{where}: the vocabulary has {len(vocab)} tokens but the CTC head has {size} outputs")
