"""The wav2vec 2.0 model: config and presets, modules, checkpoints.

    from w2vcli.model import get_preset, Wav2Vec2ForPreTraining, Wav2Vec2ForCTC, load_model, save_checkpoint
"""

from w2vcli.model.checkpoint import (
    build_model, checkpoint_dict, load_ctc_model, load_model, model_from_checkpoint, save_checkpoint,
)  # fmt: skip
from w2vcli.model.config import ModelConfig, get_preset, mask_prob_from_start_prob
from w2vcli.model.hf_dir import export_hf
from w2vcli.model.wav2vec2 import PretrainOutput, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model, ctc_loss

__all__ = [
    "ModelConfig", "get_preset", "mask_prob_from_start_prob", "Wav2Vec2Model", "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForCTC", "PretrainOutput", "ctc_loss", "build_model", "checkpoint_dict", "save_checkpoint",
    "model_from_checkpoint", "load_model", "load_ctc_model", "export_hf",
]  # fmt: skip
