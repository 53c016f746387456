"""The context network: feature projection, convolutional positional embedding, Transformer.

Paper §2: the conv features are layer-normed and projected to the model dim D, a grouped
convolution (kernel 128, 16 groups, weight norm, GELU) adds relative positional information,
then a Transformer of post-LN blocks (BASE) or pre-LN blocks (LARGE) with LayerDrop.

Padding: `lengths[B]` (frames) travel beside `x[B,T,D]`; padded frames are zeroed before the
positional convolution and masked out as attention keys (queries at padded frames still get
outputs; ignore them). Attention runs through `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from w2vcli.model.masking import padding_mask


class FeatureProjection(nn.Module):
    """LayerNorm over C -> Linear C->D -> dropout.  Returns (projected [B,T,D], normed features [B,T,C]).

    The normed features are what the quantizer turns into targets (fairseq `unmasked_features`).
    """

    def __init__(self, in_dim: int, dim: int, dropout: float, eps: float = 1e-5):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=eps)
        self.projection = nn.Linear(in_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(features)  # [B,T,C]
        return self.dropout(self.projection(normed)), normed


class BF16PosConv(torch.autograd.Function):
    """`F.conv1d(x, weight, bias, padding, groups=groups)` in bf16 on a CPU, its forward computed as
    a 2-D convolution over [B,D,T,1] with a [K,1] kernel: the same sums, another oneDNN kernel.

    torch 2.13's oneDNN (3.12) computes the bf16 1-D forward wrongly on AMX CPUs (Sapphire Rapids
    and later) when a group has fewer than 16 input channels and the kernel is long: for
    (channels per group, K) in {2,4,8,12} x {8..128} the output is unrelated to the fp32 one
    (relative error 1.0-1.2 instead of bf16's 0.003), e.g. the tiny (8 per group, K=16) and small
    (12, K=64) presets' positional conv; BASE (48) and LARGE (64) are right. The [K,1] forward
    is right on every shape tried (600) and as fast (BASE's pos conv, 1 x 1500 frames: 43 ms
    against 49); its backward is 3-5x slower than the 1-D one, which is right on every shape,
    so backward is the 1-D convolution's. With oneDNN limited to AVX-512
    (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, no AMX) both forms are right.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int, groups: int):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups, ctx.has_bias = padding, groups, bias is not None
        return F.conv2d(x[..., None], weight[..., None], bias, padding=(padding, 0), groups=groups)[..., 0]

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad.contiguous(), x, weight, bias_sizes, [1], [ctx.padding], [1], False, [0], ctx.groups, mask
        )
        return grad_x, grad_w, grad_b, None, None


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time with weight norm (over the kernel axis) and GELU: [B,T,D] -> [B,T,D].

    The weight is `weight_g * weight_v / ||weight_v||`, the norm taken over the in/out channel axes
    for each kernel tap (PyTorch's weight_norm with dim=2, as fairseq and HF use). An even kernel
    with padding K//2 produces one extra frame, which is trimmed from the end.
    """

    def __init__(self, dim: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        self.kernel_size, self.groups = kernel_size, groups
        self.weight_v = nn.Parameter(torch.empty(dim, dim // groups, kernel_size))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(dim))
        # fairseq's init: normal with std sqrt(4 / (K * D)), g initialised to ||v||
        nn.init.normal_(self.weight_v, mean=0.0, std=(4.0 / (kernel_size * dim)) ** 0.5)
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def weight(self) -> torch.Tensor:
        if torch.compiler.is_exporting():  # plain ops for ONNX
            return self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        # the fused kernel behind nn.utils.weight_norm: on BASE's 768x48x128 weight (CPU, two threads)
        # forward + backward take 6 ms where the three broadcast ops above take 56
        return torch._weight_norm(self.weight_v, self.weight_g, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight, bias = x.transpose(1, 2), self.weight(), self.bias  # [B,D,T]
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if x.device.type == "cpu" and dtype == torch.bfloat16 and not torch.compiler.is_exporting():
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)  # autocast's casts (a Function is not autocast)
            y = BF16PosConv.apply(x, weight, bias, self.kernel_size // 2, self.groups)
        else:
            y = F.conv1d(x, weight, bias, padding=self.kernel_size // 2, groups=self.groups)
        if self.kernel_size % 2 == 0:
            y = y[:, :, :-1]  # [B,D,T]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention through SDPA.  x [B,T,D], attn_mask [B,1,1,T] bool (True = attend)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        H = self.num_heads
        # 'b t (h d) -> b h t d'
        q = self.q_proj(x).view(B, T, H, D // H).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H, D // H).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, D // H).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))  # 'b h t d -> b t (h d)'


class FeedForward(nn.Module):
    """Linear D->F -> GELU -> dropout -> Linear F->D -> dropout."""

    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))


class PostLNLayer(nn.Module):
    """BASE block: x = LN(x + Drop(Attn(x))); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, eps: float = 1e-5):  # fmt: skip
        super().__init__()
        self.attention = SelfAttention(dim, num_heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, ffn_dim, activation_dropout, dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attention(x, attn_mask)))
        return self.ffn_norm(x + self.ffn(x))


class PreLNLayer(PostLNLayer):
    """LARGE ("stable") block: x = x + Drop(Attn(LN(x))); x = x + FFN(LN(x))."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attn_norm(x), attn_mask))
        return x + self.ffn(self.ffn_norm(x))


def init_block(block: nn.Module) -> None:
    """A block's weights as built: BERT-style linear layers (fairseq's init_bert_params), LayerNorms at 1 and 0."""
    for module in block.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            module.reset_parameters()  # draws no random numbers: construction is unchanged


class TransformerEncoder(nn.Module):
    """Positional conv embedding + a stack of post-LN (BASE) or pre-LN (LARGE) blocks.

    Post-LN applies the encoder LayerNorm after adding positions (before the blocks); pre-LN
    applies it after the last block (fairseq layer_norm_first / HF do_stable_layer_norm).

    `checkpoint_layers` (training's --checkpoint-activations): with gradients on, each block
    keeps only its input for backward and runs its forward again there (torch.utils.checkpoint,
    non-reentrant, the random state restored so dropout draws the same masks). The result and
    the gradients are the same; activation memory drops from all blocks' intermediates
    (attention probabilities [B,H,T,T], FFN [B,T,F], ...) to one [B,T,D] per block, for about
    one more forward pass of compute.
    """

    checkpoint_layers: bool = False

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        layer_norm_first: bool = False,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_drop: float = 0.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.layer_norm_first, self.layer_drop = layer_norm_first, layer_drop
        self.pos_conv = PositionalConvEmbedding(dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        block = PreLNLayer if layer_norm_first else PostLNLayer
        self.layers = nn.ModuleList(
            block(dim, num_heads, ffn_dim, dropout, attention_dropout, activation_dropout, eps) for _ in range(num_layers)
        )
        for layer in self.layers:
            init_block(layer)

    def reinit_top(self, n: int) -> None:
        """Initialise the top `n` blocks afresh (and, pre-LN, the LayerNorm after them), as at
        construction: fine-tuning's --reinit-layers (the top layers of a pretrained network serve
        its pretraining task; Pasad et al. 2021, "Layer-wise analysis of a self-supervised speech
        representation model")."""
        for layer in self.layers[len(self.layers) - n:]:
            init_block(layer)
        if n > 0 and self.layer_norm_first:
            self.layer_norm.reset_parameters()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,T,D], lengths [B] frames (None = no padding) -> [B,T,D]."""
        attn_mask = None
        if lengths is not None:
            valid = padding_mask(lengths, x.shape[1])  # [B,T]
            x = x.masked_fill(~valid[:, :, None], 0.0)  # padded frames must not leak through the conv
            attn_mask = valid[:, None, None, :]  # [B,1,1,T] keys
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        keep = [True] * len(self.layers)
        if self.training and self.layer_drop > 0:
            keep = (torch.rand(len(self.layers)) >= self.layer_drop).tolist()  # one draw per forward, on the CPU
        recompute = self.checkpoint_layers and torch.is_grad_enabled()
        for layer, k in zip(self.layers, keep):
            if k and recompute:
                x = checkpoint(layer, x, attn_mask, use_reentrant=False)
            elif k:
                x = layer(x, attn_mask)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x
