"""The wav2vec 2.0 model: config and presets, modules, checkpoints.

    from w2vcli.model import get_preset, Wav2Vec2ForPreTraining, Wav2Vec2ForCTC, load_model, save_checkpoint
"""

import importlib

from w2vcli.model.config import ModelConfig, get_preset, mask_prob_from_start_prob

# the rest loads torch: imported when first used, so a command that only reads its options and
# the presets (and refuses a bad one) starts in a fraction of a second
_LAZY = {
    "build_model": "build", "checkpoint_dict": "checkpoint", "load_ctc_model": "load",
    "load_model": "load", "model_from_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "export_hf": "hf_dir", "PretrainOutput": "wav2vec2", "Wav2Vec2ForCTC": "wav2vec2",
    "Wav2Vec2ForPreTraining": "wav2vec2", "Wav2Vec2Model": "wav2vec2", "ctc_loss": "wav2vec2",
}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"w2vcli.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ModelConfig", "get_preset", "mask_prob_from_start_prob", "Wav2Vec2Model", "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForCTC", "PretrainOutput", "ctc_loss", "build_model", "checkpoint_dict", "save_checkpoint",
    "model_from_checkpoint", "load_model", "load_ctc_model", "export_hf",
]  # fmt: skip
