"""`w2v prepare synth`: speaker and sentence disjointness, determinism, LibriSpeech layout."""

import hashlib
import shutil

import pytest
import soundfile as sf

from w2vcli.data.librispeech import prepare_librispeech
from w2vcli.data.synth import SUBSETS, SynthConfig, make_speakers, plan, synthesize
from w2vcli.errors import W2VError


def test_default_plan_is_disjoint():
    cfg = SynthConfig(train_hours=2.0, dev_minutes=10, test_minutes=10)
    tasks = plan(cfg)
    speakers = {s: {t.speaker.id for t in tasks if t.subset == s} for s in SUBSETS}
    sentences = {s: {x for t in tasks if t.subset == s for x in t.sentences} for s in SUBSETS}
    assert len(speakers["train-clean"]) >= 24 and len(speakers["dev-clean"]) == len(speakers["test-clean"]) == 4
    for a, b in (("train-clean", "dev-clean"), ("train-clean", "test-clean"), ("dev-clean", "test-clean")):
        assert not speakers[a] & speakers[b] and not sentences[a] & sentences[b]
    train_sents = [x for t in tasks if t.subset == "train-clean" for x in t.sentences]
    assert len(train_sents) == len(set(train_sents))  # no sentence twice while the pool lasts
    assert sum(t.budget for t in tasks if t.subset == "train-clean") == pytest.approx(7200)
    spks = make_speakers(40, 0)
    settings = [(s.engine, s.voice, s.stretch, s.speed) for s in spks]
    assert len(set(settings)) == len(settings)
    assert sum(s.engine == "espeak" for s in spks) <= len(spks) // 8  # few robotic voices
    assert plan(cfg) == tasks


def _digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synth.done"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    for prog in ("flite", "festival", "espeak-ng"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} is not installed")
    root = tmp_path_factory.mktemp("synth")
    # 1 dev + 1 test + 7 train speakers, about one utterance each: flite, festival and espeak all used
    cfg = SynthConfig(train_hours=35 / 3600, dev_minutes=0.1, test_minutes=0.1, train_speakers=7,
                      heldout_speakers=1, seed=7)
    synthesize(cfg, root / "a", jobs=2)
    return cfg, root


def test_tiny_corpus_layout_and_determinism(tiny):
    cfg, root = tiny
    a = root / "a"
    assert (a / "SPEAKERS.TXT").read_text().count("train-clean") == 7
    flacs = sorted(a.glob("*/*/*/*.flac"))
    assert flacs and all(sf.info(f).samplerate == 16000 and sf.info(f).channels == 1 for f in flacs)
    engines = {line.split("|")[-1].split()[0] for line in (a / "SPEAKERS.TXT").read_text().splitlines()
               if not line.startswith(";")}
    assert engines == {"flite", "festival", "espeak"}
    synthesize(cfg, root / "b", jobs=1)  # another scheduling of the same tasks: same bytes
    assert _digest(root / "a") == _digest(root / "b")
    synthesize(cfg, root / "b", jobs=1)  # finished: skipped
    with pytest.raises(W2VError, match="other settings"):
        synthesize(SynthConfig(seed=8), root / "b")


def test_tiny_corpus_prepares_with_disjoint_speakers_and_sentences(tiny, tmp_path):
    _, root = tiny
    results = prepare_librispeech(root / "a", tmp_path, jobs=1)
    assert set(results) == set(SUBSETS) and not any(r.problems for r in results.values())
    spk = {n: {r["speaker"] for r in res.rows} for n, res in results.items()}
    txt = {n: {r["text"] for r in res.rows} for n, res in results.items()}
    assert len(spk["train-clean"]) == 7 and len(spk["dev-clean"]) == len(spk["test-clean"]) == 1
    for x, y in (("train-clean", "dev-clean"), ("train-clean", "test-clean"), ("dev-clean", "test-clean")):
        assert not spk[x] & spk[y] and not txt[x] & txt[y]
    hours = results["train-clean"].hours
    assert 20 / 3600 < hours < 60 / 3600
