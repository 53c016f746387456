"""Output units for fine-tuning: one vocabulary story, in this order.

    --vocab PATH.json      a fixed vocab.json / fairseq dict.ltr.txt (letters)
    --vocab PATH.model     the pieces of a sentencepiece model (word starts marked "▁")
    --train-spm N          train an N-unit sentencepiece model on the training transcripts
                           (written to OUT/spm.model) and use it
    --vocab letters        specials + `|` + the letters of the training transcripts
    (not given)            a CTC --init's own vocabulary when it holds every training letter (so
                           its head is kept whole), else the `vocab.json` that `w2v prepare` wrote
                           beside --train (the letters of every prepared subset: runs on 10 minutes
                           or 10 hours of one corpus share their units), else `letters`

A --vocab file, and prepare's vocab.json, must hold the training transcripts' characters: one
that leaves more than MAX_UNKNOWN_SHARE of them unknown is refused with the likely cause.
"""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.text import ENGLISH, RULES_FILE, SPECIALS, TextRules, Vocabulary
from w2vcli.utils import atomic_open, log, warn


def resolve_text_rules(cfg, init_rules: TextRules | None = None) -> TextRules:
    """The text rules of a fine-tuning run: `--text-rules FILE`, else the `text_rules.json` that
    `w2v prepare` wrote beside the training manifest, else those of the CTC model it continues
    (`init_rules`), else LibriSpeech's (said in a log line)."""
    if cfg.text_rules:
        rules = TextRules.load(cfg.text_rules)
        log(f"text rules: {cfg.text_rules} (case {rules.case})")
        return rules
    found = TextRules.beside(cfg.train)
    if found is not None:
        log(f"text rules: {Path(cfg.train).parent / RULES_FILE} (case {found.case}), beside --train")
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


def build_vocab(cfg, rows: list[dict], rules: TextRules = ENGLISH, init_vocab: Vocabulary | None = None):
    """(Vocabulary, sentencepiece processor or None) for a FinetuneConfig and its (normalised)
    training rows, by the module docstring's order. `init_vocab`: the vocabulary of a CTC --init.
    A resumed run reads the list it saved (OUT/vocab.json)."""
    texts = _texts(rows, cfg.train)
    if cfg.train_spm:
        trained = Path(cfg.out) / "spm.model"
        if cfg.resume and trained.is_file():  # the one this run trained before
            return _spm_vocab(trained)
        return _spm_vocab(train_spm(texts, cfg.train_spm, trained))
    if cfg.vocab in ("", "letters"):
        saved = Path(cfg.out) / "vocab.json"
        if cfg.resume and (Path(cfg.out) / "last.pt").is_file() and saved.is_file():
            return Vocabulary.load(saved), None
        own = Vocabulary.letters_from_texts(texts, rules)
        if cfg.vocab == "letters":
            return own, None
        if (init_vocab is not None and init_vocab.units == own.units
                and all(t in init_vocab.index for t in own.tokens)):
            return init_vocab, None
        prepared = Path(cfg.train).parent / "vocab.json"
        if not prepared.is_file():
            return own, None
        vocab = Vocabulary.load(prepared)
        check_coverage(vocab, texts, rules, f"{prepared} (beside --train)")
        log(f"units: {prepared}, written by `w2v prepare` ({len(vocab)} tokens; --vocab letters for the "
            "training transcripts' own)")
        return vocab, None
    path = Path(cfg.vocab)
    if path.suffix == ".model":
        vocab, sp = _spm_vocab(path)
        chars = sorted({c for t in vocab.tokens[len(SPECIALS):] for c in t.replace("\u2581", "")})
        check_coverage(Vocabulary(list(SPECIALS) + chars, word_boundary=None, pieces=False), texts, rules,
                       f"--vocab {path}")  # the characters its pieces are made of
        return vocab, sp
    vocab = Vocabulary.load(path)
    check_coverage(vocab, texts, rules, f"--vocab {path}")
    return vocab, None


MAX_UNKNOWN_SHARE = 0.02  # of the training transcripts' characters: more than this refuses a vocabulary


def check_coverage(vocab: Vocabulary, texts: list[str], rules: TextRules, where: str) -> None:
    """Refuse a character vocabulary that leaves more than MAX_UNKNOWN_SHARE of the (normalised)
    training characters unknown, naming the likely cause (case, normal form, script) and the
    option that fixes it; warn about a smaller share, which trains as <unk>."""
    missing = vocab.unknown(texts)
    if not missing:
        return
    total = sum(len("".join(t.split())) for t in texts)
    unknown = sum(missing.values())
    shown = ", ".join(f"{c!r} ({n})" for c, n in missing.most_common(10))
    if unknown <= MAX_UNKNOWN_SHARE * total:
        warn(f"{where}: {len(missing)} character(s) of the training transcripts are not in it and "
             f"train as <unk>: {shown}")
        return
    raise W2VError(f"{where} leaves {unknown} of the training transcripts' {total} characters unknown "
                   f"({unknown / total:.0%}: {shown}): {_likely_cause(vocab, missing, rules)}")


def _likely_cause(vocab: Vocabulary, missing, rules: TextRules) -> str:
    """Why a vocabulary misses a transcript's characters, and the option that fixes it."""
    def share(known) -> float:
        return sum(n for c, n in missing.items() if known(c)) / sum(missing.values())

    fix = "or --vocab letters to take the units from the training transcripts"
    for case, fold in (("upper", str.upper), ("lower", str.lower)):
        if case != rules.case and share(lambda c: fold(c) in vocab.index) > 0.5:
            return (f"the vocabulary is in {case} case and the text rules make the transcripts {rules.case} case; "
                    f'give --text-rules a text_rules.json with "case": "{case}", {fix}')
    if share(lambda c: all(d in vocab.index for d in unicodedata.normalize("NFD", c))) > 0.5:
        return ("the vocabulary holds decomposed letters (Unicode NFD: base letter + combining mark) and the "
                f"transcripts composed ones ({rules.form}); rebuild the vocabulary from NFC text, {fix}")
    if rules.form == "NFKC" and any(unicodedata.normalize("NFKC", t) != t for t in vocab.tokens if len(t) == 1):
        return ('the vocabulary holds compatibility characters that the text rules\' NFKC form replaces; give '
                f'--text-rules a text_rules.json with "form": "NFC", {fix}')
    ours, theirs = _scripts(missing), _scripts(t for t in vocab.tokens if len(t) == 1)
    if ours and not ours & theirs:
        return (f"the transcripts are written in {', '.join(sorted(ours))} letters and the vocabulary in "
                f"{', '.join(sorted(theirs)) or 'none'}: it belongs to another language; give a vocabulary "
                f"for this one, {fix}")
    return f"give a vocabulary made for these transcripts ({RULES_FILE} decides their case and form), {fix}"


def _scripts(chars) -> set[str]:
    """The scripts (first word of the Unicode name: LATIN, CYRILLIC, CJK, ...) of the letters among `chars`."""
    return {unicodedata.name(c, "?").split()[0] for c in chars if unicodedata.category(c)[0] == "L"}


def _spm_vocab(path: Path):
    # lazy: sentencepiece only for --units pieces
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
    # lazy: sentencepiece only for --units pieces
    import sentencepiece as spm

    out.parent.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(t for t in texts if t), model_writer=model,
                                       vocab_size=size, model_type="unigram", character_coverage=1.0,
                                       bos_id=-1, eos_id=-1, minloglevel=2)
    except RuntimeError as exc:
        raise W2VError(f"--train-spm {size}: {str(exc).strip().splitlines()[-1]}") from None

    with atomic_open(out, "wb") as f:
        f.write(model.getvalue())
    return out


def encode_targets(rows: list[dict], vocab: Vocabulary, sp) -> list[list[int]]:
    """Token ids of each row's transcript (letters via the vocabulary, else sentencepiece pieces)."""
    if sp is None:
        return [vocab.encode(r.get("text", "")) for r in rows]
    return [[vocab.index.get(p, vocab.unk) for p in sp.encode(r.get("text", ""), out_type=str)] for r in rows]
