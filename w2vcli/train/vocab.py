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
from w2vcli.text import ENGLISH, RULES_FILE, SPECIALS, TextRules, Vocabulary
from w2vcli.utils import log, warn


def resolve_text_rules(cfg, init_rules: TextRules | None = None) -> TextRules:
    """The text rules of a fine-tuning run: `--text-rules FILE`, else the `text_rules.json` that
    `w2v prepare` wrote beside the training manifest, else those of the CTC model it continues
    (`init_rules`), else LibriSpeech's (said in a log line)."""
    if cfg.text_rules:
        return TextRules.load(cfg.text_rules)
    found = TextRules.beside(cfg.train)
    if found is not None:
        return found
    if init_rules is not None:
        log(f"no {RULES_FILE} beside {cfg.train}: using the text rules of --init {cfg.init}")
        return init_rules
    log(f"no {RULES_FILE} beside {cfg.train}: transcripts are normalised with the default rules "
        f"(case={ENGLISH.case}, keep={ENGLISH.keep!r}, digits={ENGLISH.digits}); see docs/languages.md")
    return ENGLISH


def normalize_rows(rows: list[dict], rules: TextRules) -> list[dict]:
    """Rows with their transcripts normalised by `rules` (idempotent on prepared manifests)."""
    return [{**r, "text": rules.normalize(r["text"])} if r.get("text") else r for r in rows]


def _texts(rows: list[dict], name: str) -> list[str]:
    missing = [r["id"] for r in rows if not r.get("text")]
    if len(missing) == len(rows):
        raise W2VError(f"{name}: no transcripts (field text): fine-tuning needs labelled audio")
    return [r.get("text", "") for r in rows]


def build_vocab(cfg, rows: list[dict], rules: TextRules = ENGLISH):
    """(Vocabulary, sentencepiece processor or None) for a FinetuneConfig and its (normalised) training rows."""
    texts = _texts(rows, cfg.train)
    if cfg.train_spm:
        trained = Path(cfg.out) / "spm.model"
        if cfg.resume and trained.is_file():  # the one this run trained before
            return _spm_vocab(trained)
        return _spm_vocab(train_spm(texts, cfg.train_spm, trained))
    if cfg.vocab == "letters":
        return Vocabulary.letters_from_texts(texts, rules), None
    path = Path(cfg.vocab)
    if path.suffix == ".model":
        return _spm_vocab(path)
    vocab = Vocabulary.load(path)
    missing = vocab.unknown(texts)
    if missing:
        shown = ", ".join(f"{c!r} ({n})" for c, n in missing.most_common(10))
        warn(f"--vocab {path}: {len(missing)} character(s) of the training transcripts are not in it and "
             f"train as <unk>: {shown}")
    return vocab, None


def _spm_vocab(path: Path):
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise W2VError(f"--vocab {path}: not a sentencepiece model ({exc})") from None
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    return Vocabulary(list(SPECIALS) + [p for p in pieces if p not in SPECIALS], pieces=True), sp


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
