"""`w2v align` and `w2vcli.align`: words as written, times against known boundaries, text that does
not match the audio, every output format, manifests and `--segment`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import w2vcli
from w2vcli.alignment.align import AlignOptions, align_emissions
from w2vcli.alignment.formats import render
from w2vcli.alignment.text import text_words
from w2vcli.cli import app
from w2vcli.decode.emissions import EmissionOptions
from w2vcli.errors import W2VError
from w2vcli.text import SPECIALS, TextRules, Vocabulary

VOCAB = Vocabulary(list(SPECIALS) + list("|ETAONIHSRDLUMWCFGYPBVK'XJQZ"))
BOUNDARY = VOCAB.index["|"]
FS = 0.02  # s per frame


def emissions(spoken: list[str], rng, letter=3, pause=12, lead=20):
    """Log-probs [T,V] of a model that hears `spoken` words (3 frames a letter, 12-frame pauses with a
    "|" spike), and each word's true (start, end) frame."""
    T = lead + sum(len(w) * letter + pause for w in spoken) + lead
    lp = rng.normal(-10, 1, (T, len(VOCAB)))
    lp[:, 0] = -0.02
    truth, t = [], lead
    for w in spoken:
        start = t
        for c in w:
            v = VOCAB.index[c]
            lp[t, v], lp[t, 0] = -0.05, -4.0  # the letter's peak, then two frames it shares with the blank
            lp[t + 1 : t + letter, v], lp[t + 1 : t + letter, 0] = -0.9, -0.6
            t += letter
        truth.append((start, t))
        lp[t + pause // 2, BOUNDARY], lp[t + pause // 2, 0] = -0.3, -1.5
        t += pause
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    return lp.astype(np.float32), truth


def run_align(lp, text, **kw):
    words = text_words(text, TextRules(), VOCAB)
    return align_emissions(lp, words, BOUNDARY, FS, AlignOptions(**kw), "x.wav")


def test_words_as_written_with_their_times_and_characters():
    rng = np.random.default_rng(0)
    lp, truth = emissions(["HELLO", "WORLD", "IT'S", "ME"], rng)
    a = run_align(lp, "“Hello,  world” -- it’s me!")
    assert [w.text for w in a.words] == ["“Hello,", "world” --", "it’s", "me!"]
    for w, (s, e) in zip(a.words, truth):
        assert abs(w.start - s * FS) < 1e-9 and abs(w.end - e * FS) <= 2 * FS + 1e-9, (w, s, e)
        assert not w.low and 0.3 < w.score <= 1
    assert [c.char for c in a.words[2].chars] == ["i", "t", "’", "s"]  # characters as written
    first = a.words[0].chars
    assert [c.char for c in first] == list("Hello") and all(c.end > c.start for c in first)
    assert [c.start for c in first] == sorted(c.start for c in first)
    assert a.unaligned == [] and a.text == "“Hello, world” -- it’s me!"


def test_an_unread_heading_is_flagged_and_the_rest_stays_put():
    rng = np.random.default_rng(1)
    spoken = ["IT", "WAS", "THE", "BEST", "OF", "TIMES", "IT", "WAS", "THE", "WORST"]
    lp, truth = emissions(spoken, rng)
    a = run_align(lp, "Chapter One. " + " ".join(spoken).lower())
    assert [w.low for w in a.words[:2]] == [True, True]  # never read: squeezed in and flagged
    for w, (s, e) in zip(a.words[2:], truth):
        assert abs(w.start - s * FS) <= FS + 1e-9 and abs(w.end - e * FS) <= 2 * FS + 1e-9
        assert not w.low


@pytest.mark.parametrize("star", [True, False])
def test_speech_not_in_the_text_goes_to_the_star(star):
    """A sentence is read that the text lacks: with the garbage unit it is reported as unaligned
    audio and every word keeps its time; without it the words around it are dragged."""
    rng = np.random.default_rng(2)
    spoken = ["ONE", "TWO", "THREE", "SOMETHING", "ELSE", "ENTIRELY", "SAID", "HERE", "FOUR", "FIVE", "SIX"]
    lp, truth = emissions(spoken, rng)
    text = "one two three four five six"
    a = run_align(lp, text, star=star)
    kept = [truth[i] for i in (0, 1, 2, 8, 9, 10)]
    errors = [max(abs(w.start - s * FS), abs(w.end - e * FS)) for w, (s, e) in zip(a.words, kept)]
    if star:
        assert max(errors) <= 2 * FS + 1e-9, errors
        assert len(a.unaligned) == 1
        s, e = a.unaligned[0]
        assert s <= truth[3][0] * FS + 0.1 and e >= truth[7][1] * FS - 0.1
        assert not any(w.low for w in a.words)
    else:
        assert max(errors) > 0.2 and a.unaligned == []  # what the star is for


def test_a_missing_sentence_in_the_audio_does_not_derail_what_follows():
    """The sentence is forced into a few frames somewhere near its place; its letters may borrow
    those of the words around it, which then move too, but every word moved by more than 0.1 s
    is flagged low, and the alignment is back on track two words later."""
    rng = np.random.default_rng(3)
    spoken = "A QUIET MORNING THE END OF WINTER WAS NEAR AND FROST WAS GONE".split()
    lp, truth = emissions(spoken, rng)
    text = "a quiet morning. She never came back that day. " + " ".join(spoken[3:]).lower()
    a = run_align(lp, text)
    missing = a.words[3:9]
    assert sum(w.low for w in missing) >= 5
    said = a.words[:3] + a.words[9:]
    err = [max(abs(w.start - s * FS), abs(w.end - e * FS)) for w, (s, e) in zip(said, truth)]
    assert all(e <= 2 * FS + 1e-9 for e in err[:2] + err[5:]), err  # from the third word after the gap
    assert all(e <= 0.1 or w.low for e, w in zip(err, said))  # a word moved by more is flagged


def test_characters_the_vocabulary_lacks_are_aligned_by_the_garbage_unit():
    rng = np.random.default_rng(4)
    lp, _ = emissions(["ROOM", "ONE"], rng)
    a = run_align(lp, "room 101 one")
    assert [w.text for w in a.words] == ["room", "101", "one"] and a.words[1].low


def test_text_errors_are_one_line():
    with pytest.raises(W2VError, match="no words"):
        text_words(" -- ... ", TextRules(), VOCAB)
    lp, _ = emissions(["AB"], np.random.default_rng(0), lead=1, pause=2)
    with pytest.raises(W2VError, match="needs at least"):
        run_align(lp[:5], "a much longer text than the audio")


# --- the command and the API on a model ---------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny

    torch.manual_seed(0)
    model = build_model("ctc", tiny(), VOCAB)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def utt(real_mini):
    """(audio, transcript) of one real utterance."""
    audio = sorted(real_mini.rglob("*.flac"))[0]
    trans = next(audio.parent.glob("*.trans.txt"))
    text = dict(l.split(" ", 1) for l in trans.read_text().splitlines())[audio.stem]
    return audio, text.strip()


def run(*args):
    return CliRunner().invoke(app, ["align", *map(str, args), "--device", "cpu"])


def test_every_format_from_the_command(ckpt, utt, tmp_path):
    audio, text = utt
    txt = tmp_path / "t.txt"
    txt.write_text(text.capitalize() + ".", encoding="utf-8")
    res = run(ckpt, audio, txt, "--format", "jsonl")
    assert res.exit_code == 0, res.output
    a = json.loads(res.stdout.splitlines()[0])
    assert [w["word"] for w in a["words"]] == (text.capitalize() + ".").split()
    assert all(0 <= w["start"] < w["end"] <= a["duration"] + 0.03 for w in a["words"])
    assert all(w["start"] <= c["start"] < c["end"] <= w["end"] for w in a["words"] for c in w["chars"])
    # the API gives the same alignment
    model = w2vcli.load_ctc_model(ckpt)
    api = w2vcli.align(model, str(audio), text.capitalize() + ".", emission=EmissionOptions(device="cpu"))
    assert api.to_dict() == a
    wav, _ = sf.read(audio, dtype="float32")
    assert [w.start for w in w2vcli.align(model, wav, text).words] == [w["start"] for w in a["words"]]

    for fmt in ("srt", "vtt", "textgrid", "ctm", "audacity"):
        res = run(ckpt, audio, txt, "--format", fmt, "--out", tmp_path / f"o.{fmt}")
        assert res.exit_code == 0, res.output
    ctm = (tmp_path / "o.ctm").read_text().splitlines()
    assert len(ctm) == len(a["words"]) and ctm[0].split()[:2] == [audio.stem, "1"]
    labels = (tmp_path / "o.audacity").read_text().splitlines()
    assert [l.split("\t")[2] for l in labels] == [w["word"] for w in a["words"]]
    srt = (tmp_path / "o.srt").read_text()
    assert srt.startswith("1\n00:00:") and a["words"][0]["word"] in srt
    grid = (tmp_path / "o.textgrid").read_text()
    assert grid.count('class = "IntervalTier"') == 2 and 'name = "chars"' in grid
    for tier in grid.split("item [")[2:]:  # intervals tile 0 .. xmax without gaps or overlaps
        xs = [float(x) for x in re.findall(r"xm(?:in|ax) = ([\d.e-]+)", tier)]
        bounds = list(zip(xs[2::2], xs[3::2]))
        assert bounds[0][0] == 0 and all(b[1] > b[0] for b in bounds)
        assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    texts = re.findall(r'text = "(.*)"', grid.split("item [2]")[0])
    assert [t for t in texts if t] == [w["word"] for w in a["words"]]


def test_manifest_and_usage_errors(ckpt, utt, tmp_path):
    audio, text = utt
    m = tmp_path / "m.jsonl"
    sizes = {"num_samples": 16000, "sample_rate": 16000}
    m.write_text(json.dumps({"id": "u1", "audio": str(audio), "text": text, **sizes}) + "\n"
                 + json.dumps({"id": "u2", "audio": str(tmp_path / "gone.flac"), "text": "hello", **sizes}) + "\n")
    res = run(ckpt, "--manifest", m, "--out", tmp_path / "a.jsonl")
    assert res.exit_code == 1 and "gone.flac" in res.stderr
    rows = [json.loads(l) for l in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u1"] and rows[0]["text"] == text
    res = run(ckpt, "--manifest", m, "--format", "textgrid")
    assert res.exit_code == 1 and "--out-dir" in res.stderr
    res = run(ckpt, "--manifest", m, "--format", "textgrid", "--out-dir", tmp_path / "grids")
    assert res.exit_code == 1 and [p.name for p in (tmp_path / "grids").iterdir()] == [f"{audio.stem}.TextGrid"]
    res = run(ckpt, audio)
    assert res.exit_code == 1 and "AUDIO and TEXT" in res.stderr
    res = run(ckpt, audio, tmp_path / "none.txt")
    assert res.exit_code == 1 and "none.txt" in res.stderr


def test_segment_writes_a_training_manifest(ckpt, real_mini, tmp_path):
    """Ten real utterances in one file with their texts: utterances of at most 8 s, audio as cut."""
    files = sorted(real_mini.rglob("*.flac"))
    trans = {}
    for t in real_mini.rglob("*.trans.txt"):
        trans.update(dict(l.split(" ", 1) for l in t.read_text().splitlines()))
    wav = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])
    long = tmp_path / "chapter.flac"
    sf.write(long, wav, 16000)
    txt = tmp_path / "chapter.txt"
    txt.write_text(" ".join(trans[f.stem].strip() for f in files))
    out, pieces = tmp_path / "train.jsonl", tmp_path / "pieces"
    res = run(ckpt, long, txt, "--segment", 8, "--min-score", 0, "--out", out, "--out-dir", pieces, "--no-star")
    assert res.exit_code == 0, res.output
    from w2vcli.data.manifest import read_manifest

    assert json.loads(out.read_text().splitlines()[0])["audio"].startswith("pieces/")  # relative to the manifest
    rows = read_manifest(out)  # as `w2v finetune --train` reads it
    assert len(rows) >= len(wav) / 16000 / 8
    assert " ".join(r["text"] for r in rows) == txt.read_text()  # nothing lost, nothing doubled
    for r in rows:
        info = sf.info(r["audio"])
        assert info.frames == r["num_samples"] and abs(info.duration - (r["end"] - r["start"])) < 0.01
        assert r["end"] - r["start"] <= 8 + 2 * 0.3
        assert set(r) >= {"id", "audio", "num_samples", "sample_rate", "text", "score"}
    res = run(ckpt, long, txt, "--segment", 8, "--min-score", 1.0, "--out", out, "--out-dir", pieces)
    assert res.exit_code == 0 and out.read_text() == "" and "wrote 0 of" in res.stderr


def test_segments_close_at_the_longest_pause_that_fits():
    from w2vcli.alignment.align import AlignedWord
    from w2vcli.alignment.segment import group_words

    times = [(0.0, 1.0), (1.1, 2.0), (2.1, 3.5), (4.3, 4.5), (4.6, 5.8), (5.9, 6.2)]
    words = [AlignedWord(f"w{i}", s, e, 1.0, [], False) for i, (s, e) in enumerate(times)]
    assert group_words(words, 5.0) == [(0, 3), (3, 6)]  # the 0.8 s pause, not the last fitting word
    assert group_words(words, 100.0) == [(0, 6)]
    assert group_words(words, 0.5) == [(i, i + 1) for i in range(6)]  # a word longer than the limit stands alone


def test_a_script_written_without_spaces():
    """Character units without a word boundary: every character gets its times, punctuation stays."""
    vocab = Vocabulary(list(SPECIALS) + list("你好世界"), word_boundary=None, pieces=False)
    rules = TextRules(case="keep", word_boundary=False)
    rng = np.random.default_rng(5)
    T = 40
    lp = rng.normal(-10, 1, (T, len(vocab)))
    lp[:, 0] = -0.02
    peaks = {"你": 5, "好": 12, "世": 24, "界": 30}
    for c, t in peaks.items():
        lp[t, vocab.index[c]], lp[t, 0] = -0.05, -4.0
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    words = text_words("你好，世界！", rules, vocab)
    a = align_emissions(lp.astype(np.float32), words, None, FS, AlignOptions())
    assert [w.text for w in a.words] == ["你好，世界！"]
    assert [(c.char, round(c.start / FS)) for c in a.words[0].chars] == list(peaks.items())
