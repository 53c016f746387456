"""Name and config mappings between w2v and the Hugging Face / fairseq layouts.

Each table row pairs a parameter-name prefix in the foreign layout with w2v's name; `{i}` is a
layer number. Names are relative to the encoder (`Wav2Vec2Model`); the pretraining head
(quantizer, projections) and the CTC head are mapped separately by the callers.
"""

from __future__ import annotations

import ast
import re

import torch

from w2vcli.errors import W2VError
from w2vcli.model.config import ModelConfig

# --- parameter names -----------------------------------------------------------------------------

HF_ENCODER_NAMES = [
    ("feature_extractor.conv_layers.{i}.conv.", "feature_encoder.blocks.{i}.conv."),
    ("feature_extractor.conv_layers.{i}.layer_norm.", "feature_encoder.blocks.{i}.norm."),
    ("feature_projection.layer_norm.", "feature_projection.layer_norm."),
    ("feature_projection.projection.", "feature_projection.projection."),
    ("masked_spec_embed", "mask_embedding"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.weight_g"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.weight_v"),
    ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv.weight_g"),  # older transformers
    ("encoder.pos_conv_embed.conv.weight_v", "encoder.pos_conv.weight_v"),
    ("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.bias"),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.layers.{i}.attention.", "encoder.layers.{i}.attention."),
    ("encoder.layers.{i}.layer_norm.", "encoder.layers.{i}.attn_norm."),
    ("encoder.layers.{i}.feed_forward.intermediate_dense.", "encoder.layers.{i}.ffn.fc1."),
    ("encoder.layers.{i}.feed_forward.output_dense.", "encoder.layers.{i}.ffn.fc2."),
    ("encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.ffn_norm."),
]
HF_HEAD_NAMES = [
    ("quantizer.codevectors", "quantizer.codevectors"),  # [1,G*V,d/G] there, [G,V,d/G] here
    ("quantizer.weight_proj.", "quantizer.weight_proj."),
    ("project_q.", "project_q."),
    ("project_hid.", "project_hid."),
    ("lm_head.", "head."),
]

FAIRSEQ_ENCODER_NAMES = [
    ("feature_extractor.conv_layers.{i}.0.", "feature_encoder.blocks.{i}.conv."),
    ("feature_extractor.conv_layers.{i}.2.1.", "feature_encoder.blocks.{i}.norm."),  # layer_norm mode
    ("feature_extractor.conv_layers.{i}.2.", "feature_encoder.blocks.{i}.norm."),  # group norm (block 0)
    ("layer_norm.", "feature_projection.layer_norm."),
    ("post_extract_proj.", "feature_projection.projection."),
    ("mask_emb", "mask_embedding"),
    ("encoder.pos_conv.0.weight_g", "encoder.pos_conv.weight_g"),
    ("encoder.pos_conv.0.weight_v", "encoder.pos_conv.weight_v"),
    ("encoder.pos_conv.0.parametrizations.weight.original0", "encoder.pos_conv.weight_g"),
    ("encoder.pos_conv.0.parametrizations.weight.original1", "encoder.pos_conv.weight_v"),
    ("encoder.pos_conv.0.bias", "encoder.pos_conv.bias"),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.layers.{i}.self_attn.", "encoder.layers.{i}.attention."),
    ("encoder.layers.{i}.self_attn_layer_norm.", "encoder.layers.{i}.attn_norm."),
    ("encoder.layers.{i}.fc1.", "encoder.layers.{i}.ffn.fc1."),
    ("encoder.layers.{i}.fc2.", "encoder.layers.{i}.ffn.fc2."),
    ("encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.ffn_norm."),
]
FAIRSEQ_HEAD_NAMES = [
    ("quantizer.vars", "quantizer.codevectors"),
    ("quantizer.weight_proj.", "quantizer.weight_proj."),
    ("project_q.", "project_q."),
    ("final_proj.", "project_hid."),
]
# pretraining-only fairseq parameters a fine-tuned (CTC) checkpoint may still carry
FAIRSEQ_UNUSED = ("quantizer.", "project_q.", "final_proj.", "target_glu.", "label_embs_concat", "project_inp.")


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)")
    return re.compile("^" + pattern + ("" if template.endswith(".") else "$"))


def rename(name: str, table: list[tuple[str, str]], reverse: bool = False) -> str | None:
    """Map one parameter name through `table` (foreign -> w2v, or w2v -> foreign with reverse)."""
    for src, dst in table:
        if reverse:
            src, dst = dst, src
        m = _compile(src).match(name)
        if m:
            new = dst.replace("{i}", m.group("i")) if "i" in m.groupdict() else dst
            return new + name[m.end():]
    return None


# --- configs -------------------------------------------------------------------------------------

# HF Wav2Vec2Config attribute -> ModelConfig field
HF_CONFIG_FIELDS = {
    "conv_dim": "conv_dim",
    "conv_kernel": "conv_kernel",
    "conv_stride": "conv_stride",
    "conv_bias": "conv_bias",
    "feat_extract_norm": "feature_norm",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "ffn_dim",
    "do_stable_layer_norm": "layer_norm_first",
    "num_conv_pos_embeddings": "pos_conv_kernel",
    "num_conv_pos_embedding_groups": "pos_conv_groups",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout": "dropout",
    "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout",
    "feat_proj_dropout": "feature_dropout",
    "layerdrop": "layer_drop",
    "num_codevector_groups": "num_codebooks",
    "num_codevectors_per_group": "codebook_size",
    "codevector_dim": "codevector_dim",
    "proj_codevector_dim": "proj_dim",
    "feat_quantizer_dropout": "quantizer_dropout",
    "num_negatives": "num_negatives",
    "contrastive_logits_temperature": "logit_temperature",
    "diversity_loss_weight": "diversity_weight",
    "mask_time_prob": "mask_time_prob",
    "mask_time_length": "mask_time_length",
    "mask_time_min_masks": "mask_time_min_masks",
    "mask_feature_prob": "mask_channel_prob",
    "mask_feature_length": "mask_channel_length",
    "mask_feature_min_masks": "mask_channel_min_masks",
    "final_dropout": "final_dropout",
}


def config_from_hf(hf: dict, where: str) -> ModelConfig:
    """ModelConfig from a Hugging Face `config.json` dict; unsupported variants are refused by name."""
    if hf.get("model_type", "wav2vec2") != "wav2vec2":
        raise W2VError(f"{where}: model_type {hf.get('model_type')!r} is not wav2vec2")
    for key, ok in (("feat_extract_activation", "gelu"), ("hidden_act", "gelu")):
        if hf.get(key, ok) != ok:
            raise W2VError(f"{where}: {key}={hf[key]!r} is not supported (only {ok!r})")
    if hf.get("add_adapter") or hf.get("adapter_attn_dim"):
        raise W2VError(f"{where}: adapter layers (add_adapter / adapter_attn_dim) are not supported")
    values = {dst: hf[src] for src, dst in HF_CONFIG_FIELDS.items() if src in hf and hf[src] is not None}
    values["feature_penalty_weight"] = 0.0  # transformers' pretraining loss has no feature penalty
    if hf.get("apply_spec_augment") is False:
        values["mask_time_prob"] = values["mask_channel_prob"] = 0.0
    return ModelConfig(**values)


def config_to_hf(config: ModelConfig, architecture: str, vocab_size: int | None) -> dict:
    """A `config.json` dict that transformers' Wav2Vec2Config reads."""
    d = config.to_dict()
    hf = {src: d[dst] for src, dst in HF_CONFIG_FIELDS.items()}
    hf.update(
        model_type="wav2vec2",
        architectures=[architecture],
        num_feat_extract_layers=len(config.conv_dim),
        feat_extract_activation="gelu",
        hidden_act="gelu",
        apply_spec_augment=True,
        add_adapter=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        ctc_loss_reduction="sum",
        ctc_zero_infinity=False,
        torch_dtype="float32",
    )
    if vocab_size is not None:
        hf["vocab_size"] = vocab_size
    return hf


FAIRSEQ_DEFAULTS = dict(
    conv_feature_layers="[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
    conv_bias=False, extractor_mode="default", encoder_embed_dim=768, encoder_layers=12,
    encoder_attention_heads=12, encoder_ffn_embed_dim=3072, layer_norm_first=False, conv_pos=128,
    conv_pos_groups=16, dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.0,
    encoder_layerdrop=0.0, dropout_features=0.0, latent_groups=2, latent_vars=320, latent_dim=0,
    final_dim=0, num_negatives=100, cross_sample_negatives=0, logit_temp=0.1,
    latent_temp=(2.0, 0.5, 0.999995), feature_grad_mult=1.0, mask_prob=0.65, mask_length=10,
    mask_channel_prob=0.0, mask_channel_length=10,
)  # fmt: skip


def parse_conv_layers(spec: str | list, where: str) -> list[tuple[int, int, int]]:
    """fairseq's conv_feature_layers, e.g. "[(512, 10, 5)] + [(512, 3, 2)] * 4", parsed without eval."""
    if not isinstance(spec, str):
        return [tuple(int(v) for v in layer) for layer in spec]

    def value(node: ast.AST):
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported element {ast.dump(node)[:40]}")

    try:
        layers = value(ast.parse(spec, mode="eval"))
        return [tuple(int(v) for v in layer) for layer in layers]
    except (SyntaxError, ValueError, TypeError) as exc:
        raise W2VError(f"{where}: cannot parse conv_feature_layers {spec!r} ({exc})") from None


def config_from_fairseq(model_cfg: dict, loss_weights, normalize: bool, where: str,
                        finetune_cfg: dict | None = None) -> ModelConfig:  # fmt: skip
    """ModelConfig from fairseq model options (the pretraining model's; a fine-tuning config on top)."""
    c = {**FAIRSEQ_DEFAULTS, **{k: v for k, v in model_cfg.items() if v is not None}}
    layers = parse_conv_layers(c["conv_feature_layers"], where)
    final_dim = c["final_dim"] or c["encoder_embed_dim"]
    temp = c["latent_temp"]
    if isinstance(temp, str):
        temp = ast.literal_eval(temp)
    mode = c["extractor_mode"]
    if mode not in ("default", "layer_norm"):
        raise W2VError(f"{where}: extractor_mode {mode!r} is not supported")
    values = dict(
        conv_dim=[l[0] for l in layers], conv_kernel=[l[1] for l in layers], conv_stride=[l[2] for l in layers],
        conv_bias=bool(c["conv_bias"]), feature_norm="group" if mode == "default" else "layer",
        feature_grad_mult=float(c["feature_grad_mult"]), hidden_size=c["encoder_embed_dim"],
        num_layers=c["encoder_layers"], num_heads=c["encoder_attention_heads"], ffn_dim=c["encoder_ffn_embed_dim"],
        layer_norm_first=bool(c["layer_norm_first"]), pos_conv_kernel=c["conv_pos"], pos_conv_groups=c["conv_pos_groups"],
        dropout=c["dropout"], attention_dropout=c["attention_dropout"], activation_dropout=c["activation_dropout"],
        feature_dropout=c["dropout_input"], layer_drop=c["encoder_layerdrop"], num_codebooks=c["latent_groups"],
        codebook_size=c["latent_vars"], codevector_dim=c["latent_dim"] or final_dim, proj_dim=final_dim,
        quantizer_dropout=c["dropout_features"], num_negatives=c["num_negatives"],
        cross_sample_negatives=c["cross_sample_negatives"], logit_temperature=c["logit_temp"],
        gumbel_start=float(temp[0]), gumbel_end=float(temp[1]), gumbel_decay=float(temp[2]),
        mask_time_prob=c["mask_prob"], mask_time_length=c["mask_length"], mask_channel_prob=c["mask_channel_prob"],
        mask_channel_length=c["mask_channel_length"], normalize_waveform=bool(normalize),
    )  # fmt: skip
    if loss_weights:
        weights = ast.literal_eval(loss_weights) if isinstance(loss_weights, str) else list(loss_weights)
        values["diversity_weight"] = float(weights[0])
        if len(weights) > 1:
            values["feature_penalty_weight"] = float(weights[1])
    if finetune_cfg:  # fine-tuning options override the pretraining ones (fairseq Wav2VecEncoder does the same)
        for src, dst in (("dropout", "dropout"), ("attention_dropout", "attention_dropout"),
                         ("activation_dropout", "activation_dropout"), ("dropout_input", "feature_dropout"),
                         ("layerdrop", "layer_drop"), ("final_dropout", "final_dropout"),
                         ("feature_grad_mult", "feature_grad_mult"), ("mask_prob", "mask_time_prob"),
                         ("mask_length", "mask_time_length"), ("mask_channel_prob", "mask_channel_prob"),
                         ("mask_channel_length", "mask_channel_length")):  # fmt: skip
            if finetune_cfg.get(src) is not None:
                values[dst] = finetune_cfg[src]
    return ModelConfig(**values)


def codevectors_from_flat(t: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """[1,G*V,d/G] (fairseq vars, HF codevectors) -> [G,V,d/G]."""
    return t.reshape(config.num_codebooks, config.codebook_size, -1)
