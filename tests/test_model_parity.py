"""Parity with Hugging Face transformers' wav2vec 2.0 (random weights, offline).

The same weights are saved with `save_pretrained` and loaded through `w2vcli.load_model`, so
the name mapping under test is the one users get. Compared at float32 tolerance, for a
BASE-like (group norm, post-LN) and a LARGE-like (layer norm, pre-LN, conv bias) variant:
feature encoder, feature projection, Transformer with padding, quantizer (eval), CTC logits,
and the full pretraining loss (contrastive and diversity parts) with the same mask and distractors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import w2vcli
from w2vcli.text import Vocabulary

transformers = pytest.importorskip("transformers")
from transformers.models.wav2vec2 import modeling_wav2vec2 as hf_w2v  # noqa: E402

VARIANTS = {
    "base_like": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "large_like": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
}
VOCAB = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N"])


def hf_config(variant: str, **extra):
    return transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=12,
        num_negatives=6, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.4, mask_time_length=3, mask_feature_prob=0.0, vocab_size=len(VOCAB),
        diversity_loss_weight=0.1, contrastive_logits_temperature=0.1,
        **VARIANTS[variant], **extra,
    )  # fmt: skip


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Move norms, biases and the mask embedding off their trivial initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "masked_spec_embed" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def batch(seed: int = 0):
    """Three utterances of different lengths, zero-padded, and HF's attention mask for them."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9600, 7000, 4321])
    wav = torch.randn(3, 9600, generator=g) * (torch.arange(9600)[None, :] < lengths[:, None])
    attention_mask = (torch.arange(9600)[None, :] < lengths[:, None]).long()
    return wav, lengths, attention_mask


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, tmp_path_factory):
    """(HF pretraining model, w2v model loaded from its save_pretrained dir, variant name)."""
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForPreTraining(hf_config(request.param))
    randomize(hf, 1)
    hf.eval()
    out = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(out)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(out)  # both models see raw input
    ours = w2vcli.load_model(out)
    assert type(ours).__name__ == "Wav2Vec2ForPreTraining"
    return hf, ours, request.param


def valid(x: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Zero the padded frames of x [B,T,...] so comparisons only look at real frames."""
    keep = torch.arange(x.shape[1])[None, :] < frame_lengths[:, None]
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2)))


def test_feature_encoder_and_projection(pair):
    hf, ours, _ = pair
    wav, lengths, _ = batch()
    with torch.no_grad():
        ref = hf.wav2vec2.feature_extractor(wav)  # [B,C,T]
        got = ours.wav2vec2.feature_encoder(wav)
        torch.testing.assert_close(got, ref)
        ref_proj, ref_norm = hf.wav2vec2.feature_projection(ref.transpose(1, 2))
        got_proj, got_norm = ours.wav2vec2.feature_projection(got.transpose(1, 2))
    torch.testing.assert_close(got_proj, ref_proj)
    torch.testing.assert_close(got_norm, ref_norm)
    frames = hf._get_feat_extract_output_lengths(lengths)
    torch.testing.assert_close(ours.wav2vec2.frame_lengths(lengths), frames)


def test_transformer_with_padding(pair):
    hf, ours, _ = pair
    wav, lengths, attention_mask = batch()
    T = hf._get_feat_extract_output_lengths(torch.tensor(9600)).item()
    mask = torch.zeros(3, T, dtype=torch.bool)
    mask[:, 5:9] = True
    mask[1, 20:24] = True
    with torch.no_grad():
        ref = hf.wav2vec2(wav, attention_mask=attention_mask, mask_time_indices=mask).last_hidden_state
        got, frames = ours.wav2vec2(wav, lengths, mask_indices=mask)
    assert frames.tolist() == hf._get_feat_extract_output_lengths(lengths).tolist()
    torch.testing.assert_close(valid(got, frames), valid(ref, frames), atol=2e-5, rtol=1e-4)
    # the utterance without padding matches everywhere
    torch.testing.assert_close(got[0], ref[0], atol=2e-5, rtol=1e-4)


def test_quantizer_eval(pair):
    hf, ours, _ = pair
    wav, lengths, _ = batch()
    with torch.no_grad():
        _, normed = hf.wav2vec2.feature_projection(hf.wav2vec2.feature_extractor(wav).transpose(1, 2))
        mask = torch.rand(normed.shape[:2], generator=torch.Generator().manual_seed(3)) < 0.5
        ref_q, ref_ppl = hf.quantizer(normed, mask_time_indices=mask)
        got = ours.quantizer(normed, temperature=2.0, mask=mask)
    torch.testing.assert_close(got.codevectors, ref_q)
    torch.testing.assert_close(got.code_perplexity, ref_ppl)
    with torch.no_grad():
        torch.testing.assert_close(ours.project_q(got.codevectors), hf.project_q(ref_q))


def _mask_and_negatives(hf, lengths, attention_mask, seed=0):
    np.random.seed(seed)
    frames = hf._get_feat_extract_output_lengths(lengths)
    T = int(frames.max())
    feature_mask = hf._get_feature_vector_attention_mask(T, attention_mask)
    mask = hf_w2v._compute_mask_indices((3, T), mask_prob=0.4, mask_length=3, attention_mask=feature_mask, min_masks=2)
    negatives = hf_w2v._sample_negative_indices((3, T), hf.config.num_negatives, mask_time_indices=mask)
    return torch.tensor(mask), torch.tensor(negatives, dtype=torch.long)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pretraining_loss(pair, mode):
    hf, ours, _ = pair
    wav, lengths, attention_mask = batch(1)
    mask, negatives = _mask_and_negatives(hf, lengths, attention_mask)
    hf.train(mode == "train")
    ours.train(mode == "train")
    hf.set_gumbel_temperature(1.7)
    try:
        torch.manual_seed(123)  # the Gumbel noise is the only random draw in either forward
        ref = hf(wav, attention_mask=attention_mask, mask_time_indices=mask, sampled_negative_indices=negatives)
        torch.manual_seed(123)
        got = ours(wav, lengths, mask_indices=mask, negative_indices=negatives, temperature=1.7)
    finally:
        hf.eval()
        ours.eval()
    n = mask.sum()
    assert got.num_masked == n
    torch.testing.assert_close(got.contrastive_loss, ref.contrastive_loss, rtol=1e-4, atol=1e-4)
    if mode == "train":  # HF's diversity loss uses the soft (prob) perplexity in training, like fairseq
        torch.testing.assert_close(got.prob_perplexity, ref.codevector_perplexity)
        torch.testing.assert_close(got.diversity_loss * n, ref.diversity_loss)
        hf_loss = got.contrastive_loss + ours.config.diversity_weight * got.diversity_loss * n
        torch.testing.assert_close(hf_loss, ref.loss, rtol=1e-4, atol=1e-4)
        expected = hf_loss + ours.config.feature_penalty_weight * got.feature_penalty * n
        torch.testing.assert_close(got.loss, expected)
    else:  # in eval HF reports the hard (code) perplexity
        torch.testing.assert_close(got.code_perplexity, ref.codevector_perplexity)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ctc_logits(variant, tmp_path):
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForCTC(hf_config(variant)).eval()
    randomize(hf, 2)
    hf.save_pretrained(tmp_path)
    VOCAB.save(tmp_path / "vocab.json")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path)
    ours = w2vcli.load_model(tmp_path)
    assert ours.vocab.tokens == VOCAB.tokens and ours.config.normalize_waveform is False
    wav, lengths, attention_mask = batch(2)
    with torch.no_grad():
        ref = hf(wav, attention_mask=attention_mask).logits
        got, frames = ours(wav, lengths)
    torch.testing.assert_close(valid(got, frames), valid(ref, frames), atol=2e-5, rtol=1e-4)
