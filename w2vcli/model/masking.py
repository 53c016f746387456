"""Span masking and distractor sampling, vectorised (no Python loop over utterances or spans).

Span masking (paper §3.1). Two ways to say how much to mask:
- the paper: each frame is a span start with probability p = 0.065, span M = 10;
- fairseq/Hugging Face `mask_prob` = 0.65 = p * M (`config.mask_prob_from_start_prob`).
`span_mask` takes the fairseq convention, like `ModelConfig.mask_time_prob`: an utterance of L
valid frames gets n = int(mask_prob * L / M + u) spans (u ~ U[0,1) shared by the batch, i.e.
random rounding), at least `min_masks`, at most what fits; the n start frames are drawn without
replacement from [0, L - M], spans may overlap (~49% of frames end up masked for 0.65 / 10),
and padded frames are never masked. This is the distribution of HF's `_compute_mask_indices`.
Unlike fairseq, utterances of a batch need not have the same number of masked frames.

Distractors (paper §3.2): for each masked frame, K indices drawn uniformly from the *other*
masked frames of the same utterance (never the frame itself), plus optionally K' drawn from
masked frames anywhere in the batch (fairseq cross_sample_negatives). Indices point into the
flattened [B*T] time axis, the layout of HF's `_sample_negative_indices`.
"""

from __future__ import annotations

import torch


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B,T] bool, True at valid (non-padded) frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def span_mask(
    lengths: torch.Tensor,
    max_len: int,
    mask_prob: float,
    span: int,
    min_masks: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random span mask [B,T] bool, True = masked; T = max_len, valid frames given by `lengths` [B]."""
    B, T, device = lengths.shape[0], max_len, lengths.device
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    if mask_prob <= 0 or span > T:
        return torch.zeros(B, T, dtype=torch.bool, device=device)
    u = _rand(1, 1, generator, device)[0, 0]  # random rounding of the span count, shared by the batch
    lengths = lengths.clamp(max=T)
    n = (mask_prob * lengths / span + u).floor().long()
    n = n.clamp(min=min_masks).clamp(max=T // span)
    n = torch.minimum(n, (lengths - span + 1).clamp(min=0))  # [B] spans per utterance
    # n distinct starts among the L-M+1 valid ones: the n smallest of random keys
    keys = _rand(B, T, generator, device)
    keys = keys.masked_fill(torch.arange(T, device=device)[None, :] > (lengths - span)[:, None], 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)  # [B,T] rank of each frame's key within its row
    starts = (rank < n[:, None]).to(torch.int32)  # [B,T]
    # frame t is masked if any start lies in [t-M+1, t]: a windowed count through a cumulative sum
    c = starts.cumsum(dim=1)
    c_shift = torch.nn.functional.pad(c, (span, 0))[:, :T]  # c[t-M], 0 before the start
    return (c - c_shift) > 0


def sample_negatives(
    mask: torch.Tensor,
    num_negatives: int,
    cross_sample_negatives: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Distractor indices [B,T,K+K'] (int64 into the flattened B*T axis) for masked frames `mask` [B,T].

    Rows of unmasked frames point at the frame itself (they are ignored by the loss). An utterance
    with a single masked frame has no other frame to draw from, so its distractor is the frame
    itself, which the loss masks out as an identical negative.
    """
    B, T = mask.shape
    device = mask.device
    flat_self = torch.arange(B * T, device=device).view(B, T)
    parts = []
    if num_negatives > 0:
        count = mask.sum(dim=1, keepdim=True)  # [B,1] masked frames per utterance
        rank = mask.long().cumsum(dim=1) - 1  # [B,T] rank of each masked frame among its row's
        # draw from [0, count-2] and skip one's own rank: uniform over the other masked frames
        r = (_rand(B, T * num_negatives, generator, device).view(B, T, num_negatives)
             * (count - 1).clamp(min=0)[:, :, None]).long()  # fmt: skip
        r = r + (r >= rank[:, :, None]).long()
        r = torch.minimum(r, (count - 1).clamp(min=0)[:, :, None])
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # masked frames first, in time order
        t = torch.gather(order, 1, r.view(B, -1)).view(B, T, num_negatives)
        parts.append(t + (torch.arange(B, device=device) * T)[:, None, None])
    if cross_sample_negatives > 0:
        flat = mask.reshape(-1)
        count = flat.sum()
        rank = flat.long().cumsum(dim=0) - 1
        r = (_rand(B * T, cross_sample_negatives, generator, device) * (count - 1).clamp(min=0)).long()
        r = r + (r >= rank[:, None]).long()
        r = torch.minimum(r, (count - 1).clamp(min=0))
        order = torch.argsort((~flat).to(torch.int8), stable=True)
        parts.append(order[r].view(B, T, cross_sample_negatives))
    if not parts:
        return torch.empty(B, T, 0, dtype=torch.long, device=device)
    neg = torch.cat(parts, dim=-1)
    return torch.where(mask[:, :, None], neg, flat_self[:, :, None])


def _rand(rows: int, cols: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if generator is None:
        return torch.rand(rows, cols, device=device)
    return torch.rand(rows, cols, generator=generator, device=generator.device).to(device)
