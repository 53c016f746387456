"""Unit tests of the model package: shapes, masking, distractors, losses, checkpoints, security."""

from __future__ import annotations

import torch

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
