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

from w2vcli.model.masking import padding_mask


class ConvAsMatmul(torch.autograd.Function):
    """A strided Conv1d over a channels-last input as one matrix product: [B,L,C_in] -> [B,T,C_out].

    Each output frame's window of k frames x C_in channels is copied into a row (im2col, tap
    major) and multiplied by the weight reshaped to [C_out, k*C_in]. On CPUs this runs the
    backward pass about 1.3x faster than the channels-first convolution kernels, whose weight and
    input gradients are much slower than their forward. Only the input is saved (the windows
    are rebuilt in backward), so memory stays that of the convolution. Measured on CPUs only; its
    gradients are checked against F.conv1d in tests/test_model.py.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride: int):
        B, L, C = x.shape
        C_out, _, k = weight.shape
        T = (L - k) // stride + 1
        w = weight.transpose(1, 2).reshape(C_out, k * C)  # [C_out, k*C_in]
        y = _windows(x, k, stride, T) @ w.t()  # [B*T, C_out]
        if bias is not None:
            y += bias
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return y.view(B, T, C_out)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        B, L, C = x.shape
        C_out, _, k = weight.shape
        s, T = ctx.stride, grad.shape[1]
        g = grad.reshape(B * T, C_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            g_win = (g @ weight.transpose(1, 2).reshape(C_out, k * C)).view(B, T, k, C)
            grad_x = x.new_zeros(B, L, C)
            for j in range(k):  # col2im: tap j of frame t came from input frame t*s + j
                grad_x[:, j : j + s * (T - 1) + 1 : s] += g_win[:, :, j]
        if ctx.needs_input_grad[1]:
            # in the weight's own (contiguous) strides: DDP copies a gradient whose strides differ from
            # its bucket's, size-1 dims included (block 0), which .contiguous() would leave as they are
            grad_w = (g.t() @ _windows(x, k, s, T)).view(C_out, k, C).transpose(1, 2)
            grad_w = weight.new_empty(weight.shape).copy_(grad_w)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(dim=0)
        return grad_x, grad_w, grad_b, None


def _windows(x: torch.Tensor, k: int, stride: int, T: int) -> torch.Tensor:
    """[B,L,C] -> [B*T, k*C]: frame t's window x[t*stride : t*stride+k], taps in order."""
    B, _, C = x.shape
    if k == stride:  # windows tile the input: a view, no copy
        return x[:, : T * k].reshape(B * T, k * C)
    return x.unfold(1, k, stride).transpose(2, 3).reshape(B * T, k * C)


def _conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Frames one strided conv makes from `lengths` input frames: floor((L - k) / s) + 1, at least 0."""
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


def _group_norm(x: torch.Tensor, norm: nn.GroupNorm, valid: torch.Tensor | None, time_dim: int) -> torch.Tensor:
    """One-group-per-channel GroupNorm: each channel normalised over time, then scaled and shifted.

    x is [B,C,T] (time_dim 2) or [B,T,C] (time_dim 1). valid None: statistics over all T, as
    nn.GroupNorm (and fairseq/HF) compute them. valid [B]: over each row's first valid frames
    only, so a row's valid frames come out exactly as they would from that row alone, unpadded
    (its padded frames come out as 0 and are never used).

    Eager, through PyTorch's fused kernels, row by row unless every row is whole: channels first
    F.group_norm, channels last F.batch_norm in training mode over the row's [T,C] frames,
    centred first. Measured on BASE's first block, two threads: the channels-first forward 26 ms
    where var_mean + addcmul take 76 (10 s); the channels-last forward + backward with GELU
    40-46 ms where the autograd of var_mean + addcmul takes 91 (4 s). Exported (ONNX): the same
    arithmetic in plain ops, masked sums for valid.
    """
    if not torch.compiler.is_exporting():
        return _group_norm_rows(x, norm, valid, time_dim)
    if valid is None:
        var, mean = torch.var_mean(x, dim=time_dim, correction=0, keepdim=True)
    else:
        var, mean = _masked_var_mean(x, valid, time_dim)
    shape = (1, -1, 1) if time_dim == 2 else (1, 1, -1)
    scale = norm.weight.view(shape) * torch.rsqrt(var + norm.eps)
    return torch.addcmul(norm.bias.view(shape) - mean * scale, x, scale)  # (x - mean) / std * w + b


def _group_norm_rows(x: torch.Tensor, norm: nn.GroupNorm, valid: torch.Tensor | None, time_dim: int) -> torch.Tensor:
    """`_group_norm` in eager mode: one fused kernel for the batch or for each row's valid frames."""
    T, C = x.shape[time_dim], norm.num_channels
    rows = [T] * x.shape[0] if valid is None else [max(1, min(T, int(n))) for n in valid.tolist()]
    if time_dim == 2 and T > 1 and all(n == T for n in rows):
        return F.group_norm(x, C, norm.weight, norm.bias, norm.eps)
    shape, pad = ((-1, 1), (0, 1)) if time_dim == 2 else ((1, -1), (0, 0, 0, 1))
    out = []
    for b, n in enumerate(rows):
        row = x[b, :, :n] if time_dim == 2 else x[b, :n]  # [C,n] or [n,C]
        if n == 1:  # the fused kernels refuse one value per channel; x - mean = 0, so the bias
            y = (row - row) * torch.rsqrt(row.new_full((), norm.eps)) * norm.weight.view(shape) + norm.bias.view(shape)
        elif time_dim == 2:
            y = F.group_norm(row[None], C, norm.weight, norm.bias, norm.eps)[0]
        else:  # per-channel statistics over the n frames, biased variance: the same normalisation.
            # batch_norm's CPU kernel sums squares, which cancels when a channel's mean dwarfs its
            # spread (a DC offset): centring on a sampled mean first keeps it as exact as the rest
            shift = row[:: max(1, n // 64)].mean(dim=0, keepdim=True).detach()
            y = F.batch_norm(row - shift, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
        out.append(F.pad(y, tuple(p * (T - n) for p in pad)) if n < T else y)
    return out[0][None] if len(out) == 1 else torch.stack(out)


def _masked_var_mean(x: torch.Tensor, valid: torch.Tensor, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over each row's first `valid` frames, vectorised (equal to the per-row
    statistics up to float rounding). x [B,C,T] or [B,T,C] -> two [B,C,1] or [B,1,C] tensors."""
    T = x.shape[time_dim]
    keep = padding_mask(valid.clamp(min=1), T).to(x.dtype)  # [B,T]
    keep = keep[:, None, :] if time_dim == 2 else keep[:, :, None]
    n = keep.sum(dim=time_dim, keepdim=True)
    mean = (x * keep).sum(dim=time_dim, keepdim=True) / n
    var = ((x - mean).square() * keep).sum(dim=time_dim, keepdim=True) / n
    return var, mean


class ConvBlock(nn.Module):
    """Conv1d -> optional norm ("none", "group" or "layer") -> GELU, two equivalent ways.

    `forward` runs channels first through PyTorch's convolution (the faster forward on CPUs);
    `forward_matmul` runs channels last through `ConvAsMatmul` (the faster forward + backward).
    The parameters are an ordinary `nn.Conv1d`'s and `nn.GroupNorm`'s / `nn.LayerNorm`'s.
    With `cpu_autocast=False` the block runs in fp32 under CPU autocast (see FeatureEncoder).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool, norm: str,
                 cpu_autocast: bool = True):  # fmt: skip
        super().__init__()
        self.cpu_autocast = cpu_autocast
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

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Channels first, PyTorch's convolution: [B,C_in,L] -> [B,C_out,T].

        valid [B]: output frames of each row that are not padding; with group norm, each channel
        is then normalised over those frames only (None: over all T, as fairseq/HF do).
        """
        if self._leave_autocast(x):
            with torch.autocast("cpu", enabled=False):
                return self.forward(x.float(), valid)
        x = self.conv(x)
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # normalise over C
        elif self.norm is not None and valid is not None:
            x = _group_norm(x, self.norm, valid, time_dim=2)
        elif self.norm is not None:
            x = self.norm(x)  # each channel over T
        return F.gelu(x)

    def forward_matmul(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Channels last, the convolution as a matrix product: [B,L,C_in] -> [B,T,C_out]."""
        if self._leave_autocast(x):
            with torch.autocast("cpu", enabled=False):
                return self.forward_matmul(x.float(), valid)
        w, b = self.conv.weight, self.conv.bias
        if torch.is_autocast_enabled(x.device.type):  # a custom Function is not autocast: cast here,
            dtype = torch.get_autocast_dtype(x.device.type)  # so backward sees one dtype too
            x, w, b = x.to(dtype), w.to(dtype), (b.to(dtype) if b is not None else None)
        x = ConvAsMatmul.apply(x, w, b, self.conv.stride[0])  # [B,T,C]
        if isinstance(self.norm, nn.GroupNorm):  # one group per channel: each channel over T
            x = _group_norm(x, self.norm, valid, time_dim=1)
        elif self.norm is not None:
            x = self.norm(x)  # LayerNorm over C
        return F.gelu(x)

    def _leave_autocast(self, x: torch.Tensor) -> bool:
        return not self.cpu_autocast and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


class FeatureEncoder(nn.Module):
    """Waveform [B,S] -> features [B,C,T] (a channels-first view of channels-last frames in training).

    Args:
        conv_dim, conv_kernel, conv_stride: per block (fairseq conv_feature_layers).
        conv_bias: bias in the convs (fairseq conv_bias; True for LARGE).
        norm: "group" (BASE) or "layer" (LARGE), fairseq extractor_mode default / layer_norm.

    Under CPU autocast (bf16 training or inference) the first block stays fp32: its product has
    only k=10 input values per output (1 channel), too few for bf16 GEMM kernels to pay for the
    conversions, its output is the largest activation of the model (C x S/5), and BASE's group
    norm takes statistics over thousands of frames of it. The other blocks run in bf16.
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
            blocks.append(ConvBlock(in_channels, c, k, s, conv_bias, block_norm, cpu_autocast=i > 0))
            in_channels = c
        self.blocks = nn.ModuleList(blocks)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """wav [B,S] -> [B,C,T] with T = output_lengths(S).

        lengths [B] (samples), optional: with group norm, normalise over each row's valid frames
        only, so a zero-padded row gets the features it would get alone. Without it (the
        default, as in fairseq and Hugging Face) the statistics include the padding.
        """
        if wav.dim() != 2:
            raise ValueError(f"expected a waveform batch [B,S], got shape {tuple(wav.shape)}")
        valid = lengths
        # training on a CPU: the matmul form's backward is ~1.1-1.6x faster there (docs/benchmarks.md);
        # it was never measured on CUDA, so a GPU runs PyTorch's convolution (cuDNN)
        grad = torch.is_grad_enabled() and wav.device.type == "cpu"
        x = wav[:, :, None] if grad else wav[:, None, :]  # [B,S,1] or [B,1,S]
        for block, k, s in zip(self.blocks, self.conv_kernel, self.conv_stride):
            if valid is not None:
                valid = _conv_output_lengths(valid, k, s)
            norm_valid = valid if isinstance(block.norm, nn.GroupNorm) else None
            x = block.forward_matmul(x, norm_valid) if grad else block(x, norm_valid)
        return x.transpose(1, 2) if grad else x  # [B,C,T]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced from `lengths` samples: floor((L - k) / s) + 1 per block, clamped at 0."""
        for k, s in zip(self.conv_kernel, self.conv_stride):
            lengths = _conv_output_lengths(lengths, k, s)
        return lengths
