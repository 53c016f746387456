"""Unit tests of the model package: shapes, masking, distractors, losses, checkpoints, security."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2vcli.model import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, get_preset, load_model, save_checkpoint
from w2vcli.text import Vocabulary

VOCAB = Vocabulary.letters_from_texts(["HELLO WORLD IT IS ME"])


def _batch(B=3, S=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(B, S, generator=g)
    lengths = torch.tensor([S - i * 3000 for i in range(B)])
    wav = wav * (torch.arange(S)[None, :] < lengths[:, None])
    return wav, lengths


def test_smoke_pretrain_and_ctc(tmp_path):
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(get_preset("tiny")).train()
    wav, lengths = _batch()
    out = model(wav, lengths, temperature=1.5)
    assert torch.isfinite(out.loss) and out.num_masked > 0 and out.temperature == 1.5
    out.loss.backward()
    ctc = Wav2Vec2ForCTC.from_pretraining(model, VOCAB).eval()
    logits, frames = ctc(wav, lengths)
    assert logits.shape == (3, 49, len(VOCAB)) and frames.tolist() == [49, 40, 31]
    save_checkpoint(tmp_path / "ctc.pt", ctc)
    again = load_model(tmp_path / "ctc.pt")
    assert again.vocab.tokens == VOCAB.tokens
    torch.testing.assert_close(again(wav, lengths)[0], logits)


# --- masking and distractors ---------------------------------------------------------------------

from w2vcli.model.masking import sample_negatives, span_mask  # noqa: E402


def test_span_mask_counts_and_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([500, 400, 123, 30, 12])
    fractions = []
    for _ in range(20):
        mask = span_mask(lengths, 500, mask_prob=0.65, span=10, min_masks=2, generator=g)
        assert mask.shape == (5, 500)
        for b, L in enumerate(lengths.tolist()):
            assert not mask[b, L:].any(), "padded frames must never be masked"
            starts = mask[b] & ~torch.nn.functional.pad(mask[b], (1, 0))[:-1]  # where a run begins
            runs = int(starts.sum())
            n_max = max(int(0.65 * L / 10 + 1), 2)
            assert 1 <= runs <= min(n_max, L - 9)  # overlapping spans merge into fewer runs
            assert int(mask[b].sum()) <= 10 * n_max
            assert int(mask[b].sum()) % 10 == 0 or runs < n_max  # whole spans unless merged
        fractions.append(mask[0].float().mean().item())
    # paper: p = 0.065 starts, M = 10 -> about 49% of frames masked
    assert 0.42 < sum(fractions) / len(fractions) < 0.56


def test_span_mask_min_masks_and_short_utterances():
    lengths = torch.tensor([50, 9, 10])
    mask = span_mask(lengths, 50, mask_prob=0.01, span=10, min_masks=2)
    assert mask[0].sum() >= 10  # min_masks applies even with a tiny mask_prob
    assert not mask[1].any()  # shorter than one span: nothing fits
    assert mask[2].sum() == 10  # exactly one span fits


def test_negatives_same_utterance_never_positive():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([200, 150, 60])
    mask = span_mask(lengths, 200, 0.65, 10, 2, generator=g)
    neg = sample_negatives(mask, num_negatives=100, generator=g)
    B, T = mask.shape
    assert neg.shape == (B, T, 100)
    flat_mask = mask.reshape(-1)
    for b in range(B):
        for t in torch.nonzero(mask[b]).flatten().tolist():
            idx = neg[b, t]
            assert (idx // T == b).all(), "distractors come from the same utterance"
            assert (idx != b * T + t).all(), "a distractor is never the positive itself"
            assert flat_mask[idx].all(), "distractors are masked frames"
    # uniform over the other masked frames: with many draws every one of them shows up
    b, t = 2, int(torch.nonzero(mask[2])[0])
    draws = sample_negatives(mask, 4000, generator=g)[b, t]
    assert set(draws.tolist()) == {b * T + i for i in torch.nonzero(mask[b]).flatten().tolist()} - {b * T + t}


def test_cross_sample_negatives():
    g = torch.Generator().manual_seed(2)
    mask = span_mask(torch.tensor([80, 80]), 80, 0.65, 10, 2, generator=g)
    neg = sample_negatives(mask, num_negatives=5, cross_sample_negatives=7, generator=g)
    assert neg.shape == (2, 80, 12)
    flat_mask = mask.reshape(-1)
    for b, t in torch.nonzero(mask).tolist():
        assert flat_mask[neg[b, t]].all() and (neg[b, t] != b * 80 + t).all()
    assert (neg[:, :, 5:] // 80 != torch.arange(2)[:, None, None]).any(), "some come from the other utterance"


# --- quantizer, losses, feature encoder ----------------------------------------------------------

from w2vcli.model.quantizer import GumbelQuantizer  # noqa: E402


def test_perplexity_bounds():
    torch.manual_seed(0)
    q = GumbelQuantizer(in_dim=16, num_groups=2, num_vars=8, codevector_dim=8)
    x = torch.randn(4, 30, 16)
    for mode in (True, False):
        out = q.train(mode)(x, temperature=0.7)
        for ppl in (out.code_perplexity, out.prob_perplexity):
            assert 2 * 1 - 1e-4 <= ppl.item() <= 2 * 8 + 1e-4  # 1 <= ppl <= V per codebook, G = 2
        assert out.codevectors.shape == (4, 30, 8) and out.usage.shape == (2,)
    with torch.no_grad():  # every step picks the same codeword: perplexity G, usage 1/V
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.copy_(torch.arange(16.0) * 10)
    out = q.eval()(x)
    torch.testing.assert_close(out.code_perplexity, torch.tensor(2.0))
    torch.testing.assert_close(out.usage, torch.full((2,), 1 / 8))


def test_output_lengths_match_conv_stack():
    torch.manual_seed(0)
    enc = Wav2Vec2ForPreTraining(get_preset("tiny")).wav2vec2.feature_encoder
    lengths = torch.tensor([400, 401, 719, 720, 1000, 4321, 16000])
    with torch.no_grad():
        actual = [enc(torch.randn(1, L)).shape[-1] for L in lengths.tolist()]
    assert enc.output_lengths(lengths).tolist() == actual
    assert enc.output_lengths(torch.tensor([0, 100, 399])).tolist() == [0, 0, 0]


def test_group_norm_over_valid_frames_equals_unpadded():
    """With lengths, a padded row's features equal the row alone (both the inference and the
    training path); without them, the group norm is torch's, statistics over the padding."""
    torch.manual_seed(0)
    enc = Wav2Vec2ForPreTraining(get_preset("tiny")).wav2vec2.feature_encoder
    lengths = torch.tensor([4321, 16000, 9000])
    wav = torch.randn(3, 16000) * (torch.arange(16000)[None, :] < lengths[:, None])
    frames = enc.output_lengths(lengths)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            padded = enc(wav, lengths)
            for b, (n, t) in enumerate(zip(lengths.tolist(), frames.tolist())):
                alone = enc(wav[b : b + 1, :n])
                torch.testing.assert_close(padded[b, :, :t], alone[0], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        x = enc.blocks[0].conv(wav[:, None, :])
        expected = torch.nn.functional.gelu(enc.blocks[0].norm(x))
        for block in enc.blocks[1:]:
            expected = block(expected)
        torch.testing.assert_close(enc(wav), expected)
        assert not torch.allclose(enc(wav)[0, :, : frames[0]], enc(wav, lengths)[0, :, : frames[0]], atol=1e-3)


def test_group_norm_fused_paths_equal_nn_group_norm():
    """The helper behind both feature-encoder paths (channels first F.group_norm, channels last
    F.batch_norm per row, one-frame rows) gives nn.GroupNorm's outputs and gradients per row."""
    from w2vcli.model.feature_encoder import _group_norm

    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(6, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    valid = torch.tensor([30, 1, 11])
    for time_dim in (1, 2):
        x = torch.randn((3, 30, 6) if time_dim == 1 else (3, 6, 30), requires_grad=True)
        out = _group_norm(x, norm, valid, time_dim)
        weight = torch.randn_like(out)
        got = torch.autograd.grad((out * weight).sum(), (x, norm.weight, norm.bias))
        want_grads = [torch.zeros_like(x), torch.zeros_like(norm.weight), torch.zeros_like(norm.bias)]
        for b, n in enumerate(valid.tolist()):
            rows = (slice(b, b + 1), slice(0, n)) if time_dim == 1 else (slice(b, b + 1), slice(None), slice(0, n))
            row = x[rows].transpose(1, 2) if time_dim == 1 else x[rows]  # [1,C,n]
            if n == 1:  # nn.GroupNorm refuses one value per channel in training; x - mean = 0: the bias
                want = norm.bias.view(1, -1, 1) + 0 * row * norm.weight.view(1, -1, 1)
            else:
                want = norm(row)
            want = want.transpose(1, 2) if time_dim == 1 else want
            mine, w = out[rows], weight[rows]
            torch.testing.assert_close(mine, want, atol=1e-5, rtol=1e-5)
            for acc, g in zip(want_grads, torch.autograd.grad((want * w).sum(), (x, norm.weight, norm.bias))):
                acc += g
        for g, w in zip(got, want_grads):
            torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)
    # a channel whose mean dwarfs its spread (a DC offset) is normalised as exactly as in float64
    x = torch.randn(1, 4000, 6) * 0.01 + torch.tensor([0.0, 1.0, -10.0, 100.0, 5.0, 30.0])
    var, mean = torch.var_mean(x.double(), dim=1, correction=0, keepdim=True)
    want = (x.double() - mean) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()
    for time_dim in (1, 2):
        got = _group_norm(x if time_dim == 1 else x.transpose(1, 2), norm, None, time_dim)
        got = got if time_dim == 1 else got.transpose(1, 2)
        assert (got.double() - want).abs().max() < 2e-3


def test_feature_encoder_gradient_scale():
    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(feature_grad_mult=1.0)
    model = Wav2Vec2ForPreTraining(cfg)
    wav, lengths = _batch()
    mask = torch.zeros(3, 49, dtype=torch.bool)
    mask[:, 10:20] = True
    neg = sample_negatives(mask, 5, generator=torch.Generator().manual_seed(0))

    def grads(mult):
        model.zero_grad()
        model.config.feature_grad_mult = mult
        torch.manual_seed(1)
        model(wav, lengths, mask, neg).loss.backward()
        conv = model.wav2vec2.feature_encoder.blocks[0].conv.weight.grad
        proj = model.wav2vec2.feature_projection.projection.weight.grad
        return (None if conv is None else conv.clone()), proj.clone()

    full, proj_full = grads(1.0)
    scaled, proj_scaled = grads(0.1)
    frozen, _ = grads(0.0)
    torch.testing.assert_close(scaled, 0.1 * full)
    torch.testing.assert_close(proj_scaled, proj_full)  # only the conv stack is scaled
    assert frozen is None


def test_preset_parameter_counts():
    counts = {}
    for name in ("base", "large"):
        with torch.device("meta"):
            model = Wav2Vec2ForPreTraining(get_preset(name))
        counts[name] = sum(p.numel() for p in model.parameters())
    assert abs(counts["base"] - 95.0e6) < 0.5e6, counts  # paper: 95 M
    assert abs(counts["large"] - 317.0e6) < 1.0e6, counts  # paper: 317 M


# --- ConvAsMatmul: the feature encoder's hand-written convolution backward ------------------------

from w2vcli.model.feature_encoder import ConvAsMatmul  # noqa: E402


@pytest.mark.parametrize("k,stride", [(3, 2), (2, 2), (4, 1)])
def test_conv_as_matmul_gradcheck(k, stride):
    """Its backward against numerical derivatives (float64), input, weight and bias together."""
    g = torch.Generator().manual_seed(k * 10 + stride)
    x = torch.randn(2, 9, 3, dtype=torch.float64, generator=g, requires_grad=True)  # [B,L,C_in]
    w = torch.randn(4, 3, k, dtype=torch.float64, generator=g, requires_grad=True)  # [C_out,C_in,k]
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: ConvAsMatmul.apply(x, w, b, stride), (x, w, b))


@pytest.mark.parametrize("k,stride,bias", [(10, 5, False), (3, 2, True), (2, 2, False)])
def test_conv_as_matmul_matches_conv1d(k, stride, bias):
    """Output and all three gradients equal F.conv1d's on the channels-first input."""
    g = torch.Generator().manual_seed(k + stride)
    x = torch.randn(3, 57, 8, generator=g)  # [B,L,C_in]
    w = torch.randn(6, 8, k, generator=g)
    b = torch.randn(6, generator=g) if bias else None
    grad = torch.randn(3, (57 - k) // stride + 1, 6, generator=g)  # [B,T,C_out]
    leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ours = ConvAsMatmul.apply(leaves[0], leaves[1], leaves[2] if bias else None, stride)
    ref_leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ref = F.conv1d(ref_leaves[0].transpose(1, 2), ref_leaves[1], ref_leaves[2] if bias else None,
                   stride=stride).transpose(1, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    (ours * grad).sum().backward()
    (ref * grad).sum().backward()
    for mine, theirs in zip(leaves, ref_leaves):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-4)
