"""The feature encoder: a stack of temporal convolutions from waveform samples to frames.

Paper §2: 7 blocks `[(512,10,5)] + [(512,3,2)]*4 + [(512,2,2)]*2` with GELU, so one frame every
320 samples (20 ms) seeing 400 samples (25 ms) at 16 kHz. Two normalisation variants:

- BASE ("group", fairseq extractor_mode=default): GroupNorm with one group per channel after the
  first conv only (it normalises each channel over the whole padded time axis);
- LARGE ("layer", fairseq extractor_mode=layer_norm): LayerNorm over channels after every conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    """Conv1d -> optional norm ("none", "group" or "layer") -> GELU.  [B,C_in,S] -> [B,C_out,S']"""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool, norm: str):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)  # fairseq's init
        if norm == "group":
            self.norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels, elementwise_affine=True)
        elif norm == "none":
            self.norm = None
        else:
            raise ValueError(f"norm must be 'none', 'group' or 'layer', got {norm!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # [B,C,T]
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # normalise over C
        elif self.norm is not None:
            x = self.norm(x)  # each channel over T
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Waveform [B,S] -> features [B,C,T] (channels first, as the convs produce them).

    Args:
        conv_dim, conv_kernel, conv_stride: per block (fairseq conv_feature_layers).
        conv_bias: bias in the convs (fairseq conv_bias; True for LARGE).
        norm: "group" (BASE) or "layer" (LARGE), fairseq extractor_mode default / layer_norm.
    """

    def __init__(
        self,
        conv_dim: tuple[int, ...],
        conv_kernel: tuple[int, ...],
        conv_stride: tuple[int, ...],
        conv_bias: bool = False,
        norm: str = "group",
    ):
        super().__init__()
        if norm not in ("group", "layer"):
            raise ValueError(f"norm must be 'group' or 'layer', got {norm!r}")
        self.conv_kernel = tuple(conv_kernel)
        self.conv_stride = tuple(conv_stride)
        blocks = []
        in_channels = 1
        for i, (c, k, s) in enumerate(zip(conv_dim, conv_kernel, conv_stride)):
            block_norm = "layer" if norm == "layer" else ("group" if i == 0 else "none")
            blocks.append(ConvBlock(in_channels, c, k, s, conv_bias, block_norm))
            in_channels = c
        self.blocks = nn.ModuleList(blocks)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B,S] -> [B,C,T] with T = output_lengths(S)."""
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform batch [B,S], got shape {tuple(wav.shape)}")
        x = wav[:, None, :]  # [B,1,S]
        for block in self.blocks:
            x = block(x)
        return x

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced from `lengths` samples: floor((L - k) / s) + 1 per block, clamped at 0."""
        for k, s in zip(self.conv_kernel, self.conv_stride):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return lengths.clamp(min=0)
