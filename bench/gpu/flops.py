"""FLOPs of a wav2vec 2.0 training step, and model FLOPs utilisation (MFU) against a GPU's peak.

Counted: every matrix product and convolution of the model, 2 FLOPs per multiply-add. Norms,
activations, softmax, masking and the optimizer are left out (a few % of the total, and not
matrix-unit work). For one utterance of S samples, with T_i frames after conv block i
(T_i = floor((T_{i-1} - k_i) / s_i) + 1, T_{-1} = S) and T = T_6 Transformer frames:

    conv block i           2 * T_i * C_i * C_{i-1} * k_i        (C_{-1} = 1: the waveform)
    feature projection     2 * T * C * D
    positional conv        2 * T' * D * (D / groups) * K_pos          (T' = T + 1 for an even kernel: its
                                                                padding makes one frame more, trimmed)
    each Transformer layer 2 * T * D * D * 4                    (Q, K, V, output projections)
                         + 2 * T * T * D * 2                    (scores Q K^T, weights x V)
                         + 2 * T * D * F * 2                    (FFN in and out)
    pretraining head       2 * T * C * G*V                      (quantizer logits)
                         + 2 * T * V * d                        (codeword choice: one-hot [G,V] x [G,V,d/G])
                         + 2 * T * d * P + 2 * T * D * P        (project_q, project_hid)
                         + 2 * T * (1+K) * P                    (cosine logits: target + K distractors)
    CTC head               2 * T * D * vocab

(C conv channels, D model dim, F FFN dim, G codebooks, V codewords, d codeword dim, P
contrastive dim, K distractors.) w2v computes the contrastive logits for every frame, masked or
not, so all T count. Training: forward + backward = 3 x forward (the backward pass computes the
gradient of each product with respect to its input and its weight, 2 x the forward's FLOPs).
The only parts without a backward are those that get no gradient: fine-tuning's frozen feature
encoder (forward only, 1 x); in pretraining block 0's gradient with respect to the waveform is
not needed either, which this count ignores (0.07% of BASE's step). tests/test_bench_gpu.py
checks the forward count against torch's own FLOP counter on a real forward pass.

MFU = model FLOPs per second / the GPU's dense bf16 peak (the vendor's datasheet figure,
without sparsity), as PaLM (Chowdhery et al. 2022, appendix B) defines it.
"""

from __future__ import annotations

from dataclasses import dataclass

from w2vcli.model.config import ModelConfig

# dense bf16 tensor-core peak, TFLOP/s, by vendor datasheet (no sparsity); the first name that
# occurs in torch.cuda.get_device_name() wins, so the more specific names come first
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.0),
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # SXM
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
]


def peak_bf16_tflops(device_name: str) -> float | None:
    """The datasheet bf16 dense peak of a GPU by its name, or None for an unknown device."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def conv_frames(config: ModelConfig, samples: int) -> list[int]:
    """Frames after each conv block for `samples` input samples: [T_0, ..., T_6]."""
    out, n = [], samples
    for k, s in zip(config.conv_kernel, config.conv_stride):
        n = max(0, (n - k) // s + 1)
        out.append(n)
    return out


@dataclass(frozen=True)
class ForwardFlops:
    """Forward-pass FLOPs of one utterance, by part (see the module docstring)."""

    feature_encoder: float
    projection_and_pos_conv: float
    transformer: float
    head: float  # pretraining head, or the CTC output layer

    @property
    def total(self) -> float:
        return self.feature_encoder + self.projection_and_pos_conv + self.transformer + self.head


def forward_flops(config: ModelConfig, samples: int, head: str = "pretrain", vocab: int = 32) -> ForwardFlops:
    """FLOPs of one forward pass over one utterance of `samples` samples. head: "pretrain" | "ctc"."""
    frames = conv_frames(config, samples)
    T = frames[-1]
    C, D, F = config.conv_dim[-1], config.hidden_size, config.ffn_dim
    conv = 0.0
    c_in = 1
    for t, c, k in zip(frames, config.conv_dim, config.conv_kernel):
        conv += 2.0 * t * c * c_in * k
        c_in = c
    pos_frames = T + 1 - config.pos_conv_kernel % 2
    proj = 2.0 * T * C * D + 2.0 * pos_frames * D * (D // config.pos_conv_groups) * config.pos_conv_kernel
    layer = 2.0 * T * D * D * 4 + 2.0 * T * T * D * 2 + 2.0 * T * D * F * 2
    if head == "pretrain":
        GV, d, P = config.num_codebooks * config.codebook_size, config.codevector_dim, config.proj_dim
        K = config.num_negatives + config.cross_sample_negatives
        out = 2.0 * T * (C * GV + config.codebook_size * d + d * P + D * P + (1 + K) * P)
    elif head == "ctc":
        out = 2.0 * T * D * vocab
    else:
        raise ValueError(f"head must be 'pretrain' or 'ctc', got {head!r}")
    return ForwardFlops(conv, proj, layer * config.num_layers, out)


def train_step_flops(config: ModelConfig, samples: int, head: str = "pretrain", vocab: int = 32,
                     frozen_feature_encoder: bool = False) -> float:  # fmt: skip
    """FLOPs of one training step (forward + backward) over one utterance: 3 x forward, the
    feature encoder 1 x when it is frozen (fine-tuning)."""
    f = forward_flops(config, samples, head, vocab)
    conv = f.feature_encoder * (1 if frozen_feature_encoder else 3)
    return conv + 3 * (f.projection_and_pos_conv + f.transformer + f.head)


def mfu(flops_per_s: float, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1], or None without a peak."""
    if not peak_tflops:
        return None
    return flops_per_s / (peak_tflops * 1e12)
