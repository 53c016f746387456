"""Output units for fine-tuning: letters from the transcripts, or sentencepiece units.

    --vocab letters        specials + `|` + the letters of the training transcripts
    --vocab PATH.model     the pieces of a sentencepiece model (word starts marked "▁")
    --vocab PATH.json      a fixed vocab.json / fairseq dict.ltr.txt (letters)
    --train-spm N          train an N-unit sentencepiece model on the training transcripts
                           (written to OUT/spm.model) and use it
"""

from __future__ import annotations

from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.text import SPECIALS, Vocabulary


def _texts(rows: list[dict], name: str) -> list[str]:
    missing = [r["id"] for r in rows if not r.get("text")]
    if len(missing) == len(rows):
        raise W2VError(f"{name}: no transcripts (field text): fine-tuning needs labelled audio")
    return [r.get("text", "") for r in rows]


def build_vocab(cfg, rows: list[dict]):
    """(Vocabulary, sentencepiece processor or None) for a FinetuneConfig and its training rows."""
    texts = _texts(rows, cfg.train)
    if cfg.train_spm:
        trained = Path(cfg.out) / "spm.model"
        if cfg.resume and trained.is_file():  # the one this run trained before
            return _spm_vocab(trained)
        return _spm_vocab(train_spm(texts, cfg.train_spm, trained))
    if cfg.vocab == "letters":
        return Vocabulary.letters_from_texts(texts), None
    path = Path(cfg.vocab)
    if path.suffix == ".model":
        return _spm_vocab(path)
    return Vocabulary.load(path), None


def _spm_vocab(path: Path):
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise W2VError(f"--vocab {path}: not a sentencepiece model ({exc})") from None
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    return Vocabulary(list(SPECIALS) + [p for p in pieces if p not in SPECIALS], word_boundary=None), sp


def train_spm(texts: list[str], size: int, out: Path) -> Path:
    """Train a unigram sentencepiece model on `texts`; written to `out` (and `out`.vocab)."""
    import io

    import sentencepiece as spm

    out.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(t for t in texts if t), model_writer=model,
                                       vocab_size=size, model_type="unigram", character_coverage=1.0,
                                       bos_id=-1, eos_id=-1, minloglevel=2)
    except RuntimeError as exc:
        raise W2VError(f"--train-spm {size}: {str(exc).strip().splitlines()[-1]}") from None
    from w2vcli.utils import atomic_open

    with atomic_open(out, "wb") as f:
        f.write(model.getvalue())
    return out


def encode_targets(rows: list[dict], vocab: Vocabulary, sp) -> list[list[int]]:
    """Token ids of each row's transcript (letters via the vocabulary, else sentencepiece pieces)."""
    if sp is None:
        return [vocab.encode(r.get("text", "")) for r in rows]
    return [[vocab.index.get(p, vocab.unk) for p in sp.encode(r.get("text", ""), out_type=str)] for r in rows]
