"""`w2v lm build`: an n-gram language model from text with KenLM's `lmplz` and `build_binary`.

Text goes through the text rules of the training transcripts (`w2vcli.text.TextRules`, the
`text_rules.json` that `w2v prepare` wrote), so LM words and CTC output words are spelled
alike. The normalised sentences are streamed into `lmplz` (memory stays bounded by `-S`), the
ARPA file is converted with `build_binary` unless an ARPA file is asked for, and the word list
pyctcdecode wants and the rules are written beside the model. The rules are those recorded
beside the texts (`rules_beside`), unless given; a "WORD COUNT" list (prepare's words.txt) is
refused, as an LM of it would hold counts as words:

    OUT                    the model (KenLM binary, or ARPA with `arpa=True`)
    OUT.unigrams.txt       its words, most frequent first, one per line (`unigrams_path(OUT)`)
    OUT.text_rules.json    the text rules its sentences were normalised with (`rules_path(OUT)`)

Scripts written without spaces (rules with `word_boundary=False`) are refused: the beam search
scores whole words with the LM when a word boundary is emitted, and such models emit none, so a
word n-gram could only score each utterance at its end. Decode them greedily or with a plain beam.

The programs are looked up on PATH, in $KENLM_BIN, then in the repository's tools/kenlm/bin
(where `scripts/install_kenlm.sh` builds them).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from w2vcli.errors import W2VError
from w2vcli.text import ENGLISH, RULES_FILE, TextRules
from w2vcli.utils import atomic_open, log

REPO_KENLM_BIN = Path(__file__).resolve().parents[2] / "tools" / "kenlm" / "bin"
INSTALL_HINT = "run `scripts/install_kenlm.sh` (builds lmplz, build_binary and query into tools/kenlm/bin)"


@dataclass(frozen=True)
class LMBuildConfig:
    """What to build; validates itself."""

    texts: tuple[Path, ...]  # plain or .gz text, one sentence per line
    out: Path  # the model file to write
    order: int = 4  # n-gram order (lmplz -o)
    prune: tuple[int, ...] = ()  # lmplz --prune thresholds, one per order from unigrams (e.g. 0 0 1)
    arpa: bool = False  # write ARPA text instead of a KenLM binary
    exclude: tuple[Path, ...] = ()  # sentences to keep out (text lines, or a JSONL manifest's "text")
    memory: str = "2G"  # lmplz -S: sorting memory (e.g. 2G, 20%)
    rules: TextRules = ENGLISH  # how sentences are normalised: the training transcripts' rules

    def __post_init__(self) -> None:
        if not self.texts:
            raise W2VError("lm build: give at least one text file")
        if not self.rules.word_boundary:
            raise W2VError("lm build: these text rules have no word boundaries (a script written without spaces); "
                           "w2v's beam search scores words, so a word n-gram cannot guide it: decode without --lm")
        if not 1 <= self.order <= 6:
            raise W2VError(f"--order must be between 1 and 6 (KenLM built with KENLM_MAX_ORDER=6), got {self.order}")
        if len(self.prune) > self.order:
            raise W2VError(f"--prune takes at most {self.order} thresholds (one per order), got {len(self.prune)}")
        if self.prune and self.prune[0] != 0:
            raise W2VError("--prune: KenLM cannot prune unigrams; the first threshold must be 0")
        if any(b < a for a, b in zip(self.prune, self.prune[1:])):
            raise W2VError(f"--prune thresholds must not decrease, got {' '.join(map(str, self.prune))}")
        for p in (*self.texts, *self.exclude):
            if not Path(p).is_file():
                raise W2VError(f"{p}: text file not found")


@dataclass(frozen=True)
class LMBuildResult:
    model: Path
    unigrams: Path
    sentences: int  # sentences given to lmplz
    words: int  # running words
    vocabulary: int  # distinct words
    excluded: int  # sentences dropped because an exclude file holds them


def unigrams_path(lm: str | os.PathLike) -> Path:
    """Where `build_lm` writes the word list of the model `lm`."""
    return Path(f"{lm}.unigrams.txt")


def rules_path(lm: str | os.PathLike) -> Path:
    """Where `build_lm` writes the text rules of the model `lm`."""
    return Path(f"{lm}.text_rules.json")


def find_kenlm_program(name: str) -> str:
    """Path of a KenLM program (lmplz, build_binary, query), or a W2VError saying how to install it."""
    found = shutil.which(name)
    if found:
        return found
    for d in (os.environ.get("KENLM_BIN"), REPO_KENLM_BIN):
        if d and (Path(d) / name).is_file() and os.access(Path(d) / name, os.X_OK):
            return str(Path(d) / name)
    raise W2VError(f"KenLM's `{name}` was not found on PATH, in $KENLM_BIN or in {REPO_KENLM_BIN}: {INSTALL_HINT}")


def open_text(path: str | os.PathLike):
    """Open plain or gzip-compressed UTF-8 text."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def rules_beside(texts) -> TextRules:
    """The text rules recorded beside the TEXTS (`text_rules.json` in their folder, as `w2v prepare`
    writes it beside train.txt and the manifests), else English; said in a log line. Texts whose
    folders record different rules are refused."""
    found = {}
    for t in texts:
        rules = TextRules.beside(t)
        if rules is not None:
            found.setdefault(rules, Path(t).parent / RULES_FILE)
    if len(found) > 1:
        raise W2VError(f"the texts were prepared with different text rules ({', '.join(map(str, found.values()))}): "
                       "build one LM per language, or choose with --rules")
    if found:
        (rules, where), = found.items()
        log(f"lm: normalising with {where} (case {rules.case})")
        return rules
    log(f"lm: no {RULES_FILE} beside the texts: normalising with the English rules (upper case; --rules to choose)")
    return ENGLISH


COUNT_LINES = 20  # a text whose first lines are all "WORD COUNT" is a word-count list, not sentences


def _refuse_count_list(path: Path, lines: list[str]) -> None:
    """Refuse `w2v prepare`'s words.txt / dict.ltr.txt ("WORD COUNT" lines): an LM built from them
    would learn the counts as words and no word order."""
    shown = [line.split() for line in lines if line.strip()][:COUNT_LINES]
    if len(shown) >= 2 and all(len(p) == 2 and p[1].isdigit() for p in shown):
        raise W2VError(f"{path}: holds 'WORD COUNT' lines (a word list such as prepare's words.txt), not sentences; "
                       "build the LM from sentences: the training transcripts (e.g. train.txt beside it) or other text")


def read_sentences(path: str | os.PathLike, rules: TextRules = ENGLISH):
    """Normalised non-empty sentences of a text file, or of the `text` fields of a JSONL manifest.
    A list of "WORD COUNT" lines (prepare's words.txt) is refused."""
    path = Path(path)
    is_jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
    try:
        with open_text(path) as f:
            head = [] if is_jsonl else [line for _, line in zip(range(COUNT_LINES), f)]
            _refuse_count_list(path, head)
            for n, line in enumerate(itertools.chain(head, f), 1):
                if is_jsonl:
                    if not line.strip():
                        continue
                    try:
                        line = json.loads(line).get("text") or ""
                    except (ValueError, AttributeError, RecursionError):
                        raise W2VError(f"{path}:{n}: not a JSON object") from None
                    if not isinstance(line, str):
                        raise W2VError(f"{path}:{n}: field text must be a string")
                text = rules.normalize(line)
                if text:
                    yield text
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise W2VError(f"{path}: cannot read ({exc})") from None


def _run(cmd: list[str], stdin=None, stdout=None) -> None:
    """Run a KenLM program; on failure raise a W2VError with the last line of its stderr."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=err)
        if proc.returncode != 0:
            err.seek(0)
            lines = [l for l in err.read().decode(errors="replace").splitlines() if l.strip()]
            tail = lines[-1] if lines else f"exit code {proc.returncode}"
            raise W2VError(f"{Path(cmd[0]).name} failed: {tail}")


def build_lm(cfg: LMBuildConfig) -> LMBuildResult:
    """Normalise text, count words, run lmplz (and build_binary); write model and unigram list."""
    lmplz = find_kenlm_program("lmplz")
    build_binary = None if cfg.arpa else find_kenlm_program("build_binary")

    excluded_set: set[str] = set()
    for p in cfg.exclude:
        excluded_set.update(read_sentences(p, cfg.rules))
    if cfg.exclude:
        log(f"lm: keeping {len(excluded_set)} distinct sentences from {len(cfg.exclude)} exclude file(s) out")

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    n_sent = n_excluded = 0
    with tempfile.TemporaryDirectory(prefix=".lm-", dir=out.parent) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        with open(corpus, "w", encoding="utf-8") as f:
            for path in cfg.texts:
                for text in read_sentences(path, cfg.rules):
                    if text in excluded_set:
                        n_excluded += 1
                        continue
                    counts.update(text.split())
                    f.write(text + "\n")
                    n_sent += 1
        if n_sent == 0:
            raise W2VError(f"no sentences left to train on in {', '.join(map(str, cfg.texts))}")
        log(f"lm: {n_sent} sentences, {sum(counts.values())} words, {len(counts)} distinct; running lmplz -o {cfg.order}")

        arpa = Path(tmp) / "lm.arpa"
        cmd = [lmplz, "-o", str(cfg.order), "-S", cfg.memory, "-T", tmp, "--discount_fallback"]
        if cfg.prune:
            cmd += ["--prune", *map(str, cfg.prune)]
        with open(corpus, "rb") as fin, open(arpa, "wb") as fout:
            _run(cmd, stdin=fin, stdout=fout)
        corpus.unlink()

        if cfg.arpa:
            with atomic_open(out, "wb") as fout, open(arpa, "rb") as fin:
                shutil.copyfileobj(fin, fout, 1 << 20)
        else:
            binary = Path(tmp) / "lm.bin"
            _run([build_binary, "-S", cfg.memory, "-T", tmp, str(arpa), str(binary)])
            os.replace(binary, out)  # same directory: atomic

    uni = unigrams_path(out)
    with atomic_open(uni, "w", encoding="utf-8") as f:
        for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            f.write(word + "\n")
    cfg.rules.save(rules_path(out))
    return LMBuildResult(out, uni, n_sent, sum(counts.values()), len(counts), n_excluded)


def read_unigrams(path: str | os.PathLike) -> list[str]:
    """Words of a unigram list (one per line) or a lexicon (`WORD spelling...`: the first field)."""
    words: list[str] = []
    try:
        with open_text(path) as f:
            for line in f:
                parts = line.split()
                if parts:
                    words.append(parts[0])
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise W2VError(f"{path}: cannot read unigram list ({exc})") from None
    if not words:
        raise W2VError(f"{path}: unigram list is empty")
    return words
