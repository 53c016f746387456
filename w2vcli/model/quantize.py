"""Reduced-precision copies of a model for CPU inference: int8 Transformer, bf16 weights.

    fast = quantize_int8(model)   # a copy; `model` is left as it was
    fast = bf16_weights(model)    # a copy to run under torch.autocast("cpu", torch.bfloat16)

Every `nn.Linear` inside the Transformer blocks (attention q/k/v/out projections, the two FFN
layers: over 95% of BASE's inference FLOPs after the conv stack) becomes a dynamically
quantized one: int8 weights with one scale per tensor, activations quantized per batch on the
fly, int32 accumulation (fbgemm / oneDNN kernels, VNNI where the CPU has it). The conv feature
encoder, the positional convolution, the feature projection and the CTC head stay fp32: they
are a small share of the work, and the head decides the transcript.

Which API: torch 2.13 still ships `torch.ao.quantization.quantize_dynamic`, but marks it
deprecated in favour of torchao's `quantize_`; torchao's eager CPU path, however, runs its int8
products through `aten::_int_mm`, which profiling showed to take ~90% of a quantized Linear's
time on an AVX2 CPU, far from fbgemm's packed kernels. So w2v uses torch's, and keeps its
deprecation warnings away from users (they are about torch's roadmap, not about anything the
user can change). If a later torch drops it, `--quantize int8` says so in one line.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from w2vcli.errors import W2VError


def _quantize_dynamic():
    fn = getattr(getattr(getattr(torch, "ao", None), "quantization", None), "quantize_dynamic", None)
    if fn is None:
        raise W2VError(f"--quantize int8: this torch ({torch.__version__}) has no torch.ao.quantization.quantize_dynamic")
    return fn


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of a w2v model (CTC, pretraining or encoder) with its Transformer's Linear layers in int8.

    For inference only (the quantized layers have no gradients); runs on the CPU.
    """
    encoder = getattr(model, "wav2vec2", model)
    if not hasattr(encoder, "encoder"):
        raise W2VError(f"--quantize int8: {type(model).__name__} is not a w2v model")
    if torch.backends.quantized.engine == "none":
        raise W2VError("--quantize int8: this torch build has no quantized CPU engine (fbgemm, onednn or qnnpack)")
    quantize_dynamic = _quantize_dynamic()
    model = copy.deepcopy(model).cpu().eval()
    layers = getattr(model, "wav2vec2", model).encoder.layers
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated", category=UserWarning)
        quantize_dynamic(layers, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def is_quantized(model: nn.Module) -> bool:
    """True if any module of `model` is a dynamically quantized Linear."""
    return any(_is_dynamic_int8(m) for m in model.modules())


def _is_dynamic_int8(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized.dynamic")


def bf16_weights(model: nn.Module) -> nn.Module:
    """A copy of a w2v model whose Linear and Conv1d weights are stored in bf16, for inference under
    CPU bf16 autocast.

    Autocast casts an fp32 weight to bf16 every time an op uses it and forgets the copy when the
    autocast region ends, so every forward pass would first convert all the weights (BASE: 95 M
    values read and written). Stored in bf16, they are used as they are. The first conv block
    stays fp32, as it runs outside autocast (`FeatureEncoder`); the norms' parameters and the
    positional conv's weight-norm factors stay fp32 (autocast casts the small product they make).
    """
    model = copy.deepcopy(model).cpu().eval()
    encoder = getattr(model, "wav2vec2", model)
    if not hasattr(encoder, "feature_encoder"):
        raise W2VError(f"--precision bf16: {type(model).__name__} is not a w2v model")
    first = {id(m) for m in encoder.feature_encoder.blocks[0].modules()}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)) and id(module) not in first:
            module.to(torch.bfloat16)
    return model
