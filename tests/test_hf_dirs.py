"""Hugging Face directories as transformers writes them: `w2v transcribe DIR` equals transformers.

The directories are made by transformers' own `Wav2Vec2Processor.save_pretrained` and
`Wav2Vec2ForCTC.save_pretrained` (transformers 5 writes the feature extractor's settings into
processor_config.json, under "feature_extractor"), or written by hand the way transformers 4.x
wrote them (preprocessor_config.json, special_tokens_map.json, added_tokens.json), never by w2v's
own writer. The reference is transformers' argmax decoding (`Wav2Vec2CTCTokenizer.decode`) of
its own logits on real speech, one utterance at a time.

The random heads are kept from emitting `<s>`, `</s>` and `<unk>` (their bias is -1e4): a trained
model does not emit them, and what CTC decoding prints for them is each toolkit's convention.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import w2vcli
from w2vcli.audio import load_audio
from w2vcli.cli import app
from w2vcli.errors import W2VError

transformers = pytest.importorskip("transformers")

LIBRISPEECH = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"])}


def tutorial_vocab(letters: str) -> dict[str, int]:
    """vocab.json the way Hugging Face's fine-tuning tutorials make it: sorted characters, the space
    renamed "|", then "[UNK]" and "[PAD]" (the blank) last."""
    vocab = {c: i for i, c in enumerate(sorted(set(letters + " ")))}
    vocab["|"] = vocab.pop(" ")
    vocab["[UNK]"] = len(vocab)
    vocab["[PAD]"] = len(vocab)
    return vocab


TIMIT = tutorial_vocab("abcdefghijklmnopqrstuvwxyz'")  # the wav2vec2-base TIMIT tutorial: lower case
XLSR = tutorial_vocab("abcdefghijklmnopqrstuvwxyzäöüß" + "абвгдежзийклмнопрстуфхцчшщъыьэюяё")  # German + Russian
TUTORIAL_TOKENS = dict(unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|")


@dataclass(frozen=True)
class Case:
    feat_norm: str  # "group" (BASE) or "layer" (LARGE, LV-60, XLS-R: pre-LN, do_normalize)
    vocab: dict[str, int]
    tokens: dict = field(default_factory=dict)  # Wav2Vec2CTCTokenizer's special-token arguments


CASES = {
    "base_timit": Case("group", TIMIT, TUTORIAL_TOKENS),
    "large_librispeech": Case("layer", LIBRISPEECH),
    "xlsr_unicode": Case("layer", XLSR, TUTORIAL_TOKENS),
}


def run(*args):
    return CliRunner().invoke(app, ["transcribe", *map(str, args), "--device", "cpu"])


@pytest.fixture(scope="module")
def files(real_mini) -> list[str]:
    return sorted(str(p) for p in real_mini.rglob("*.flac"))[:4]


def hf_model(case: Case, vocab_size: int, pad_id: int, delimiter_id: int, calibration: np.ndarray, special_ids: list[int]):
    """A tiny random Wav2Vec2ForCTC whose head emits every token but the specials, with varied output."""
    torch.manual_seed(0)
    layer = case.feat_norm == "layer"
    cfg = transformers.Wav2Vec2Config(
        vocab_size=vocab_size, pad_token_id=pad_id, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm=case.feat_norm, do_stable_layer_norm=layer, conv_bias=layer,
    )  # fmt: skip
    model = transformers.Wav2Vec2ForCTC(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():  # norms and biases off their trivial initial values
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        model.lm_head.weight.normal_(0, 3.0, generator=g)
        model.lm_head.bias.zero_()
        x = torch.from_numpy(calibration)[None]
        logits = model((x - x.mean()) / x.std()).logits[0]  # [T,V]
        model.lm_head.bias.copy_(-logits.mean(0))  # every token wins some frames
        spread = (logits - logits.mean(0)).std()
        model.lm_head.bias[pad_id] += spread  # blanks and word breaks more often: words of a few letters
        model.lm_head.bias[delimiter_id] += 1.5 * spread
        model.lm_head.bias[special_ids] = -1e4
    return model


def processor_dir(path: Path, case: Case, calibration: np.ndarray) -> Path:
    """A fine-tuned-model directory exactly as transformers (5) saves processor and model."""
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path.parent / f"{path.name}-vocab.json"
    vocab_file.write_text(json.dumps(case.vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(vocab_file), **case.tokens)
    features = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=case.feat_norm == "layer")
    transformers.Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    specials = tokenizer.convert_tokens_to_ids([tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token])
    model = hf_model(case, len(tokenizer), tokenizer.pad_token_id, tokenizer.word_delimiter_token_id, calibration, specials)
    model.save_pretrained(path)
    return path


def transformers_texts(model, features, tokenizer, files: list[str]) -> list[str]:
    """transformers' argmax decoding of each file alone (whitespace runs collapsed, as w2v prints words)."""
    texts = []
    for f in files:
        inputs = features(load_audio(f), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            logits = model(inputs.input_values).logits[0]  # [T,V]
        top2 = logits.topk(2, dim=-1).values
        assert (top2[:, 0] - top2[:, 1]).min() > 1e-3  # no near-tie that rounding could flip
        texts.append(" ".join(tokenizer.decode(logits.argmax(-1)).split()))
    return texts


def w2v_texts(model_dir: Path, files: list[str], *extra) -> list[str]:
    res = run(model_dir, *files, "--format", "jsonl", *extra)
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["audio"] for r in rows] == files
    return [r["text"] for r in rows]


@pytest.mark.parametrize("name", list(CASES))
def test_processor_directory_transcribes_like_transformers(name, files, tmp_path):
    case = CASES[name]
    path = processor_dir(tmp_path / name, case, load_audio(files[0]))
    assert not (path / "preprocessor_config.json").exists()  # transformers 5: processor_config.json only
    processor = transformers.Wav2Vec2Processor.from_pretrained(path)
    model = transformers.Wav2Vec2ForCTC.from_pretrained(path).eval()
    assert processor.feature_extractor.do_normalize
    expected = transformers_texts(model, processor.feature_extractor, processor.tokenizer, files)
    got = w2v_texts(path, files)
    assert got == expected
    words = " ".join(got).split()
    assert len(words) > 20 and len(set("".join(words))) > 10  # the comparison is not trivial
    if name == "xlsr_unicode":
        assert set("".join(words)) & set("äöüßабвгд")
    ours = w2vcli.load_model(path)
    assert ours.config.normalize_waveform
    assert ours.vocab.tokens[0] == "<pad>" and "[PAD]" not in ours.vocab.tokens


def test_transformers4_directory(files, tmp_path):
    """transformers 4.x's layout, written by hand: preprocessor_config.json, special_tokens_map.json,
    added_tokens.json (the tutorial's "<s>", "</s>"), pytorch_model.bin; a LARGE-style model."""
    case = Case("layer", XLSR, TUTORIAL_TOKENS)
    path = tmp_path / "v4"
    path.mkdir()
    (path / "vocab.json").write_text(json.dumps(XLSR, ensure_ascii=False, indent=2), encoding="utf-8")
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(path / "vocab.json"), **TUTORIAL_TOKENS)
    n = len(XLSR)
    assert tokenizer.convert_tokens_to_ids(["<s>", "</s>"]) == [n, n + 1]  # what 4.x's added_tokens.json says
    features = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    model = hf_model(case, n + 2, XLSR["[PAD]"], XLSR["|"], load_audio(files[0]), [n, n + 1, XLSR["[UNK]"]])
    model.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    files_4x = {
        "preprocessor_config.json": {
            "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
            "padding_side": "right", "padding_value": 0.0, "processor_class": "Wav2Vec2Processor",
            "return_attention_mask": True, "sampling_rate": 16000,
        },
        "tokenizer_config.json": {
            "bos_token": "<s>", "do_lower_case": False, "eos_token": "</s>", "model_max_length": 1e30,
            "pad_token": "[PAD]", "processor_class": "Wav2Vec2Processor", "replace_word_delimiter_char": " ",
            "target_lang": None, "tokenizer_class": "Wav2Vec2CTCTokenizer", "unk_token": "[UNK]",
            "word_delimiter_token": "|",
        },
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "[PAD]", "unk_token": "[UNK]"},
        "added_tokens.json": {"<s>": n, "</s>": n + 1},
    }  # fmt: skip
    for name, content in files_4x.items():
        (path / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    expected = transformers_texts(model, features, tokenizer, files)
    assert w2v_texts(path, files) == expected
    assert set("".join(expected)) & set("äöüßабвгд")


# --- what is assumed, refused or supplied --------------------------------------------------------


@pytest.fixture(scope="module")
def base_dir(files, tmp_path_factory) -> Path:
    """A BASE-style directory saved by transformers' processor (TIMIT tutorial vocabulary)."""
    return processor_dir(tmp_path_factory.mktemp("base") / "base", CASES["base_timit"], load_audio(files[0]))


def copy_without(src: Path, dst: Path, *names: str) -> Path:
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


def test_no_feature_settings_is_said_and_defaults_stated(base_dir, files, tmp_path):
    path = copy_without(base_dir, tmp_path / "bare", "processor_config.json")
    res = run(path, files[0])
    assert res.exit_code == 0, res.output
    warning = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "no feature-extractor settings" in warning[0] and "do_normalize=true" in warning[0]


def test_missing_vocabulary_is_refused_and_vocab_option_supplies_it(base_dir, files, tmp_path):
    path = copy_without(base_dir, tmp_path / "novocab", "vocab.json")
    assert json.loads((path / "config.json").read_text())["vocab_size"] == 32  # was read as LibriSpeech's letters
    res = run(path, files[0])
    assert res.exit_code == 1 and "no vocabulary" in res.output and "--vocab" in res.output
    with pytest.raises(W2VError, match="no vocabulary"):
        w2vcli.load_model(path)
    # --vocab: the tutorial's vocab.json (blank last), with the directory's tokenizer settings
    vocab_file = tmp_path / "timit-vocab.json"
    shutil.copy(base_dir / "vocab.json", vocab_file)
    with_option = run(path, files[0], "--vocab", vocab_file)
    assert with_option.exit_code == 0, with_option.output
    assert with_option.stdout == run(base_dir, files[0]).stdout


def test_what_transformers_would_decode_differently_is_said(base_dir, files, tmp_path):
    """A pad_token_id that disagrees with the tokenizer's pad token, and do_lower_case, are named."""
    path = copy_without(base_dir, tmp_path / "odd")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "pad_token_id": 0}))
    tok = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    (path / "tokenizer_config.json").write_text(json.dumps({**tok, "do_lower_case": True}), encoding="utf-8")
    res = run(path, files[0])
    assert res.exit_code == 0, res.output
    assert "pad_token_id is 0 but the tokenizer's pad token '[PAD]' is id 29" in res.stderr
    assert "do_lower_case is set" in res.stderr
    assert res.stdout == run(base_dir, files[0]).stdout  # the blank is still the tokenizer's "[PAD]"


def test_sampling_rate_and_foreign_feature_extractors_are_refused(base_dir, tmp_path):
    path = copy_without(base_dir, tmp_path / "8k", "processor_config.json")
    (path / "processor_config.json").write_text(json.dumps({
        "feature_extractor": {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "sampling_rate": 8000,
                              "do_normalize": True, "feature_size": 1},
        "processor_class": "Wav2Vec2Processor",
    }))  # fmt: skip
    with pytest.raises(W2VError, match="8000 Hz"):
        w2vcli.load_model(path)
    (path / "processor_config.json").unlink()
    (path / "preprocessor_config.json").write_text(json.dumps({"feature_extractor_type": "SeamlessM4TFeatureExtractor"}))
    with pytest.raises(W2VError, match="SeamlessM4TFeatureExtractor"):
        w2vcli.load_model(path)


def test_mms_nested_vocabulary_uses_target_lang(base_dir, tmp_path):
    """MMS's vocab.json {lang: {token: id}}: the language named by target_lang, else a refusal naming them."""
    specials = ["<pad>", "<s>", "</s>", "<unk>", "|"]
    tables = {lang: {t: i for i, t in enumerate(specials + list(letters))}
              for lang, letters in (("deu", "abcdefghijklmnopqrstuvwäöüß"), ("rus", "абвгдежзийклмнопрстуфхцчшщя"))}  # fmt: skip
    assert all(len(t) == 32 for t in tables.values())  # the head's outputs
    path = copy_without(base_dir, tmp_path / "mms", "vocab.json", "tokenizer_config.json", "added_tokens.json")
    (path / "vocab.json").write_text(json.dumps(tables, ensure_ascii=False), encoding="utf-8")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "pad_token_id": 0}))  # as MMS has it
    with pytest.raises(W2VError, match=r"multilingual vocabulary \(deu, rus\) and no target_lang"):
        w2vcli.load_model(path)
    (path / "config.json").write_text(json.dumps({**config, "pad_token_id": 0, "target_lang": "deu"}))
    assert w2vcli.load_model(path).vocab.tokens == list(tables["deu"])
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(path / "vocab.json"), target_lang="rus")
    tokenizer.save_pretrained(path)
    assert json.loads((path / "tokenizer_config.json").read_text())["target_lang"] == "rus"
    ours = w2vcli.load_model(path)
    assert ours.vocab.tokens == tokenizer.convert_ids_to_tokens(list(range(32))) == list(tables["rus"])


def test_adapters_and_sharded_weights_are_refused_by_name(base_dir, tmp_path):
    path = copy_without(base_dir, tmp_path / "adapters")
    (path / "adapter.eng.safetensors").write_bytes(b"")
    with pytest.raises(W2VError, match=r"MMS language adapters \(adapter.eng.safetensors\)"):
        w2vcli.load_model(path)
    sharded = copy_without(base_dir, tmp_path / "sharded", "model.safetensors")
    transformers.Wav2Vec2ForCTC.from_pretrained(base_dir).save_pretrained(sharded, max_shard_size="100KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    res = run(sharded, "x.flac")
    assert res.exit_code == 1 and "sharded weights (model.safetensors.index.json) are not supported" in res.output


# --- w2v export --to hf ----------------------------------------------------------------------------


def test_export_is_read_by_transformers_5_and_4x(tmp_path):
    """`w2v export --to hf` of a LARGE-style model (do_normalize) with a Unicode vocabulary."""
    from w2vcli.model import Wav2Vec2ForCTC, export_hf, get_preset
    from w2vcli.text import Vocabulary

    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(feature_norm="layer", layer_norm_first=True, conv_bias=True, normalize_waveform=True)
    vocab = Vocabulary(["<pad>", "<s>", "</s>", "<unk>", "|", *"aäbcöüßдя"])
    model = Wav2Vec2ForCTC(cfg, vocab).eval()
    out = export_hf(model, tmp_path / "hf")
    # preprocessor_config.json only: transformers 5 falls back to it, 4.x reads nothing else, and
    # 4.40-4.52's Wav2Vec2Processor fails on 5's nested processor_config.json (see export_hf)
    assert (out / "preprocessor_config.json").is_file() and not (out / "processor_config.json").exists()
    for processor in (transformers.Wav2Vec2Processor.from_pretrained(out), transformers.AutoProcessor.from_pretrained(out)):
        fe = processor.feature_extractor
        assert (fe.do_normalize, fe.sampling_rate, fe.feature_size) == (True, 16000, 1)
        assert processor.tokenizer.convert_ids_to_tokens(list(range(len(vocab)))) == vocab.tokens
        assert processor.tokenizer.decode([5, 5, 0, 6, 4, 4, 12, 0, 13]) == "aä дя"
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(out).eval()
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.05
    inputs = processor.feature_extractor(wav[0].numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(wav, torch.tensor([8000]))[0], hf(inputs.input_values).logits, atol=2e-5, rtol=1e-4)
    again = w2vcli.load_model(out)
    assert again.vocab.tokens == vocab.tokens and again.config.normalize_waveform
