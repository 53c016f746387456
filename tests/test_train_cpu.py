"""Training on a CPU: bf16 autocast against fp32 on the same data, and activation checkpointing."""

from __future__ import annotations

import pytest
import torch
from train_data import make_corpus, read_metrics
from typer.testing import CliRunner

from w2vcli import cpu
from w2vcli.cli import app
from w2vcli.model import get_preset
from w2vcli.model.masking import sample_negatives, span_mask

TINY = ["--preset", "tiny", "--max-tokens", "64000", "--num-workers", "0", "--seed", "3", "--log-interval", "5"]
MAX_LOSS_GAP = 0.03  # stated bound: each logged bf16 training loss within 3% of fp32's at the same update


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("tones"), "train", 24, seed=0)


def w2v(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


# --- bf16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_bf16_loss_curve_tracks_fp32(corpus, tmp_path, monkeypatch, task):
    """The same data, seed and updates in fp32 and in bf16 (`--precision auto` on a CPU that
    auto resolves to bf16): the loss curves agree within MAX_LOSS_GAP at every logged update,
    while the loss itself falls by far more than that."""
    extra = ["--lr", "2e-3", "--warmup-updates", "5"] if task == "pretrain" else ["--from-scratch", "--lr", "5e-3"]
    monkeypatch.setenv(cpu.MODE_ENV, "bf16")  # what auto resolves to on a native-bf16 CPU
    curves = {}
    for precision in ("fp32", "auto"):
        out = tmp_path / precision
        w2v(task, "--train", corpus, "--out", out, *TINY, *extra, "--max-updates", 30, "--precision", precision)
        curves[precision] = [r["loss"] for r in read_metrics(out) if "loss" in r]
    fp32, bf16 = curves["fp32"], curves["auto"]
    assert len(fp32) == len(bf16) == 6
    assert fp32[-1] < 0.8 * fp32[0]  # learning happened: the bound is tight against it
    gaps = [abs(b - f) / f for f, b in zip(fp32, bf16)]
    print(task, [f"{g:.4f}" for g in gaps])
    assert max(gaps) < MAX_LOSS_GAP, (fp32, bf16)
    assert fp32 != bf16  # it really ran in bf16


# --- activation checkpointing -----------------------------------------------------------------------


def _pretrain_step(checkpointing: bool):
    from w2vcli.model import Wav2Vec2ForPreTraining

    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(get_preset("tiny").replace(feature_grad_mult=1.0, dropout=0.1)).train()
    model.wav2vec2.checkpoint_activations(checkpointing)
    g = torch.Generator().manual_seed(1)
    wav, lengths = torch.randn(3, 16000, generator=g), torch.tensor([16000, 12000, 9000])
    frames = model.wav2vec2.frame_lengths(lengths)
    mask = span_mask(frames, int(frames.max()), 0.5, 5, 1, generator=g)
    neg = sample_negatives(mask, 5, generator=g)
    saved, inside = [], [False]  # bytes kept for backward by the Transformer's forward

    def pack(t):
        if inside[0]:
            saved.append(t.numel() * t.element_size())
        return t

    encoder = model.wav2vec2.encoder
    encoder.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
    encoder.register_forward_hook(lambda *_: inside.__setitem__(0, False))
    torch.manual_seed(2)  # dropout draws
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(wav, lengths, mask, neg)
    out.loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads, sum(saved)


def test_checkpointed_layers_give_the_same_loss_and_gradients_with_less_saved():
    """Dropout on, layers recomputed in backward: the same loss and gradients (to fp32 rounding);
    the activations the Transformer keeps for backward (counted through autograd's saved-tensor
    hook) shrink to less than half: each block keeps its input only."""
    loss, grads, saved = _pretrain_step(False)
    loss_ck, grads_ck, saved_ck = _pretrain_step(True)
    torch.testing.assert_close(loss_ck, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == grads_ck.keys() and len(grads) > 20
    for k in grads:
        torch.testing.assert_close(grads_ck[k], grads[k], rtol=1e-5, atol=1e-6, msg=k)
    assert saved_ck < 0.5 * saved, (saved_ck, saved)


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_checkpoint_activations_option(corpus, tmp_path, task):
    from w2vcli.train.config import FinetuneConfig, PretrainConfig, read_toml, resolve
    from w2vcli.train.distributed import Dist
    from w2vcli.train.tasks import make_task

    out = tmp_path / task
    init = ["--from-scratch"] if task == "finetune" else []
    w2v(task, *init, "--train", corpus, "--out", out, *TINY, "--max-updates", 2, "--checkpoint-activations")
    cls = FinetuneConfig if task == "finetune" else PretrainConfig
    saved = read_toml(out / "config.toml", cls)
    assert saved["checkpoint_activations"] is True
    for on in (True, False):
        cfg = resolve(cls, "tiny", [{**saved, "checkpoint_activations": on, "resume": False}])
        assert make_task(cfg, Dist()).model.wav2vec2.encoder.checkpoint_layers is on
