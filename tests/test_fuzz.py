"""Fuzzing the readers of user files: manifests (JSONL, fairseq .tsv + .wrd/.ltr), transcripts
(Kaldi-style / JSONL for `w2v score`, LibriSpeech .trans.txt), TOML configs and vocabularies.

Random and mutated input must either be read or give a W2VError with a one-line message (exit
code 1 through the CLI), never another exception. Bounded (30 examples per reader,
no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.errors import W2VError

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of every kind, small
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**9), st.floats(allow_nan=True),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
FIELDS = ["id", "audio", "num_samples", "sample_rate", "text", "speaker"]


@st.composite
def manifest_rows(draw) -> dict:
    """A row that is often valid, with some fields missing, mistyped or odd."""
    row = {"id": draw(st.text(max_size=8) | st.integers()), "audio": draw(st.text(min_size=1, max_size=12)),
           "num_samples": draw(st.integers(-5, 10**7)), "sample_rate": draw(st.sampled_from([16000, 8000, 0, -1]))}
    if draw(st.booleans()):
        row["text"] = draw(st.text(max_size=30))
    for key in draw(st.lists(st.sampled_from(FIELDS + ["extra"]), max_size=2)):
        row[key] = draw(json_values)
    if draw(st.booleans()):
        row.pop(draw(st.sampled_from(FIELDS)), None)
    return row


def mutated(text: str, data) -> bytes:
    """`text` as UTF-8 with a few random byte edits (cuts, insertions, flips)."""
    raw = bytearray(text.encode("utf-8"))
    for _ in range(data.draw(st.integers(0, 3))):
        if not raw:
            break
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["cut", "insert", "flip"]))
        if op == "cut":
            raw = raw[:i]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
    return bytes(raw)


def lines(values: list) -> str:
    return "".join((json.dumps(v) if not isinstance(v, str) else v) + "\n" for v in values)


def reads_or_one_line_error(read, *args):
    """`read(*args)` either returns or raises a W2VError of one non-empty line."""
    try:
        return read(*args)
    except W2VError as exc:
        message = str(exc).strip()
        assert message and "\n" not in message, repr(message)
        return None


def cli_gives_0_or_one_line(*args) -> None:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code in (0, 1), (res.exit_code, res.output, res.exception)
    if res.exit_code == 1:
        assert isinstance(res.exception, SystemExit), repr(res.exception)
        assert [line for line in res.stderr.splitlines() if line.startswith("error:")], res.stderr
    assert "Traceback" not in res.output


# --- manifests ------------------------------------------------------------------------------------


@FUZZ
@given(rows=st.lists(manifest_rows() | json_values | st.text(max_size=20), max_size=6), data=st.data())
def test_jsonl_manifest(rows, data):
    from w2vcli.data.manifest import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.jsonl"
        path.write_bytes(mutated(lines(rows), data))
        reads_or_one_line_error(read_manifest, path)
        cli_gives_0_or_one_line("prepare", "subset", path, "--minutes", "1", "--out", Path(tmp) / "sub.jsonl")


@FUZZ
@given(root=st.text(max_size=10), entries=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=6)), max_size=5),
       side=st.sampled_from(["", ".wrd", ".ltr"]), side_lines=st.lists(st.text(max_size=15), max_size=6), data=st.data())
def test_fairseq_tsv_manifest(root, entries, side, side_lines, data):
    from w2vcli.data.manifest import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.tsv"
        path.write_bytes(mutated(root + "\n" + "".join(f"{a}\t{b}\n" for a, b in entries), data))
        if side:
            path.with_suffix(side).write_bytes(mutated(lines(side_lines), data))
        reads_or_one_line_error(read_manifest, path)


# cases hypothesis found, pinned: each gave a traceback before the fix

@pytest.mark.parametrize("row, field", [
    ({"id": None, "audio": "0", "num_samples": 1, "sample_rate": 16000, "speaker": []}, "id"),
    ({"id": "a", "audio": "0", "num_samples": 1, "sample_rate": 16000, "speaker": []}, "speaker"),
    ({"id": "a", "audio": "0", "num_samples": 1, "sample_rate": 16000, "speaker": {"x": 1}}, "speaker"),
    ({"id": [1], "audio": "0", "num_samples": 1, "sample_rate": 16000}, "id"),
    ({"id": True, "audio": "0", "num_samples": 1, "sample_rate": 16000}, "id"),
    ({"id": "", "audio": "0", "num_samples": 1, "sample_rate": 16000}, "id"),
    ({"id": "a", "audio": 0, "num_samples": 1, "sample_rate": 16000}, "audio"),
    ({"id": "a", "audio": "0", "num_samples": 1.0, "sample_rate": 16000}, "num_samples"),
    ({"id": "a", "audio": "0", "num_samples": 1, "sample_rate": True}, "sample_rate"),
])
def test_jsonl_manifest_wrong_types(tmp_path, row, field):
    """A field of the wrong type is one error line naming the file, line and field, in the reader and the CLI."""
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text(lines([{"id": "ok", "audio": "0", "num_samples": 1, "sample_rate": 16000}, row]), encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(path))}:2: field {field} must be "):
        read_manifest(path)
    res = CliRunner().invoke(app, ["prepare", "subset", str(path), "--minutes", "1", "--out", str(tmp_path / "sub.jsonl")])
    assert res.exit_code == 1 and f"{path}:2: field {field} must be " in res.stderr, (res.output, res.exception)


def test_jsonl_manifest_speaker_kinds(tmp_path):
    """Integer ids and speakers are read as strings, a null speaker as none (one speaker per row)."""
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text(lines([{"id": 7, "audio": "/a.wav", "num_samples": 1, "sample_rate": 16000, "speaker": 19},
                           {"id": "b", "audio": "/b.wav", "num_samples": 1, "sample_rate": 16000, "speaker": None}]),
                    encoding="utf-8")
    rows = read_manifest(path)
    assert [r["id"] for r in rows] == ["7", "b"] and rows[0]["speaker"] == "19" and "speaker" not in rows[1]
    res = CliRunner().invoke(app, ["prepare", "subset", str(path), "--minutes", "1", "--out", str(tmp_path / "sub.jsonl")])
    assert res.exit_code == 0 and "2 utterances" in res.stderr + res.stdout, res.output


def test_jsonl_manifest_lone_surrogate(tmp_path):
    """A lone \\ud800 escape parses as JSON but could not be written back: an error naming the line."""
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a\\ud800", "audio": "/a.wav", "num_samples": 1, "sample_rate": 16000}\n', encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(path))}:1: not valid Unicode"):
        read_manifest(path)


@pytest.mark.parametrize("text, line", [
    ("0\n\t1\n", 2),  # empty path: Path('.').with_suffix raised ValueError
    ("0\na.wav\t1\n..\t1\n", 3),  # a directory, not a file
    ("0\nsub/\t1\n", 2),
    ("0\na.wav\t\u00b9\n", 2),  # '¹' passes str.isdigit but not int()
    ("0\na.wav\t\u0663\n", 2),  # Arabic-Indic three: int() takes it, fairseq would not
])
def test_fairseq_tsv_bad_lines(tmp_path, text, line):
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "train.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(path))}:{line}: expected "):
        read_manifest(path)


@pytest.mark.parametrize("text, message", [
    ('{"id": "a", "audio": "/a.wav", "num_samples": 1%s, "sample_rate": 16000}' % ("0" * 400), "field num_samples must be "),
    ('{"id": "a", "audio": "/a.wav", "num_samples": 1, "sample_rate": 1%s}' % ("0" * 400), "field sample_rate must be "),
    ('{"id": "a", "audio": "/a.wav", "num_samples": %s, "sample_rate": 16000}' % ("9" * 5000), "not valid JSON"),
    ("[" * 100000, "not valid JSON"),
])
def test_jsonl_manifest_huge_numbers_and_nesting(tmp_path, text, message):
    """Numbers past int64 (their duration overflowed a float), past Python's int digit limit, and
    arrays nested past the recursion limit: one error line, in the reader and `prepare subset`."""
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "m.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(path))}:1: {message}"):
        read_manifest(path)
    cli_gives_0_or_one_line("prepare", "subset", path, "--minutes", "1", "--out", tmp_path / "sub.jsonl")


@pytest.mark.parametrize("count", ["9" * 19, "9" * 5000])
def test_fairseq_tsv_huge_count(tmp_path, count):
    from w2vcli.data.manifest import read_manifest

    path = tmp_path / "train.tsv"
    path.write_text(f"/\na.wav\t{count}\n", encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(path))}:2: expected "):
        read_manifest(path)


def test_deep_json_in_score_and_lm_text(tmp_path):
    """`w2v score` and the LM's sentence reader on JSON nested too deep, or a non-string text."""
    from w2vcli.decode.lm import read_sentences
    from w2vcli.score import read_transcripts

    deep = tmp_path / "hyp.jsonl"
    deep.write_text("[" * 100000 + "\n", encoding="utf-8")
    for read in (read_transcripts, lambda p: list(read_sentences(p))):
        with pytest.raises(W2VError, match=rf"^{re.escape(str(deep))}:1: not a JSON object"):
            read(deep)
    cli_gives_0_or_one_line("score", "--ref", deep, "--hyp", deep)
    listed = tmp_path / "text.jsonl"
    listed.write_text('{"text": ["a"]}\n', encoding="utf-8")
    with pytest.raises(W2VError, match=rf"^{re.escape(str(listed))}:1: field text must be a string"):
        list(read_sentences(listed))


# --- transcripts --------------------------------------------------------------------------------


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["id", "text", "x"]), json_values, max_size=3)
                     | st.text(max_size=20), max_size=6),
       suffix=st.sampled_from([".jsonl", ".txt", ".trn"]), data=st.data())
def test_score_transcripts(rows, suffix, data):
    from w2vcli.score import read_transcripts

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"hyp{suffix}"
        path.write_bytes(mutated(lines(rows), data))
        reads_or_one_line_error(read_transcripts, path)
        cli_gives_0_or_one_line("score", "--ref", path, "--hyp", path)


@FUZZ
@given(text=st.lists(st.text(max_size=30), max_size=6), data=st.data())
def test_librispeech_transcripts(text, data):
    from w2vcli.data.librispeech import scan_chapter

    with tempfile.TemporaryDirectory() as tmp:
        chapter = Path(tmp) / "19" / "198"
        chapter.mkdir(parents=True)
        (chapter / "19-198.trans.txt").write_bytes(mutated("".join(f"19-198-{i:04d} {t}\n" for i, t in enumerate(text)), data))
        rows, problems, _report = reads_or_one_line_error(scan_chapter, str(chapter)) or ([], [], None)
        assert rows == []  # no audio beside the transcripts: every line is a problem, none a row


# --- TOML configs ---------------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if v == v and abs(v) != float("inf") else "nan"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


toml_scalars = st.one_of(st.booleans(), st.integers(-10, 10**6), st.floats(-1e3, 1e3), st.text(max_size=8))
KEYS = ["max_updates", "lr", "preset", "precision", "adam_betas", "tri_stage", "num_workers", "threads",
        "skip_bad_audio", "valid", "unknown_key", "seed", "clip_norm", "lr_schedule"]
MODEL_KEYS = ["hidden_size", "num_heads", "conv_dim", "feature_norm", "layer_norm_first", "dropout", "bogus"]


@FUZZ
@given(top=st.dictionaries(st.sampled_from(KEYS), toml_scalars | st.lists(toml_scalars, max_size=3), max_size=4),
       model=st.none() | st.dictionaries(st.sampled_from(MODEL_KEYS), toml_scalars | st.lists(st.integers(1, 64), max_size=3), max_size=3),
       task=st.sampled_from(["pretrain", "finetune"]), data=st.data())
def test_toml_config(top, model, task, data):
    from w2vcli.train.config import FinetuneConfig, PretrainConfig, read_toml, resolve

    cls = PretrainConfig if task == "pretrain" else FinetuneConfig
    text = "".join(f"{k} = {toml_value(v)}\n" for k, v in top.items())
    if model is not None:
        text += "[model]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in model.items())

    def load(path):
        layer = read_toml(path, cls)
        cfg = resolve(cls, None, [layer, {"train": "t.jsonl", "out": "o", "init": "none"}])
        cfg.check()
        from w2vcli.model.config import get_preset

        get_preset(cfg.preset).replace(**cfg.model)  # what the task does with the [model] table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(mutated(text, data))
        reads_or_one_line_error(load, path)


# --- vocabularies -------------------------------------------------------------------------------


@FUZZ
@given(mapping=st.dictionaries(st.text(max_size=4), json_values, max_size=6) | json_values,
       dict_lines=st.lists(st.text(max_size=12), max_size=6), data=st.data())
def test_vocabulary_files(mapping, dict_lines, data):
    from w2vcli.text import Vocabulary

    with tempfile.TemporaryDirectory() as tmp:
        vocab_json = Path(tmp) / "vocab.json"
        vocab_json.write_bytes(mutated(json.dumps(mapping), data))
        reads_or_one_line_error(Vocabulary.load, vocab_json)
        dict_ltr = Path(tmp) / "dict.ltr.txt"
        dict_ltr.write_bytes(mutated(lines(dict_lines), data))
        reads_or_one_line_error(Vocabulary.load, dict_ltr)


def test_fuzz_finds_what_it_should(tmp_path):
    """The harness itself: a reader that raises something else fails the check."""
    def broken(_path):
        raise KeyError("x")

    with pytest.raises(KeyError):
        reads_or_one_line_error(broken, tmp_path)
