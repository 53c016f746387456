"""Model hyperparameters: one dataclass, and presets as plain functions.

Every field names the fairseq option (`cfg.model.*` / `args.*`) and the Hugging Face
`Wav2Vec2Config` attribute it corresponds to, so a checkpoint from either can be mapped here.

Shape legend used in the model package: B batch, S samples, T frames, C conv channels,
D model dim, G codebooks, V codewords per codebook, K distractors.

Masking probabilities follow fairseq/Hugging Face: `mask_time_prob` is the *expected fraction
of frames covered if spans did not overlap*; the number of spans in an utterance of T frames is
`mask_time_prob * T / mask_time_length` (randomly rounded). The paper's start probability
p = 0.065 with span M = 10 is `mask_time_prob = p * M = 0.65`; use `mask_prob_from_start_prob`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

from w2vcli.errors import W2VError


# fields that count something (at least 1 each) and probabilities (in [0, 1])
POSITIVE = ("conv_dim", "conv_kernel", "conv_stride", "hidden_size", "num_layers", "num_heads", "ffn_dim",
            "pos_conv_kernel", "pos_conv_groups", "num_codebooks", "codebook_size", "codevector_dim", "proj_dim",
            "mask_time_length", "mask_channel_length")
PROBABILITIES = ("dropout", "attention_dropout", "activation_dropout", "feature_dropout", "layer_drop",
                 "quantizer_dropout", "mask_channel_prob", "final_dropout")


@dataclass
class ModelConfig:
    # --- feature encoder (conv stack over the raw waveform) -------------------------------------
    conv_dim: tuple[int, ...] = (512,) * 7  # fairseq conv_feature_layers[i][0]; HF conv_dim
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)  # fairseq conv_feature_layers[i][1]; HF conv_kernel
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)  # fairseq conv_feature_layers[i][2]; HF conv_stride
    conv_bias: bool = False  # fairseq conv_bias; HF conv_bias
    feature_norm: str = "group"  # "group" (BASE: group norm in block 0) | "layer" (LARGE: every block);
    #                              fairseq extractor_mode "default" | "layer_norm"; HF feat_extract_norm
    feature_grad_mult: float = 0.1  # gradient scale into the conv stack (0 = frozen); fairseq feature_grad_mult
    # --- context network (Transformer) ----------------------------------------------------------
    hidden_size: int = 768  # D; fairseq encoder_embed_dim; HF hidden_size
    num_layers: int = 12  # fairseq encoder_layers; HF num_hidden_layers
    num_heads: int = 12  # fairseq encoder_attention_heads; HF num_attention_heads
    ffn_dim: int = 3072  # fairseq encoder_ffn_embed_dim; HF intermediate_size
    layer_norm_first: bool = False  # pre-LN (LARGE) vs post-LN (BASE); fairseq layer_norm_first; HF do_stable_layer_norm
    pos_conv_kernel: int = 128  # fairseq conv_pos; HF num_conv_pos_embeddings
    pos_conv_groups: int = 16  # fairseq conv_pos_groups; HF num_conv_pos_embedding_groups
    layer_norm_eps: float = 1e-5  # fairseq uses LayerNorm's default; HF layer_norm_eps
    dropout: float = 0.1  # residual dropout; fairseq dropout; HF hidden_dropout
    attention_dropout: float = 0.1  # fairseq attention_dropout; HF attention_dropout
    activation_dropout: float = 0.0  # inside the FFN; fairseq activation_dropout; HF activation_dropout
    feature_dropout: float = 0.1  # after the feature projection; fairseq dropout_input; HF feat_proj_dropout
    layer_drop: float = 0.05  # probability of skipping a layer in training; fairseq encoder_layerdrop; HF layerdrop
    # --- quantizer and contrastive task (pretraining only) -------------------------------------
    num_codebooks: int = 2  # G; fairseq latent_groups; HF num_codevector_groups
    codebook_size: int = 320  # V; fairseq latent_vars; HF num_codevectors_per_group
    codevector_dim: int = 256  # concatenated codeword size (d/G each); fairseq latent_dim (or final_dim if 0); HF codevector_dim
    proj_dim: int = 256  # contrastive space; fairseq final_dim; HF proj_codevector_dim
    quantizer_dropout: float = 0.1  # on features before quantizing; fairseq dropout_features; HF feat_quantizer_dropout
    num_negatives: int = 100  # K; fairseq num_negatives; HF num_negatives
    cross_sample_negatives: int = 0  # extra distractors from other utterances; fairseq cross_sample_negatives
    logit_temperature: float = 0.1  # kappa; fairseq logit_temp; HF contrastive_logits_temperature
    diversity_weight: float = 0.1  # alpha; fairseq loss_weights[0]; HF diversity_loss_weight
    feature_penalty_weight: float = 10.0  # fairseq loss_weights[1]; (no HF equivalent)
    gumbel_start: float = 2.0  # fairseq latent_temp[0]; HF script --max_gumbel_temperature
    gumbel_end: float = 0.5  # fairseq latent_temp[1]; HF script --min_gumbel_temperature
    gumbel_decay: float = 0.999995  # per update; fairseq latent_temp[2]; HF script --gumbel_temperature_decay
    # --- masking (pretraining and fine-tuning) --------------------------------------------------
    mask_time_prob: float = 0.65  # fairseq mask_prob; HF mask_time_prob (= paper p * M)
    mask_time_length: int = 10  # M; fairseq mask_length; HF mask_time_length
    mask_time_min_masks: int = 2  # fairseq min_masks (2 in apply_mask); HF mask_time_min_masks
    mask_channel_prob: float = 0.0  # fairseq mask_channel_prob; HF mask_feature_prob
    mask_channel_length: int = 10  # fairseq mask_channel_length; HF mask_feature_length
    mask_channel_min_masks: int = 0  # HF mask_feature_min_masks
    # --- CTC fine-tuning -------------------------------------------------------------------------
    final_dropout: float = 0.0  # before the CTC head; fairseq final_dropout; HF final_dropout
    # --- input -----------------------------------------------------------------------------------
    normalize_waveform: bool = False  # zero-mean/unit-variance per utterance; fairseq task.normalize; HF do_normalize

    def __post_init__(self) -> None:
        self.conv_dim = tuple(int(c) for c in self.conv_dim)
        self.conv_kernel = tuple(int(k) for k in self.conv_kernel)
        self.conv_stride = tuple(int(s) for s in self.conv_stride)
        if not (len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride)):
            raise W2VError(
                f"conv_dim, conv_kernel and conv_stride need the same length, got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}"
            )
        for name in POSITIVE:
            value = getattr(self, name)
            if (min(value) if isinstance(value, tuple) else value) < 1:
                raise W2VError(f"{name} must be at least 1, got {value}")
        for name in PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise W2VError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.feature_norm not in ("group", "layer"):
            raise W2VError(f"feature_norm must be 'group' or 'layer', got {self.feature_norm!r}")
        if self.hidden_size % self.num_heads:
            raise W2VError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.hidden_size % self.pos_conv_groups:
            raise W2VError(f"hidden_size {self.hidden_size} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.codevector_dim % self.num_codebooks:
            raise W2VError(
                f"codevector_dim {self.codevector_dim} is not divisible by num_codebooks {self.num_codebooks}"
            )

    @property
    def frame_stride(self) -> int:
        """Samples between consecutive frames (320 = 20 ms at 16 kHz for the paper's stack)."""
        n = 1
        for s in self.conv_stride:
            n *= s
        return n

    @property
    def receptive_field(self) -> int:
        """Samples seen by one frame (400 = 25 ms at 16 kHz for the paper's stack)."""
        field, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            field += (k - 1) * jump
            jump *= s
        return field

    def gumbel_temperature(self, update: int) -> float:
        """Annealed Gumbel temperature after `update` updates: max(start * decay**update, end)."""
        return max(self.gumbel_start * self.gumbel_decay**update, self.gumbel_end)

    def to_dict(self) -> dict:
        """Plain types only (lists, numbers, strings) so it survives `torch.load(weights_only=True)` and JSON."""
        d = asdict(self)
        for k in ("conv_dim", "conv_kernel", "conv_stride"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "model config") -> "ModelConfig":
        """Build from `to_dict` output; unknown keys and values of the wrong type are errors naming them."""
        return cls(**check_fields(d, where))

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})


def check_fields(d: dict, where: str = "model config") -> dict:
    """`d` with each value checked against its ModelConfig field's type (ints may be given as
    integral floats, floats as ints), or a W2VError naming `where`, the field and the value."""
    if not isinstance(d, dict):
        raise W2VError(f"{where}: expected a table of model fields, got {d!r}")
    known = {f.name: f.default for f in fields(ModelConfig)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise W2VError(f"{where}: unknown model config fields: {', '.join(map(str, unknown))}")
    out = {}
    for name, value in d.items():
        out[name] = _typed(value, known[name])
        if out[name] is None:
            kind = "a list of integers" if isinstance(known[name], tuple) else type(known[name]).__name__
            raise W2VError(f"{where}: {name} must be {kind}, got {value!r}")
    return out


def _typed(value, default):
    """`value` as the type of `default`, or None if it is not one."""
    def integer(v):
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        return int(v) if isinstance(v, float) and v.is_integer() else None

    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(default, int):
        return integer(value)
    if isinstance(default, float):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(default, str):
        return value if isinstance(value, str) else None
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        items = [integer(v) for v in value]
        return tuple(items) if items and None not in items else None
    return None


def mask_prob_from_start_prob(p: float, span: int) -> float:
    """The paper's span-start probability p (0.065) as fairseq/HF `mask_prob` (p * M = 0.65)."""
    return p * span


# --- presets ---------------------------------------------------------------------------------


def tiny() -> ModelConfig:
    """For unit tests: about 41 k parameters, the real 7-block stride-320 conv stack at 32 channels."""
    return ModelConfig(
        conv_dim=(32,) * 7, hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64,
        pos_conv_kernel=16, pos_conv_groups=4, num_codebooks=2, codebook_size=8,
        codevector_dim=16, proj_dim=16, num_negatives=10, layer_drop=0.0,
        mask_time_min_masks=1,
    )  # fmt: skip


def small() -> ModelConfig:
    """For two CPU cores (minutes of pretraining, the offline demo): about 2.3 M parameters."""
    return ModelConfig(
        conv_dim=(128,) * 7, hidden_size=192, num_layers=4, num_heads=4, ffn_dim=768,
        pos_conv_kernel=64, pos_conv_groups=16, num_codebooks=2, codebook_size=64,
        codevector_dim=128, proj_dim=128, num_negatives=50, layer_drop=0.0,
        mask_time_min_masks=1,
    )  # fmt: skip


def base() -> ModelConfig:
    """The paper's BASE model (fairseq `wav2vec_small`, wav2vec2_base_librispeech.yaml): 12 x 768,
    post-LN, group-norm conv, dropout 0.1, layer drop 0.05, conv gradient x0.1; ≈95 M params."""
    return ModelConfig()


def large() -> ModelConfig:
    """The paper's LARGE model, "stable" variant as released for LibriVox (fairseq
    wav2vec2_large_librivox.yaml): 24 x 1024, pre-LN, layer-norm conv with bias, no dropout,
    full conv gradient, Gumbel 2 -> 0.1, no feature penalty, normalised input; ≈317 M params."""
    return ModelConfig(
        conv_bias=True, feature_norm="layer", feature_grad_mult=1.0, hidden_size=1024, num_layers=24,
        num_heads=16, ffn_dim=4096, layer_norm_first=True, codevector_dim=768, proj_dim=768,
        dropout=0.0, attention_dropout=0.0, feature_dropout=0.0, quantizer_dropout=0.0, layer_drop=0.0,
        gumbel_end=0.1, feature_penalty_weight=0.0, normalize_waveform=True,
    )  # fmt: skip


PRESETS: dict[str, Callable[[], ModelConfig]] = {"tiny": tiny, "small": small, "base": base, "large": large}


def get_preset(name: str) -> ModelConfig:
    """A fresh ModelConfig for a preset name (tiny, small, base, large)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise W2VError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
