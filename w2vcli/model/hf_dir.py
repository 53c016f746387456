"""Hugging Face `save_pretrained` directories: read as w2v models (`load_hf_dir`), written (`export_hf`).

What w2v reads, and from where (where transformers has used several layouts, in the order
transformers 5 looks for them):

    config.json                 the architecture (convert.config_from_hf)
    model.safetensors           the weights, else pytorch_model.bin (read with weights_only)
    feature-extractor settings  processor_config.json's "feature_extractor" entry (transformers 5:
                                Wav2Vec2Processor.save_pretrained), else preprocessor_config.json
                                (transformers 4.x, and Wav2Vec2FeatureExtractor.save_pretrained in
                                any version), else a processor_config.json holding them at its
                                top level (no version writes that form; read as the only settings)
    vocabulary (CTC models)     vocab.json, {token: id} or MMS's {lang: {token: id}} (+ target_lang),
                                with the tokens added beyond it (tokenizer_config.json's
                                added_tokens_decoder; added_tokens.json in 4.x), the special tokens
                                and word delimiter from tokenizer_config.json (4.x: also
                                special_tokens_map.json), the blank falling back to pad_token_id

Feature-extractor settings: `do_normalize` becomes ModelConfig.normalize_waveform and
`sampling_rate` must be 16000 (w2v resamples every file to 16 kHz). `return_attention_mask` and
`padding_value` only change what transformers computes for the padded members of a batch; w2v
computes every utterance as if it were alone (valid-frame statistics, masked attention), which is
what transformers computes for one unpadded utterance whatever these two say. A directory without
any settings is read with transformers' `Wav2Vec2FeatureExtractor()` defaults, and says so.

The vocabulary becomes w2v's layout: the blank (the tokenizer's pad token, else pad_token_id)
moves to index 0 as "<pad>" (the head's rows move with it), "[UNK]"-style specials get w2v's names
("<unk>", "<s>", "</s>"), and the word delimiter becomes "|". Letters stay as written (any case,
any script).

Refused with one line naming what: model types other than wav2vec2 and adapter layers
(config.json), MMS language adapters (adapter.*.safetensors), sharded weights (*.index.json),
feature extractors other than Wav2Vec2FeatureExtractor, sampling rates other than 16 kHz,
tokenizers other than Wav2Vec2CTCTokenizer, and a CTC model without a vocabulary, unless one is
given (`vocab=`, `--vocab`): a vocabulary is never guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from w2vcli.audio import SAMPLE_RATE  # the only rate w2v feeds its models
from w2vcli.errors import W2VError
from w2vcli.model.build import Model, build_model, check_vocab, load_state, model_kind
from w2vcli.model.convert import (
    HF_ENCODER_NAMES, HF_HEAD_NAMES, codevectors_from_flat, config_from_hf, config_to_hf, rename,
)  # fmt: skip
from w2vcli.model.safe_load import safe_torch_load
from w2vcli.text import BLANK, WORD_BOUNDARY, TextRules, Vocabulary
from w2vcli.utils import atomic_open, warn

FEATURE_EXTRACTOR = "Wav2Vec2FeatureExtractor"
PROCESSOR = "Wav2Vec2Processor"
TOKENIZER = "Wav2Vec2CTCTokenizer"
# (file, entry) holding the feature extractor's settings, in the order transformers 5 looks for them;
# entry None: the file's top level
FEATURE_LAYOUTS = (
    ("processor_config.json", "feature_extractor"),
    ("processor_config.json", "audio_processor"),
    ("preprocessor_config.json", None),
    ("processor_config.json", None),
)
FEATURE_KEYS = {"do_normalize", "sampling_rate", "feature_extractor_type"}  # a top-level form holds these
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

HF_RULES_FILE = "w2v_text_rules.json"  # a CTC model's text rules, beside the files transformers reads


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise W2VError(f"cannot read {path}: {exc}") from None


def _write_json(path: Path, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


# --- feature extractor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSettings:
    """A Wav2Vec2FeatureExtractor's settings; a field the file leaves out has transformers' default."""

    source: str  # where they were read, for messages
    do_normalize: bool = True  # zero mean, unit variance per utterance -> ModelConfig.normalize_waveform
    sampling_rate: int = SAMPLE_RATE  # Hz of the audio the model was trained on
    feature_size: int = 1  # values per time step (1: a raw waveform)
    return_attention_mask: bool = False  # transformers' batches: pass the padding mask (w2v always masks)
    padding_value: float = 0.0  # what transformers pads a batch with (w2v's results ignore padding)

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "FeatureSettings":
        kind = d.get("feature_extractor_type") or FEATURE_EXTRACTOR
        if kind != FEATURE_EXTRACTOR:
            raise W2VError(f"{source}: feature_extractor_type {kind!r} is not supported "
                           f"(only {FEATURE_EXTRACTOR}: raw waveforms)")  # fmt: skip
        defaults = cls(source)
        values: dict[str, Any] = {}
        for name, types in (("do_normalize", bool), ("sampling_rate", int), ("feature_size", int),
                            ("return_attention_mask", bool), ("padding_value", (int, float))):  # fmt: skip
            value = d.get(name, getattr(defaults, name))
            if not isinstance(value, types) or (types is int and isinstance(value, bool)):
                raise W2VError(f"{source}: {name} must be a {getattr(types, '__name__', 'number')}, got {value!r}")
            values[name] = value
        settings = cls(source, **values)
        if settings.feature_size != 1:
            raise W2VError(f"{source}: feature_size {settings.feature_size} is not supported (1: a raw waveform)")
        if settings.sampling_rate != SAMPLE_RATE:
            raise W2VError(
                f"{source}: the model takes {settings.sampling_rate} Hz audio; w2v feeds every model "
                f"{SAMPLE_RATE} Hz (it resamples each file to it), so it cannot run this one"
            )
        return settings


def read_feature_settings(directory: Path) -> FeatureSettings | None:
    """The feature extractor's settings from the first layout present (FEATURE_LAYOUTS), or None."""
    for name, entry in FEATURE_LAYOUTS:
        path = directory / name
        if not path.is_file():
            continue
        data = read_json(path)
        if not isinstance(data, dict):
            raise W2VError(f"{path}: not a JSON object")
        if entry is not None:
            if isinstance(data.get(entry), dict):
                return FeatureSettings.from_dict(data[entry], f"{path} ({entry})")
        elif name == "preprocessor_config.json" or FEATURE_KEYS & data.keys():
            return FeatureSettings.from_dict(data, str(path))
    return None


def _normalize_waveform(directory: Path) -> bool:
    settings = read_feature_settings(directory)
    if settings is None:
        warn(
            f"{directory}: no feature-extractor settings (processor_config.json or preprocessor_config.json); "
            f"assuming transformers' {FEATURE_EXTRACTOR}() defaults: {SAMPLE_RATE} Hz, do_normalize=true "
            "(each utterance scaled to zero mean, unit variance)"
        )
        return FeatureSettings("defaults").do_normalize
    return settings.do_normalize


# --- tokenizer and vocabulary --------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSettings:
    """What Wav2Vec2CTCTokenizer's files say; what they leave out has transformers' default."""

    pad: str = BLANK  # the CTC blank's token (transformers' decoding drops it); absent: pad_token_id decides
    unk: str = "<unk>"
    bos: str = "<s>"
    eos: str = "</s>"
    word_delimiter: str = WORD_BOUNDARY  # decoded as a space; becomes w2v's "|"
    target_lang: str | None = None  # MMS: the language of a nested vocab.json
    do_lower_case: bool = False  # transformers lower-cases decoded text when set
    added: dict[int, str] = field(default_factory=dict)  # id -> token added beyond vocab.json


def read_tokenizer_settings(directory: Path, hf: dict) -> TokenizerSettings:
    """tokenizer_config.json (+ 4.x's special_tokens_map.json and added_tokens.json) of `directory`."""
    path = directory / "tokenizer_config.json"
    cfg = read_json(path) if path.is_file() else {}
    special_path = directory / "special_tokens_map.json"
    special = read_json(special_path) if special_path.is_file() else {}
    if not isinstance(cfg, dict) or not isinstance(special, dict):
        raise W2VError(f"{directory}: tokenizer_config.json / special_tokens_map.json is not a JSON object")
    kind = cfg.get("tokenizer_class") or TOKENIZER
    if kind != TOKENIZER:
        raise W2VError(f"{path}: tokenizer_class {kind!r} is not supported (only {TOKENIZER})")

    def token(name: str, default: str | None) -> str | None:
        value = cfg.get(name, special.get(name, default))
        return value.get("content") if isinstance(value, dict) else value  # 4.x may write AddedToken dicts

    delimiter = token("word_delimiter_token", WORD_BOUNDARY)
    if delimiter is None:
        raise W2VError(f"{path}: word_delimiter_token is null: a vocabulary without a word delimiter is not supported")
    return TokenizerSettings(
        pad=token("pad_token", BLANK), unk=token("unk_token", "<unk>"), bos=token("bos_token", "<s>"),
        eos=token("eos_token", "</s>"), word_delimiter=delimiter,
        target_lang=cfg.get("target_lang") or hf.get("target_lang"), do_lower_case=bool(cfg.get("do_lower_case")),
        added=_added_tokens(cfg, directory),
    )  # fmt: skip


def _added_tokens(cfg: dict, directory: Path) -> dict[int, str]:
    """id -> token of the tokens a tokenizer added beyond vocab.json (5.x and late 4.x, then early 4.x's file)."""
    path = directory / "added_tokens.json"
    try:
        added = {int(i): entry["content"] for i, entry in (cfg.get("added_tokens_decoder") or {}).items()}
        if path.is_file():
            for tok, i in read_json(path).items():
                added.setdefault(int(i), tok)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise W2VError(f"{directory}: unreadable added tokens (tokenizer_config.json / added_tokens.json): {exc!r}") from None
    return added


def hf_vocabulary(path: Path, tok: TokenizerSettings, hf: dict, n_out: int) -> tuple[Vocabulary, list[int]]:
    """A vocab.json for a CTC head of `n_out` outputs as a w2v Vocabulary, and `order`:
    w2v's token i is the head's output order[i] (the blank first)."""
    mapping = read_json(path)
    if not isinstance(mapping, dict) or not mapping:
        raise W2VError(f"{path}: not a {{token: id}} JSON object")
    if all(isinstance(v, dict) for v in mapping.values()):  # MMS: {lang: {token: id}}
        mapping = _one_language(mapping, tok.target_lang, path)
    ids: dict[int, str] = {}
    for t, i in mapping.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise W2VError(f"{path}: token {t!r} has id {i!r}, not an index")
        if i in ids:
            raise W2VError(f"{path}: tokens {ids[i]!r} and {t!r} both have id {i}")
        ids[i] = t
    if max(ids) >= n_out:
        raise W2VError(f"{path}: token {ids[max(ids)]!r} has id {max(ids)} but the CTC head has {n_out} outputs")
    for i, t in tok.added.items():  # e.g. "<s>", "</s>" added by Wav2Vec2CTCTokenizer after a tutorial's vocab
        if i < n_out:
            ids.setdefault(i, t)
    missing = [i for i in range(n_out) if i not in ids]
    if missing:
        raise W2VError(f"{path}: {len(ids)} tokens but the CTC head has {n_out} outputs (no token for id {missing[0]})")
    tokens = [ids[i] for i in range(n_out)]
    blank = _blank_id(tokens, tok, hf, path)
    order = [blank] + [i for i in range(n_out) if i != blank]
    tokens = [BLANK] + [tokens[i] for i in order[1:]]
    try:
        return Vocabulary.with_boundary(_w2v_names(tokens, tok, path)), order
    except W2VError as exc:
        raise W2VError(f"{path}: {exc}") from None


def _one_language(mapping: dict, lang: str | None, path: Path) -> dict:
    names = sorted(mapping)
    listed = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    if lang is None:
        raise W2VError(
            f"{path}: a multilingual vocabulary ({listed}) and no target_lang; set target_lang in "
            "tokenizer_config.json, or give --vocab FILE with one language's {token: id} table"
        )
    if lang not in mapping:
        raise W2VError(f"{path}: target_lang {lang!r} is not one of its languages ({listed})")
    return mapping[lang]


def _blank_id(tokens: list[str], tok: TokenizerSettings, hf: dict, path: Path) -> int:
    """The CTC blank: the tokenizer's pad token (what transformers' decoding drops), else pad_token_id."""
    config_pad = hf.get("pad_token_id")
    if tok.pad in tokens:
        blank = tokens.index(tok.pad)
        if isinstance(config_pad, int) and config_pad != blank:
            warn(f"{path}: config.json's pad_token_id is {config_pad} but the tokenizer's pad token {tok.pad!r} "
                 f"is id {blank}; using {blank} as the CTC blank, as transformers' decoding does")  # fmt: skip
        return blank
    if isinstance(config_pad, int) and 0 <= config_pad < len(tokens):
        return config_pad
    if "[PAD]" in tokens:
        return tokens.index("[PAD]")
    raise W2VError(f"{path}: no CTC blank: no pad token in the vocabulary and no pad_token_id in config.json")


def _w2v_names(tokens: list[str], tok: TokenizerSettings, path: Path) -> list[str]:
    """Specials renamed to w2v's "<unk>", "<s>", "</s>" where free, the word delimiter to "|"."""
    tokens = list(tokens)
    for theirs, ours in ((tok.unk, "<unk>"), ("[UNK]", "<unk>"), (tok.bos, "<s>"), (tok.eos, "</s>")):
        if theirs is not None and theirs != ours and theirs in tokens and ours not in tokens:
            tokens[tokens.index(theirs)] = ours
    delimiter = tok.word_delimiter
    if delimiter != WORD_BOUNDARY:
        if WORD_BOUNDARY in tokens:
            raise W2VError(f"{path}: the word delimiter is {delimiter!r} and {WORD_BOUNDARY!r} a letter: not supported")
        if delimiter in tokens:
            tokens[tokens.index(delimiter)] = WORD_BOUNDARY
    elif WORD_BOUNDARY not in tokens and " " in tokens:  # a space token decodes as a space: the same thing
        tokens[tokens.index(" ")] = WORD_BOUNDARY
    return tokens


def _ctc_vocabulary(directory: Path, hf: dict, vocab: Vocabulary | str | os.PathLike | None, n_out: int):
    """(Vocabulary, head order) of a CTC directory, or of `vocab` given in its place."""
    if isinstance(vocab, Vocabulary):
        check_vocab(vocab, n_out, str(directory))
        return vocab, list(range(n_out))
    if vocab is not None and Path(vocab).suffix != ".json":  # fairseq dict.ltr.txt: the blank comes first
        given = Vocabulary.load(vocab)
        check_vocab(given, n_out, str(vocab))
        return given, list(range(n_out))
    path = Path(vocab) if vocab is not None else directory / "vocab.json"
    if not path.is_file():
        if vocab is not None:
            raise W2VError(f"vocabulary not found: {path}")
        raise W2VError(
            f"{directory}: no vocabulary (vocab.json) for its CTC head of {n_out} outputs; "
            "give one with --vocab FILE (vocab.json or fairseq dict.ltr.txt): w2v does not guess"
        )
    tok = read_tokenizer_settings(directory, hf)
    if tok.do_lower_case:
        warn(f"{directory}: do_lower_case is set: transformers lower-cases the text it decodes, "
             "w2v writes the vocabulary's letters as they are")  # fmt: skip
    return hf_vocabulary(path, tok, hf, n_out)


# --- loading -------------------------------------------------------------------------------------


def load_hf_dir(directory: str | os.PathLike, vocab: Vocabulary | str | os.PathLike | None = None) -> Model:
    """Load a `save_pretrained` directory of Wav2Vec2ForPreTraining / Wav2Vec2ForCTC / Wav2Vec2Model.

    `vocab` (a Vocabulary, or a vocab.json / dict.ltr.txt path) replaces the directory's own.
    """
    directory = Path(directory)
    state = _read_weights(directory)
    hf = read_json(directory / "config.json")
    config = config_from_hf(hf, str(directory / "config.json"))
    config.normalize_waveform = _normalize_waveform(directory)
    arch = (hf.get("architectures") or ["Wav2Vec2Model"])[0]
    if any(k.startswith("lm_head.") for k in state) or arch == "Wav2Vec2ForCTC":
        kind = "ctc"
    elif any(k.startswith("quantizer.") for k in state) or arch == "Wav2Vec2ForPreTraining":
        kind = "pretrain"
    else:
        kind = "encoder"
    mapped = {}
    for key, value in state.items():
        inner = key[len("wav2vec2."):] if key.startswith("wav2vec2.") else key
        name = rename(inner, HF_ENCODER_NAMES)
        if name is not None:
            mapped[name if kind == "encoder" else "wav2vec2." + name] = value
            continue
        name = rename(key, HF_HEAD_NAMES)
        if name is None:
            raise W2VError(f"{directory}: unknown parameter {key} (not a plain wav2vec 2.0 model?)")
        mapped[name] = codevectors_from_flat(value, config) if name == "quantizer.codevectors" else value
    words = None
    if kind == "ctc":
        if "head.weight" not in mapped:
            raise W2VError(f"{directory}: a Wav2Vec2ForCTC without lm_head weights")
        words, order = _ctc_vocabulary(directory, hf, vocab, mapped["head.weight"].shape[0])
        for k in ("head.weight", "head.bias"):  # the blank's row first
            mapped[k] = mapped[k][order]
    rules_file = directory / HF_RULES_FILE  # w2v's own export records the text rules; else read off the vocabulary
    rules = TextRules.load(rules_file) if kind == "ctc" and rules_file.is_file() else None
    model = build_model(kind, config, words, rules)
    load_state(model, mapped, str(directory), allow_missing=("mask_embedding",))
    return model


def _read_weights(directory: Path) -> dict:
    adapters = sorted(p.name for p in directory.glob("adapter.*") if p.suffix in (".safetensors", ".bin"))
    if adapters:
        more = f", ... ({len(adapters)} files)" if len(adapters) > 3 else ""
        raise W2VError(f"{directory}: MMS language adapters ({', '.join(adapters[:3])}{more}) are not supported; "
                       "w2v loads plain wav2vec 2.0 weights")  # fmt: skip
    if (directory / "model.safetensors").is_file():
        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        return safe_torch_load(directory / "pytorch_model.bin")
    for index in SHARD_INDEXES:
        if (directory / index).is_file():
            raise W2VError(
                f"{directory}: sharded weights ({index}) are not supported; save them as one file first, e.g. "
                "Wav2Vec2ForCTC.from_pretrained(DIR).save_pretrained(OUT, max_shard_size='100GB')"
            )
    raise W2VError(f"{directory}: no model.safetensors or pytorch_model.bin")


# --- writing -------------------------------------------------------------------------------------


def feature_extractor_dict(normalize: bool) -> dict:
    """The settings transformers' Wav2Vec2FeatureExtractor writes (to_dict), for w2v's 16 kHz input."""
    return {
        "do_normalize": bool(normalize), "feature_extractor_type": FEATURE_EXTRACTOR, "feature_size": 1,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": SAMPLE_RATE,
    }  # fmt: skip


def export_hf(model: Model, out_dir: str | os.PathLike) -> Path:
    """Write `model` as a directory that transformers 5 and 4.x load with `from_pretrained`.

    Files: config.json, model.safetensors, preprocessor_config.json (the feature extractor), and
    for a CTC model vocab.json, tokenizer_config.json and special_tokens_map.json
    (Wav2Vec2CTCTokenizer). No processor_config.json: transformers 5 writes the feature extractor
    there, nested under "feature_extractor", but reads preprocessor_config.json when it is absent,
    while Wav2Vec2Processor.from_pretrained of transformers 4.40, 4.46 and 4.52 fails on the nested
    form ("got multiple values for argument 'feature_extractor'"; 4.57 reads it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = model_kind(model)
    arch = {"ctc": "Wav2Vec2ForCTC", "pretrain": "Wav2Vec2ForPreTraining", "encoder": "Wav2Vec2Model"}[kind]
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        inner = key[len("wav2vec2."):] if key.startswith("wav2vec2.") else key
        name = rename(inner, HF_ENCODER_NAMES, reverse=True)
        if name is not None:
            state[name if kind == "encoder" else "wav2vec2." + name] = value
            continue
        name = rename(key, HF_HEAD_NAMES, reverse=True)
        if name is None:
            raise W2VError(f"cannot export parameter {key} to the Hugging Face layout")
        if name == "quantizer.codevectors":
            value = value.reshape(1, -1, value.shape[-1]).contiguous()
        state[name] = value
    vocab = getattr(model, "vocab", None)
    hf = config_to_hf(model.config, arch, len(vocab) if vocab is not None else None)
    stored = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(stored) == 1:  # `w2v export --dtype float16`: say so, for from_pretrained(torch_dtype="auto")
        hf["torch_dtype"] = str(stored.pop()).removeprefix("torch.")
    _write_json(out / "config.json", hf)
    with atomic_open(out / "model.safetensors", "wb") as f:  # written whole, then renamed: an old file is never half-replaced
        f.write(save_safetensors(state, metadata={"format": "pt"}))
    features = feature_extractor_dict(model.config.normalize_waveform)
    if vocab is None:
        _write_json(out / "preprocessor_config.json", features)
        return out
    _write_json(out / "preprocessor_config.json", {**features, "processor_class": PROCESSOR})
    vocab.save(out / "vocab.json")
    model.text_rules.save(out / HF_RULES_FILE)
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": BLANK}
    _write_json(out / "tokenizer_config.json", {
        **special, "tokenizer_class": TOKENIZER, "word_delimiter_token": vocab.word_boundary or WORD_BOUNDARY,
        "replace_word_delimiter_char": " ", "do_lower_case": False, "target_lang": None, "processor_class": PROCESSOR,
    })  # fmt: skip
    _write_json(out / "special_tokens_map.json", special)
    return out
