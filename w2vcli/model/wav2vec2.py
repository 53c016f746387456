"""wav2vec 2.0: the encoder, the pretraining model and the CTC model (paper arXiv 2006.11477).

    waveform [B,S] --feature encoder--> z [B,T,C] --LayerNorm+Linear--> [B,T,D] --mask--> Transformer --> c [B,T,D]
                                           `--LayerNorm--> quantizer --> q [B,T,d]        (pretraining targets)

All models take `(wav[B,S], lengths[B])`, lengths in samples (int64), and return padded outputs
with frame lengths beside them. Shape legend: B batch, S samples, T frames, C conv channels,
D model dim, P contrastive dim, G codebooks, V codewords (or vocabulary), K distractors.

Input normalisation: when `config.normalize_waveform` is set (HF `do_normalize`, LARGE models),
the models normalise each utterance to zero mean and unit variance over its valid samples
themselves; doing it again beforehand is harmless (the operation is idempotent up to 1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from w2vcli.model.config import ModelConfig
from w2vcli.model.feature_encoder import FeatureEncoder
from w2vcli.model.losses import contrastive_logits, contrastive_loss, diversity_loss, feature_penalty
from w2vcli.model.masking import padding_mask, sample_negatives, span_mask
from w2vcli.model.quantizer import GumbelQuantizer
from w2vcli.model.transformer import FeatureProjection, TransformerEncoder
from w2vcli.text import TextRules, Vocabulary


class GradMultiply(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` backward (fairseq feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def normalize_waveform(wav: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance over each utterance's valid samples; padding stays 0.  [B,S] -> [B,S]"""
    valid = padding_mask(lengths, wav.shape[1]).to(wav.dtype)  # [B,S]
    n = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (wav * valid).sum(dim=1, keepdim=True) / n
    var = ((wav - mean).pow(2) * valid).sum(dim=1, keepdim=True) / n
    return (wav - mean) / torch.sqrt(var + eps) * valid


class Wav2Vec2Model(nn.Module):
    """The encoder: feature encoder + feature projection + Transformer context network.

    `forward(wav, lengths, mask_indices=None) -> (c[B,T,D], frame_lengths[B])`.

    `valid_group_norm` (extract_features, and the forwards that call it): group-norm feature
    encoders (BASE) normalise each channel over the time axis. False (the default, as fairseq
    and Hugging Face do): over the whole padded time axis, so padding changes a row's output.
    True: over each row's valid frames only, so a padded batch gives every row what it gets
    alone (`w2v transcribe` and the ONNX export ask for it to batch utterances exactly).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.feature_encoder = FeatureEncoder(
            config.conv_dim, config.conv_kernel, config.conv_stride, config.conv_bias, config.feature_norm
        )
        self.feature_projection = FeatureProjection(
            config.conv_dim[-1], config.hidden_size, config.feature_dropout, config.layer_norm_eps
        )
        self.mask_embedding = nn.Parameter(torch.empty(config.hidden_size).uniform_())  # fairseq mask_emb
        self.encoder = TransformerEncoder(
            dim=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            layer_norm_first=config.layer_norm_first,
            pos_conv_kernel=config.pos_conv_kernel,
            pos_conv_groups=config.pos_conv_groups,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            layer_drop=config.layer_drop,
            eps=config.layer_norm_eps,
        )

    def checkpoint_activations(self, enabled: bool = True) -> None:
        """Recompute each Transformer block in backward instead of storing its activations (training)."""
        self.encoder.checkpoint_layers = enabled

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames the feature encoder makes from `lengths` samples (HF `_get_feat_extract_output_lengths`)."""
        return self.feature_encoder.output_lengths(lengths)

    def extract_features(
        self, wav: torch.Tensor, lengths: torch.Tensor, valid_group_norm: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local features z: (features [B,T,C], frame_lengths [B]).

        Gradients into the conv stack are scaled by `config.feature_grad_mult`; with 0, or with
        the stack's parameters frozen, it runs without autograd. `valid_group_norm`: see the class.
        """
        if self.config.normalize_waveform:
            wav = normalize_waveform(wav, lengths)
        mult = self.config.feature_grad_mult
        trainable = any(p.requires_grad for p in self.feature_encoder.parameters())
        norm_lengths = lengths if valid_group_norm else None
        if mult > 0 and trainable and torch.is_grad_enabled():
            features = self.feature_encoder(wav, norm_lengths)
            if mult != 1.0:
                features = GradMultiply.apply(features, mult)
        else:
            with torch.no_grad():
                features = self.feature_encoder(wav, norm_lengths)
        return features.transpose(1, 2), self.frame_lengths(lengths)  # [B,T,C]

    def contextualize(
        self,
        features: torch.Tensor,
        frame_lengths: torch.Tensor,
        mask_indices: torch.Tensor | None = None,
        channel_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [B,T,C] -> (context c [B,T,D], layer-normed features [B,T,C]).

        mask_indices [B,T] bool: frames replaced by the learned mask embedding.
        channel_mask [B,D] bool: projected channels set to 0 (fine-tuning's channel masking).
        """
        x, normed = self.feature_projection(features)
        if mask_indices is not None:
            x = torch.where(mask_indices[:, :, None], self.mask_embedding.to(x.dtype), x)
        if channel_mask is not None:
            x = x.masked_fill(channel_mask[:, None, :], 0.0)
        return self.encoder(x, frame_lengths), normed

    def forward(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor,
        mask_indices: torch.Tensor | None = None,
        valid_group_norm: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, frame_lengths = self.extract_features(wav, lengths, valid_group_norm)
        context, _ = self.contextualize(features, frame_lengths, mask_indices)
        return context, frame_lengths


@dataclass
class PretrainOutput:
    """What one pretraining forward returns, on the model's device (tensors without a shape comment are scalars).

    `loss` = contrastive_loss + num_masked * (diversity_weight * diversity_loss
             + feature_penalty_weight * feature_penalty): a sum over masked frames, like fairseq
    and HF; divide by `num_masked` (summed over accumulation steps / workers) for the per-frame value.
    """

    loss: torch.Tensor
    contrastive_loss: torch.Tensor  # sum over masked frames of -log softmax(true target)
    diversity_loss: torch.Tensor  # (G*V - prob_perplexity) / (G*V), per frame (HF's diversity_loss / num_masked)
    feature_penalty: torch.Tensor  # mean squared conv feature, per frame
    accuracy: torch.Tensor  # fraction of masked frames whose true target scores highest
    num_correct: torch.Tensor  # int64, masked frames whose true target scores highest
    code_perplexity: torch.Tensor  # hard choices, summed over G (1*G .. V*G)
    prob_perplexity: torch.Tensor  # soft probabilities, summed over G
    codebook_usage: torch.Tensor  # [G] fraction of codewords chosen at least once
    num_masked: torch.Tensor  # int64, masked frames in the batch
    temperature: float  # the Gumbel temperature used
    logits: torch.Tensor  # [B,T,1+K] contrastive logits (column 0 = true target)
    mask_indices: torch.Tensor  # [B,T] bool, the masked frames


class Wav2Vec2ForPreTraining(nn.Module):
    """Encoder + quantizer + projections, trained with the contrastive task.

    `forward(wav, lengths, mask_indices=None, negative_indices=None, temperature=None) -> PretrainOutput`.
    Masks and distractors are sampled from the config when not given (in eval mode too, so a
    validation loss can be computed); `temperature` defaults to `config.gumbel_start` — the trainer
    passes `config.gumbel_temperature(update)`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout_features = nn.Dropout(config.quantizer_dropout)
        self.quantizer = GumbelQuantizer(
            config.conv_dim[-1], config.num_codebooks, config.codebook_size, config.codevector_dim
        )
        self.project_q = nn.Linear(config.codevector_dim, config.proj_dim)  # fairseq project_q
        self.project_hid = nn.Linear(config.hidden_size, config.proj_dim)  # fairseq final_proj

    def forward(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor,
        mask_indices: torch.Tensor | None = None,
        negative_indices: torch.Tensor | None = None,
        temperature: float | None = None,
    ) -> PretrainOutput:
        """wav [B,S], lengths [B]; mask_indices [B,T] bool; negative_indices [B,T,K] into B*T."""
        cfg = self.config
        temperature = cfg.gumbel_start if temperature is None else float(temperature)
        features, frame_lengths = self.wav2vec2.extract_features(wav, lengths)  # [B,T,C]
        B, T, _ = features.shape
        penalty = feature_penalty(features, frame_lengths)
        if mask_indices is None:
            mask_indices = span_mask(
                frame_lengths, T, cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks
            )
        mask_indices = mask_indices.to(torch.bool)
        if negative_indices is None:
            negative_indices = sample_negatives(mask_indices, cfg.num_negatives, cfg.cross_sample_negatives)
        context, normed = self.wav2vec2.contextualize(features, frame_lengths, mask_indices)
        quantized = self.quantizer(self.dropout_features(normed), temperature, mask_indices)
        targets = self.project_q(quantized.codevectors)  # [B,T,P]
        context = self.project_hid(context)  # [B,T,P]
        logits = contrastive_logits(context, targets, negative_indices.long(), cfg.logit_temperature)
        closs, correct = contrastive_loss(logits, mask_indices)
        num_masked = mask_indices.sum()
        dloss = diversity_loss(quantized.prob_perplexity, cfg.num_codebooks * cfg.codebook_size)
        loss = closs + num_masked * (cfg.diversity_weight * dloss + cfg.feature_penalty_weight * penalty)
        return PretrainOutput(
            loss=loss,
            contrastive_loss=closs,
            diversity_loss=dloss,
            feature_penalty=penalty,
            accuracy=correct.float() / num_masked.clamp(min=1).float(),
            num_correct=correct,
            code_perplexity=quantized.code_perplexity,
            prob_perplexity=quantized.prob_perplexity,
            codebook_usage=quantized.usage,
            num_masked=num_masked,
            temperature=temperature,
            logits=logits,
            mask_indices=mask_indices,
        )


class Wav2Vec2ForCTC(nn.Module):
    """Encoder + dropout + linear head over the vocabulary (index 0 = CTC blank).

    `forward(wav, lengths, valid_group_norm=False) -> (logits [B,T,V], frame_lengths [B])`. In
    training mode frames are masked in time (config.mask_time_*) and channels
    (config.mask_channel_*), SpecAugment-like. `valid_group_norm`: see `Wav2Vec2Model`.
    """

    def __init__(self, config: ModelConfig, vocab: Vocabulary, text_rules: TextRules | None = None):
        super().__init__()
        self.config, self.vocab = config, vocab
        # how the training transcripts were normalised (w2vcli/text.py); guessed from the vocabulary if unknown
        self.text_rules = text_rules or TextRules.for_vocabulary(vocab.tokens)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.head = nn.Linear(config.hidden_size, len(vocab))  # fairseq w2v_encoder.proj; HF lm_head

    @classmethod
    def from_pretraining(cls, pt_model: Wav2Vec2ForPreTraining | Wav2Vec2Model, vocab: Vocabulary,
                         config: ModelConfig | None = None, text_rules: TextRules | None = None) -> "Wav2Vec2ForCTC":  # fmt: skip
        """A CTC model whose encoder is a copy of `pt_model`'s (or of `pt_model`, an encoder) and whose
        head is freshly initialised.

        `config` (default: the pretraining config) may change fine-tuning fields such as masking,
        dropout or feature_grad_mult; architecture fields must match.
        """
        encoder = getattr(pt_model, "wav2vec2", pt_model)  # a Wav2Vec2Model as it is
        model = cls(config or encoder.config.replace(), vocab, text_rules)
        model.wav2vec2.load_state_dict(encoder.state_dict())
        return model.to(next(pt_model.parameters()).device)

    def freeze_feature_encoder(self) -> None:
        """Stop training the conv stack (fine-tuning keeps it frozen throughout)."""
        for p in self.wav2vec2.feature_encoder.parameters():
            p.requires_grad_(False)

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor, valid_group_norm: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        features, frame_lengths = self.wav2vec2.extract_features(wav, lengths, valid_group_norm)
        B, T, _ = features.shape
        time_mask = channel_mask = None
        if self.training and cfg.mask_time_prob > 0:
            time_mask = span_mask(frame_lengths, T, cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks)
        if self.training and cfg.mask_channel_prob > 0:
            D = cfg.hidden_size
            full = torch.full((B,), D, dtype=torch.long, device=features.device)
            channel_mask = span_mask(full, D, cfg.mask_channel_prob, cfg.mask_channel_length, cfg.mask_channel_min_masks)
        context, _ = self.wav2vec2.contextualize(features, frame_lengths, time_mask, channel_mask)
        return self.head(self.dropout(context)), frame_lengths


def ctc_loss(
    logits: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    reduction: str = "sum",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """CTC loss (blank = 0) of logits [B,T,V] against targets [B,L] (padded) or [sum L] (concatenated).

    Computed in float32; `reduction` "sum" (fairseq's default; divide by the number of
    utterances or target tokens yourself), "mean" (PyTorch's: per target token, then batch) or "none".
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [T,B,V]
    return F.ctc_loss(
        log_probs, targets, frame_lengths, target_lengths, blank=0, reduction=reduction, zero_infinity=zero_infinity
    )
