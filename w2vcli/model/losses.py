"""The pretraining objective (paper §3.2): contrastive loss, diversity loss, feature penalty.

Reductions follow fairseq and Hugging Face: the contrastive loss is a *sum* over masked frames;
the diversity loss and the feature penalty are per-frame quantities that the model multiplies
by the number of masked frames, so that `loss / num_masked` is the per-frame objective
L_m + alpha * L_d + beta * penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from w2vcli.model.masking import padding_mask


def contrastive_logits(
    context: torch.Tensor,
    targets: torch.Tensor,
    negative_indices: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cosine similarities / kappa of each frame's context with its target and its distractors.

    context [B,T,P] (projected Transformer output), targets [B,T,P] (projected quantized features),
    negative_indices [B,T,K] into the flattened B*T axis -> logits [B,T,1+K], column 0 the true
    target. A distractor identical to the true target gets -inf (as in fairseq and HF), so low
    codebook usage cannot make the task impossible.
    """
    B, T, P = targets.shape
    K = negative_indices.shape[-1]
    c = F.normalize(context.float(), dim=-1, eps=1e-8)
    q = F.normalize(targets.float(), dim=-1, eps=1e-8)
    negatives = q.reshape(B * T, P)[negative_indices.reshape(-1)].view(B, T, K, P)
    pos = (c * q).sum(dim=-1, keepdim=True)  # [B,T,1]
    neg = torch.matmul(negatives, c[..., None]).squeeze(-1)  # [B,T,K]
    neg_is_pos = (negatives == q[:, :, None, :]).all(dim=-1)  # [B,T,K]
    neg = neg.masked_fill(neg_is_pos, float("-inf"))
    return torch.cat([pos, neg], dim=-1) / temperature


def contrastive_loss(logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy picking column 0, over masked frames only.

    logits [B,T,1+K], mask [B,T] bool -> (loss sum, number of masked frames where column 0 wins).
    """
    flat = logits.reshape(-1, logits.shape[-1])
    target = torch.where(mask.reshape(-1), 0, -100)
    loss = F.cross_entropy(flat, target, ignore_index=-100, reduction="sum")
    with torch.no_grad():
        # a frame counts as right when the true target has the single highest logit
        best = flat.max(dim=-1).values
        right = (flat[:, 0] == best) & ((flat == best[:, None]).sum(dim=-1) == 1)
        correct = (right & mask.reshape(-1)).sum()
    return loss, correct


def chance_correct(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked frames random scores would get right, in expectation: the sum of 1/(1 + distractors
    left) over masked frames. logits [B,T,1+K], mask [B,T] bool -> scalar.

    A distractor equal to the true target was dropped (-inf), so with few codewords in use
    chance is above 1/(K+1); the training diagnostics compare the accuracy with this.
    """
    with torch.no_grad():
        left = torch.isfinite(logits[..., 1:]).sum(dim=-1)  # [B,T]
        return ((1.0 + left.float()).reciprocal() * mask).sum()


def diversity_loss(prob_perplexity: torch.Tensor, num_codewords: int) -> torch.Tensor:
    """(G*V - perplexity) / (G*V): 0 when every codeword is used equally, near 1 when one is."""
    return (num_codewords - prob_perplexity) / num_codewords


def feature_penalty(features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared activation of the conv features [B,T,C] over valid frames (fairseq features_pen)."""
    x = features.float().pow(2)
    if lengths is None:
        return x.mean()
    valid = padding_mask(lengths, x.shape[1]).to(x.dtype)  # [B,T]
    return (x.sum(dim=-1) * valid).sum() / (valid.sum().clamp(min=1.0) * x.shape[-1])
