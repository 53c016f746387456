"""Fine-tuning's --reinit-layers: the top Transformer layers of --init start afresh, the rest is kept."""

import pytest
import torch

from w2vcli.errors import W2VError
from w2vcli.model.config import get_preset
from w2vcli.model.wav2vec2 import Wav2Vec2ForPreTraining
from w2vcli.text import Vocabulary
from w2vcli.train.config import FinetuneConfig
from w2vcli.train.tasks import build_ctc_model


def _pretrained() -> Wav2Vec2ForPreTraining:
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(get_preset("tiny").replace(layer_norm_first=True))
    with torch.no_grad():  # weights a fresh init would never give, as after pretraining
        for p in model.parameters():
            p.mul_(3.0).add_(0.5)
    return model


@pytest.mark.parametrize("n", [0, 1, 2])
def test_reinit_layers_replaces_only_the_top_layers(n):
    pt = _pretrained()
    cfg = FinetuneConfig(init="pt.pt", train="t.jsonl", out="o", reinit_layers=n)
    model = build_ctc_model(cfg, Vocabulary.letters_from_texts(["ABC"]), pretrained=pt, quiet=True)
    enc, src = model.wav2vec2.encoder, pt.wav2vec2.encoder
    L = len(enc.layers)
    assert L == 2
    for i in range(L):
        same = all(torch.equal(a, b) for a, b in zip(enc.layers[i].state_dict().values(),
                                                       src.layers[i].state_dict().values()))
        assert same == (i < L - n), i
        if i >= L - n:  # as built: BERT-style linear init, LayerNorms at 1 and 0
            assert abs(float(enc.layers[i].ffn.fc1.weight.detach().std()) - 0.02) < 0.003
            assert torch.equal(enc.layers[i].attn_norm.weight, torch.ones_like(enc.layers[i].attn_norm.weight))
    assert torch.equal(enc.layer_norm.weight, src.layer_norm.weight) == (n == 0)  # pre-LN: the norm after the top
    for a, b in zip(model.wav2vec2.feature_encoder.parameters(), pt.wav2vec2.feature_encoder.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(enc.pos_conv.weight_v, src.pos_conv.weight_v)


def test_reinit_layers_beyond_the_network_is_refused():
    cfg = FinetuneConfig(init="pt.pt", train="t.jsonl", out="o", reinit_layers=3)
    with pytest.raises(W2VError, match="only 2 Transformer layers"):
        build_ctc_model(cfg, Vocabulary.letters_from_texts(["ABC"]), pretrained=_pretrained(), quiet=True)
