"""`finetune --init` of a CTC model keeps its trained head row by row, and a vocabulary that
leaves the training transcripts' characters unknown is refused with its likely cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_data import make_corpus, render
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.errors import W2VError
from w2vcli.model import get_preset
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC
from w2vcli.text import TextRules, Vocabulary
from w2vcli.train.config import FinetuneConfig
from w2vcli.train.tasks import build_ctc_model
from w2vcli.train.vocab import build_vocab

TINY = ["--preset", "tiny", "--max-tokens", "64000", "--num-workers", "0", "--seed", "3"]
LETTERS = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C", "D", "E"]


def ctc_model(tokens: list[str]) -> Wav2Vec2ForCTC:
    """A tiny CTC model whose head is far from a fresh one (so its greedy output means something)."""
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(get_preset("tiny"), Vocabulary.with_boundary(tokens))
    with torch.no_grad():
        model.head.weight.mul_(20)
        model.head.bias.copy_(torch.linspace(-1, 1, len(tokens)))
    return model.eval()


def greedy(model: Wav2Vec2ForCTC, wav: np.ndarray) -> str:
    from w2vcli.decode.ctc import GreedyDecoder

    with torch.no_grad():
        logits, _ = model(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    return GreedyDecoder(model.vocab).decode(logits[0].numpy()).text


def ctc_cfg(**kw) -> FinetuneConfig:
    return FinetuneConfig(**{"train": "no-such-dir/t.jsonl", "out": "o", "init": "ckpt.pt", **kw})


def test_reordered_vocabulary_keeps_every_row_and_the_transcripts(tmp_path, capsys):
    old = ctc_model(LETTERS)
    reordered = LETTERS[:4] + ["E", "D", "|", "C", "B", "A"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(reordered)}))
    vocab = Vocabulary.load(tmp_path / "vocab.json")
    new = build_ctc_model(ctc_cfg(vocab=str(tmp_path / "vocab.json")), vocab, pretrained=old).eval()
    assert "kept the checkpoint's head (10 units, rows reordered" in capsys.readouterr().err
    wav = render("ABC DE", np.random.default_rng(0))
    said = greedy(old, wav)
    assert said and greedy(new, wav) == said  # update 0 transcribes as the checkpoint did
    for i, t in enumerate(reordered):
        assert torch.equal(new.head.weight[i], old.head.weight[LETTERS.index(t)])


def test_extended_vocabulary_maps_shared_rows_and_says_how_many_are_new(capsys):
    old = ctc_model(LETTERS)
    vocab = Vocabulary.with_boundary(LETTERS + ["F", "G"])
    new = build_ctc_model(ctc_cfg(), vocab, pretrained=old)
    assert "mapped 10 of 12 head rows from the checkpoint's 10, 2 new" in capsys.readouterr().err
    assert torch.equal(new.head.weight[:10], old.head.weight)
    assert not torch.equal(new.head.weight[10:], old.head.weight[:2])


def test_other_units_get_a_new_head_and_a_case_mismatch_is_named(capsys):
    old = ctc_model(LETTERS)
    build_ctc_model(ctc_cfg(), Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "中", "文"], word_boundary=None, pieces=False), pretrained=old)
    assert "new head: 6 units (chars), none shared with the checkpoint's 10 letters" in capsys.readouterr().err
    lower = Vocabulary.with_boundary(LETTERS[:5] + ["a", "b", "c", "d", "e"])
    build_ctc_model(ctc_cfg(), lower, pretrained=old)
    err = capsys.readouterr().err
    assert "mapped 5 of 10 head rows from the checkpoint's 10, 5 new (its units are upper case" in err
    assert '"case": "upper"' in err


def test_one_vocabulary_story(tmp_path):
    """No --vocab: a CTC --init's own units when they cover the transcripts, else prepare's vocab.json
    beside --train, else the transcripts' letters; `--vocab letters` always the transcripts' letters."""
    old = ctc_model(LETTERS)
    rows = [{"id": "1", "text": "EEE DD C"}, {"id": "2", "text": "EE D"}]  # another frequency order
    cfg = ctc_cfg(train=str(tmp_path / "train.jsonl"))
    assert build_vocab(cfg, rows, TextRules(), old.vocab)[0].tokens == LETTERS
    with_f = rows + [{"id": "3", "text": "F"}]
    own = build_vocab(cfg, with_f, TextRules(), old.vocab)[0].tokens
    assert "F" in own and "A" not in own  # the transcripts' own letters
    prepared = Vocabulary.with_boundary(LETTERS + ["F", "V"])
    prepared.save(tmp_path / "vocab.json")
    assert build_vocab(cfg, with_f, TextRules(), old.vocab)[0].tokens == prepared.tokens
    assert build_vocab(cfg, rows, TextRules(), None)[0].tokens == prepared.tokens
    assert build_vocab(ctc_cfg(train=cfg.train, vocab="letters"), rows, TextRules(), old.vocab)[0].tokens == \
        Vocabulary.letters_from_texts([r["text"] for r in rows]).tokens


def test_continuing_a_fine_tuned_model_keeps_its_head(tmp_path):
    """The issue's run: continue one's own model on part of its data, whose letters come in another order."""
    train = make_corpus(tmp_path, "train", 8, seed=0)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(line + "\n" for line in train.read_text().splitlines()[:3]))
    runner = CliRunner()
    first = runner.invoke(app, ["finetune", "--from-scratch", "--train", str(train), "--out", str(tmp_path / "a"),
                                *TINY, "--max-updates", "2"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["finetune", "--init", str(tmp_path / "a" / "last.pt"), "--train", str(part),
                                "--out", str(tmp_path / "b"), *TINY, "--max-updates", "1", "--lr", "1e-12"])
    assert again.exit_code == 0, again.output
    assert "kept the checkpoint's head (" in again.output
    # the one line before training: size, where it starts, units, audio per update, updates
    summary = next(line for line in again.output.splitlines() if line.startswith("finetune: "))
    assert "k parameters (2 layers" in summary and f"from {tmp_path / 'a' / 'last.pt'}" in summary
    assert "units (letters)" in summary and "4 s of audio per update" in summary and "1 updates" in summary
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("a", "b"))
    assert a["vocab"] == b["vocab"]
    assert torch.allclose(a["model"]["head.weight"], b["model"]["head.weight"], atol=1e-6)


# --- vocabulary coverage -----------------------------------------------------------------------


def test_a_vocabulary_in_the_wrong_case_is_refused_naming_the_fix(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(LETTERS)}))
    rows = [{"id": "1", "text": "abc de"}]
    with pytest.raises(W2VError, match=r'upper case and the text rules make the transcripts lower case.*"case": "upper"'):
        build_vocab(ctc_cfg(vocab=str(tmp_path / "vocab.json")), rows, TextRules(case="lower"))


def test_a_vocabulary_of_another_script_is_refused_naming_it(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(LETTERS)}))
    rows = [{"id": "1", "text": "привет мир"}]
    with pytest.raises(W2VError, match="CYRILLIC letters and the vocabulary in LATIN.*--vocab letters"):
        build_vocab(ctc_cfg(vocab=str(tmp_path / "vocab.json")), rows, TextRules(case="lower"))


def test_decomposed_vocabulary_is_refused_naming_the_normal_form(tmp_path):
    tokens = LETTERS[:4] + ["|", "a", "e", "\u0301"]  # é spelt e + combining acute
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    with pytest.raises(W2VError, match="decomposed letters"):
        build_vocab(ctc_cfg(vocab=str(tmp_path / "vocab.json")), [{"id": "1", "text": "é é a"}], TextRules(case="lower"))


def test_a_small_share_of_unknown_characters_only_warns(tmp_path, capsys):
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(LETTERS)}))
    rows = [{"id": "1", "text": "ABCDE " * 20 + "F"}]
    vocab, _ = build_vocab(ctc_cfg(vocab=str(tmp_path / "vocab.json")), rows, TextRules())
    assert vocab.tokens == LETTERS and "1 character(s) of the training transcripts are not in it" in capsys.readouterr().err


def test_a_sentencepiece_model_of_the_other_case_is_refused(tmp_path):
    from w2vcli.train.vocab import train_spm

    texts = ["the white whale swam", "a whale and a ship", "the ship sails on"] * 20
    train_spm([t.upper() for t in texts], 20, tmp_path / "upper.model")
    rows = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    with pytest.raises(W2VError, match="upper case and the text rules make the transcripts lower case"):
        build_vocab(ctc_cfg(vocab=str(tmp_path / "upper.model")), rows, TextRules(case="lower"))
    train_spm(texts, 20, tmp_path / "lower.model")
    vocab, sp = build_vocab(ctc_cfg(vocab=str(tmp_path / "lower.model")), rows, TextRules(case="lower"))
    assert sp is not None and vocab.pieces
