"""Gumbel-softmax product quantizer (paper §2, "Quantization module").

Features [B,T,C] are projected to G x V logits; each of the G codebooks picks one of its V
codewords (size d/G) and the G choices are concatenated into a [B,T,d] target. In training
the choice is a straight-through hard Gumbel-softmax sample at the given temperature; in eval
it is the argmax. Two perplexities of the batch-averaged codeword distribution are reported,
both summed over the G codebooks, so 1*G <= ppl <= V*G (1 <= ppl <= V per codebook):

- code perplexity: of the hard argmax choices (how many codewords are really used);
- prob perplexity: of the softmax probabilities (what the diversity loss maximises in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    codevectors: torch.Tensor  # [B,T,d] quantized targets (before project_q)
    code_perplexity: torch.Tensor  # scalar, hard choices, summed over G
    prob_perplexity: torch.Tensor  # scalar, soft probabilities, summed over G
    usage: torch.Tensor  # [G] fraction of each codebook's V entries chosen at least once


def perplexity(probs: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """exp(entropy) of the weighted-average distribution, summed over codebooks.

    probs [N,G,V], weights [N] (1 for steps that count, 0 otherwise; None = all).
    """
    if weights is None:
        avg = probs.mean(dim=0)  # [G,V]
    else:
        w = weights.to(probs.dtype)
        avg = (probs * w[:, None, None]).sum(dim=0) / w.sum().clamp(min=1.0)
    return torch.exp(-torch.xlogy(avg, avg).sum(dim=-1)).sum()


class GumbelQuantizer(nn.Module):
    """features [B,T,C] -> QuantizerOutput; `temperature` is an input (the trainer anneals it).

    Args:
        in_dim: C, size of the (layer-normed) features to quantize.
        num_groups: G codebooks (fairseq latent_groups).
        num_vars: V codewords per codebook (fairseq latent_vars).
        codevector_dim: d, size of the concatenated codewords (each d/G).
    """

    def __init__(self, in_dim: int, num_groups: int, num_vars: int, codevector_dim: int):
        super().__init__()
        if codevector_dim % num_groups:
            raise ValueError(f"codevector_dim {codevector_dim} is not divisible by num_groups {num_groups}")
        self.num_groups, self.num_vars = num_groups, num_vars
        self.weight_proj = nn.Linear(in_dim, num_groups * num_vars)
        self.codevectors = nn.Parameter(torch.empty(num_groups, num_vars, codevector_dim // num_groups))
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)  # fairseq/HF init
        nn.init.zeros_(self.weight_proj.bias)
        nn.init.uniform_(self.codevectors)

    def forward(self, x: torch.Tensor, temperature: float = 2.0, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """x [B,T,C]; mask [B,T] bool picks the steps the perplexities average over (None = all)."""
        B, T, _ = x.shape
        G, V = self.num_groups, self.num_vars
        logits = self.weight_proj(x).float().view(B * T * G, V)
        idx = logits.argmax(dim=-1).view(B * T, G)  # [N,G]
        hard = F.one_hot(idx, V).to(logits.dtype)  # [N,G,V]
        soft = torch.softmax(logits.view(B * T, G, V), dim=-1)
        weights = None if mask is None else mask.reshape(B * T)
        code_ppl = perplexity(hard, weights)
        prob_ppl = perplexity(soft, weights)
        with torch.no_grad():
            chosen = hard if weights is None else hard * weights.to(hard.dtype)[:, None, None]
            usage = (chosen.sum(dim=0) > 0).float().mean(dim=-1)  # [G]
        if self.training:
            # straight-through: one-hot forward, gradient of the Gumbel softmax backward
            choice = F.gumbel_softmax(logits, tau=temperature, hard=True).view(B * T, G, V)
            q = torch.einsum("ngv,gvd->ngd", choice.to(self.codevectors.dtype), self.codevectors)
        else:
            q = self.codevectors[torch.arange(G, device=x.device)[None, :], idx]  # [N,G,d/G]
        return QuantizerOutput(q.reshape(B, T, -1), code_ppl, prob_ppl, usage)
