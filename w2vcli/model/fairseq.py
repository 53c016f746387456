"""fairseq checkpoints: `wav2vec_small.pt` (pretraining) and `wav2vec_small_960h.pt` (CTC) layouts.

`load_model` (w2vcli/model/load.py) unpickles the file with `safe_torch_load` (safe_load.py), which
rebuilds fairseq's configuration objects (argparse.Namespace, omegaconf containers) as inert
stand-ins; `plain` turns them into dicts, and `model_from_fairseq` maps the parameter names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from w2vcli.errors import W2VError
from w2vcli.model.build import LIBRISPEECH_LETTERS, Model, check_vocab, librispeech_vocab, load_state
from w2vcli.model.convert import (
    FAIRSEQ_ENCODER_NAMES, FAIRSEQ_HEAD_NAMES, FAIRSEQ_UNUSED, codevectors_from_flat, config_from_fairseq, rename,
)  # fmt: skip
from w2vcli.model.safe_load import Stub
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from w2vcli.text import Vocabulary
from w2vcli.utils import warn


def plain(obj: Any) -> Any:
    """Turn stand-ins (argparse.Namespace, omegaconf DictConfig/ListConfig/nodes) into dicts, lists, values."""
    if isinstance(obj, Stub):
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf container
                return plain(state["_content"])
            if "_val" in state:  # omegaconf value node
                return plain(state["_val"])
            return {k: plain(v) for k, v in state.items()}  # argparse.Namespace and other plain objects
        if obj.args and len(obj.args) == 1 and isinstance(obj.args[0], (str, int, float)):
            return obj.args[0]  # e.g. an enum member or pathlib path
        return None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def model_from_fairseq(ckpt: dict, path: Path, vocab: Vocabulary | None = None) -> Model:
    """Build a model from a loaded fairseq checkpoint dict (`wav2vec_small.pt`, `wav2vec_small_960h.pt`)."""
    where = str(path)
    cfg = plain(ckpt.get("cfg")) or {}
    args = plain(ckpt.get("args")) or {}
    if cfg:
        model_cfg, task_cfg, crit_cfg = cfg.get("model") or {}, cfg.get("task") or {}, cfg.get("criterion") or {}
    else:  # older checkpoints: one flat argparse.Namespace
        model_cfg = task_cfg = crit_cfg = args
    state = ckpt["model"]
    if not isinstance(state, dict):
        raise W2VError(f"{where}: the 'model' entry is not a state dict")
    is_ctc = any(k.startswith("w2v_encoder.") for k in state)
    if is_ctc:
        w2v_args = plain(model_cfg.get("w2v_args")) or {}
        pt_model = w2v_args.get("model") or w2v_args  # omegaconf-era nests model/task; Namespace-era is flat
        pt_task = w2v_args.get("task") or w2v_args
        if not pt_model:
            raise W2VError(f"{where}: fine-tuned checkpoint without w2v_args (the pretraining config)")
        normalize = task_cfg.get("normalize", pt_task.get("normalize", False))
        config = config_from_fairseq(pt_model, None, normalize, where, finetune_cfg=model_cfg)
    else:
        loss_weights = crit_cfg.get("loss_weights")
        config = config_from_fairseq(model_cfg, loss_weights, task_cfg.get("normalize", False), where)
    mapped = {}
    for key, value in state.items():
        inner = key
        if is_ctc:
            if key.startswith("w2v_encoder.proj."):
                mapped["head." + key[len("w2v_encoder.proj."):]] = value
                continue
            if not key.startswith("w2v_encoder.w2v_model."):
                raise W2VError(f"{where}: unknown parameter {key}")
            inner = key[len("w2v_encoder.w2v_model."):]
            if inner.startswith(FAIRSEQ_UNUSED):
                continue
        name = rename(inner, FAIRSEQ_ENCODER_NAMES)
        if name is not None:
            mapped["wav2vec2." + name] = value
            continue
        name = rename(inner, FAIRSEQ_HEAD_NAMES)
        if name is None:
            if inner.startswith(FAIRSEQ_UNUSED):
                raise W2VError(f"{where}: {inner}: only quantized-target wav2vec 2.0 models are supported")
            raise W2VError(f"{where}: unknown parameter {key}")
        mapped[name] = codevectors_from_flat(value, config) if name == "quantizer.codevectors" else value
    if is_ctc:
        n_out = mapped["head.weight"].shape[0]
        if vocab is None:
            vocab = _fairseq_vocab(path, n_out)
        check_vocab(vocab, n_out, where)
        model = Wav2Vec2ForCTC(config, vocab)
    else:
        model = Wav2Vec2ForPreTraining(config)
    load_state(model, mapped, where)
    return model


def _fairseq_vocab(path: Path, n_out: int) -> Vocabulary:
    """dict.ltr.txt beside a fairseq CTC checkpoint; without it, LibriSpeech's letters for 32 outputs, loudly."""
    dict_path = path.parent / "dict.ltr.txt"
    if dict_path.is_file():
        return Vocabulary.load(dict_path)
    vocab = librispeech_vocab()
    if n_out != len(vocab):
        raise W2VError(f"{path}: no dict.ltr.txt beside it for its CTC head of {n_out} outputs; "
                       "give the vocabulary with --vocab FILE (dict.ltr.txt or vocab.json)")  # fmt: skip
    warn(f"{path}: no dict.ltr.txt beside it; assuming the letter order of fairseq's LibriSpeech dictionary "
         f"({' '.join(LIBRISPEECH_LETTERS[:6])} ...), that of the released letter models; give --vocab FILE for any other")  # fmt: skip
    return vocab
