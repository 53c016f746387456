"""Fine-tuning's waveform augmentation: speed perturbation and additive noise (w2vcli/data/augment.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from train_data import make_corpus
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.commands.finetune import numbers
from w2vcli.data.augment import (NOISE_COLOURS, Augment, coloured_noise, noise_from_file, scan_noise_folder,
                                 speed_length, speed_perturb)
from w2vcli.data.dataset import AudioDataset, BucketBatchSampler, make_loader
from w2vcli.data.manifest import read_manifest
from w2vcli.errors import W2VError
from w2vcli.train.config import FinetuneConfig, read_toml, resolve, save_config
from w2vcli.train.distributed import Dist
from w2vcli.train.tasks import FinetuneTask

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    return make_corpus(root, "train", 24, seed=0), make_corpus(root, "dev", 6, seed=1)


def sine(freq: float, n: int = SR) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    return 10 * math.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))


def noise_dir(tmp_path):
    """A long stereo 8 kHz recording (cropped and resampled) and a 0.1 s one (looped)."""
    folder = tmp_path / "noise"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    sf.write(folder / "long.flac", 0.1 * rng.standard_normal((8000 * 5, 2)), 8000)
    sf.write(folder / "sub" / "short.wav", 0.3 * rng.standard_normal(1600).astype(np.float32), SR, subtype="FLOAT")
    return folder


# --- the two operations ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_the_factor(factor):
    out = speed_perturb(sine(1000.0), factor)
    assert len(out) == speed_length(SR, factor) == round(SR / factor)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak = np.argmax(spectrum) * SR / len(out)  # Hz
    assert abs(peak - 1000.0 * factor) < 2.0, peak  # tempo and pitch together, as `sox speed`


@pytest.mark.parametrize("source", [*NOISE_COLOURS, "folder"])
def test_noise_is_added_at_the_snr_asked(source, tmp_path):
    noise = str(noise_dir(tmp_path)) if source == "folder" else source
    clean = sine(440.0, 24000)
    fixed = Augment.from_options(7, noise=noise, snr=(12.5, 12.5), noise_prob=1.0)
    for index in range(6):
        assert snr_db(clean, fixed.add_noise(clean, 1, index)) == pytest.approx(12.5, abs=1e-3)
    ranged = Augment.from_options(7, noise=noise, snr=(5, 25), noise_prob=1.0)
    measured = [snr_db(clean, ranged.add_noise(clean, 1, i)) for i in range(40)]
    assert min(measured) >= 5 - 1e-3 and max(measured) <= 25 + 1e-3 and max(measured) - min(measured) > 10
    half = Augment.from_options(7, noise=noise, noise_prob=0.5)
    clean_ones = sum(np.array_equal(half.add_noise(clean, 2, i), clean) for i in range(40))
    assert 10 <= clean_ones <= 30


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    for colour, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        power = np.abs(np.fft.rfft(coloured_noise(colour, 1 << 16, rng))) ** 2
        f = np.arange(len(power))
        band = (f > 50) & (f < len(power) // 2)
        fitted = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.1), colour


def test_noise_files_are_cropped_resampled_or_looped(tmp_path):
    files = {f.path.rsplit("/", 1)[-1]: f for f in scan_noise_folder(str(noise_dir(tmp_path)))}
    assert sorted(files) == ["long.flac", "short.wav"]
    rng = np.random.default_rng(1)
    long = noise_from_file(files["long.flac"], 20000, rng)
    assert long.shape == (20000,) and long.dtype == np.float32 and np.isfinite(long).all() and long.std() > 0.05
    short = noise_from_file(files["short.wav"], 5000, rng)
    assert short.shape == (5000,) and np.array_equal(short[:3400], short[1600:5000])  # looped every 1600
    a, b = (noise_from_file(files["long.flac"], 8000, np.random.default_rng(s)) for s in (2, 3))
    assert not np.array_equal(a, b)  # a random offset


def test_a_noise_folder_without_readable_audio_is_one_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(W2VError, match=f"--noise {empty}: no readable noise audio in this folder"):
        Augment.from_options(1, noise=str(empty))
    (empty / "README.txt").write_text("not audio")
    (empty / "broken.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(W2VError, match=r"no readable noise audio in this folder \(1 audio files, none readable .*broken.wav"):
        Augment.from_options(1, noise=str(empty))
    sf.write(empty / "ok.wav", np.zeros(800, dtype=np.float32) + 0.1, SR)
    assert [f.path for f in Augment.from_options(1, noise=str(empty)).noise_files] == [str(empty / "ok.wav")]
    assert "leaving out 1 of 2 files" in capsys.readouterr().err
    with pytest.raises(W2VError, match="--noise nowhere/x: neither white, pink, brown nor a folder"):
        resolve(FinetuneConfig, "tiny", [{"init": "none", "train": "t", "out": "o", "noise": "nowhere/x"}]).check()


# --- determinism, workers, batches ----------------------------------------------------------------


def dataset(manifest, seed=3, speeds=(0.9, 1.0, 1.1), noise="white"):
    return AudioDataset(read_manifest(manifest), seed=seed, augment=Augment.from_options(seed, speeds, noise, (5, 20), 0.7))


def test_augmented_audio_is_a_function_of_seed_epoch_and_utterance(corpus):
    train, _ = corpus
    a, b, other = dataset(train), dataset(train), dataset(train, seed=4)
    plain = AudioDataset(read_manifest(train), seed=3)
    for i in range(6):
        assert torch.equal(a[(1, i)]["wav"], b[(1, i)]["wav"])
        assert torch.equal(a[(2, i)]["wav"], b[(2, i)]["wav"])
    assert any(not torch.equal(a[(1, i)]["wav"], other[(1, i)]["wav"]) for i in range(6))
    assert any(not torch.equal(a[(1, i)]["wav"], a[(2, i)]["wav"]) for i in range(6))
    assert any(not torch.equal(a[(1, i)]["wav"], plain[(1, i)]["wav"]) for i in range(6))
    for i in range(len(a)):  # lengths are what the sampler plans with
        assert len(a[(2, i)]["wav"]) == a.epoch_sizes(2)[i]


def test_workers_see_the_same_audio_and_batches(corpus):
    train, _ = corpus
    seen = []
    for workers in (0, 1, 2):
        ds = dataset(train)
        sampler = BucketBatchSampler(ds.sizes, 40000, seed=3, epoch_sizes=ds.epoch_sizes)
        loader = make_loader(ds, sampler, num_workers=workers)
        batches = []
        for epoch in (1, 2):
            sampler.set_position(epoch, 0)
            batches += [(b.index.tolist(), b.wav) for b in loader]
        loader.close()
        seen.append(batches)
    for other in seen[1:]:
        assert [i for i, _ in other] == [i for i, _ in seen[0]]
        assert all(torch.equal(w, w0) for (_, w), (_, w0) in zip(other, seen[0]))


def test_batches_stay_within_max_tokens_with_speed_perturbation(tmp_path):
    manifest = make_corpus(tmp_path, "same", 16, fixed_len=16000)  # all 1 s: 4 per batch without perturbation
    ds = dataset(manifest, speeds=(0.8, 1.0, 1.25), noise="")
    max_tokens = 4 * 16000
    fixed = BucketBatchSampler(ds.sizes, max_tokens, seed=3)  # planned from the unperturbed lengths
    sampler = BucketBatchSampler(ds.sizes, max_tokens, seed=3, epoch_sizes=ds.epoch_sizes)
    over = 0
    for epoch in (1, 2, 3):
        for s in (fixed, sampler):
            s.set_position(epoch, 0)
        over += sum(ds.epoch_sizes(epoch)[b].max() * len(b) > max_tokens for b in fixed.epoch_batches(epoch))
        loader = make_loader(ds, sampler)
        for batch in loader:
            assert batch.wav.numel() <= max_tokens
            assert batch.lengths.tolist() == ds.epoch_sizes(epoch)[batch.index.numpy()].tolist()
        assert sorted(i for b in sampler.epoch_batches(epoch) for i in b) == list(range(16))
    assert over > 0  # without the epoch's lengths the budget would break
    aug = Augment.from_options(0, (0.9, 1.0, 1.1))
    n = aug.longest_input(400_000)
    assert speed_length(n, 0.9) <= 400_000 < speed_length(n + 1, 0.9)


# --- configuration, the task, a resumed run -------------------------------------------------------


def test_options_from_toml_and_command_line(tmp_path):
    toml = tmp_path / "aug.toml"
    toml.write_text('speed_perturb = [0.9, 1.0, 1.1]\nnoise = "pink"\nnoise_snr = [5, 20]\nnoise_prob = 1.0\n')
    cfg = resolve(FinetuneConfig, "tiny", [read_toml(toml, FinetuneConfig), {"init": "none"}])
    assert (cfg.speed_perturb, cfg.noise, cfg.noise_snr, cfg.noise_prob) == ((0.9, 1.0, 1.1), "pink", (5.0, 20.0), 1.0)
    save_config(cfg, tmp_path / "saved.toml")
    again = resolve(FinetuneConfig, "tiny", [read_toml(tmp_path / "saved.toml", FinetuneConfig), {"speed_perturb": []}])
    assert (again.speed_perturb, again.noise_snr) == ((), (5.0, 20.0))
    assert numbers("0.9,1.0,1.1", "--speed-perturb") == [0.9, 1.0, 1.1] and numbers("none", "--speed-perturb") == []
    with pytest.raises(W2VError, match="--noise-snr: expected 2 numbers"):
        numbers("10", "--noise-snr", 2)
    for bad, match in (({"speed_perturb": [3.0]}, "speed factors must lie in"), ({"noise_snr": [30, 10]}, "MIN <= MAX"),
                       ({"noise_prob": 1.5}, "--noise-prob")):
        with pytest.raises(W2VError, match=match):
            resolve(FinetuneConfig, "tiny", [{"init": "none", "train": "t", "out": "o", **bad}]).check()
    toml.write_text('noise_snr = [10]\n')
    with pytest.raises(W2VError, match="'noise_snr' must be a list of 2 numbers"):
        read_toml(toml, FinetuneConfig)


def test_training_audio_is_augmented_and_validation_is_not(corpus, tmp_path):
    train, dev = corpus
    cfg = resolve(FinetuneConfig, "tiny", [{"init": "none", "train": str(train), "valid": str(dev), "out": str(tmp_path),
                                            "speed_perturb": [0.9, 1.1], "noise": "white", "max_tokens": 64000}])
    task = FinetuneTask(cfg, Dist())
    loader, sampler = task.train_loader()
    assert loader.dataset.augment is not None and sampler.epoch_sizes is not None
    assert task.valid_loader().dataset.augment is None


def w2v(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"w2v {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}") from result.exception
    return result.output


@pytest.mark.slow
def test_a_resumed_augmented_run_equals_an_uninterrupted_one(corpus, tmp_path):
    """12 updates (2.4 epochs) straight, or 7 then a resume in the middle of epoch 2: the same weights
    to the bit, so every batch after the resume was augmented alike (by a worker process that started
    afresh); without augmentation the weights differ."""
    train, dev = corpus
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    assert len(rows) == 24
    common = ["finetune", "--init", "none", "--train", train, "--valid", dev, "--preset", "tiny", "--max-tokens", 64000,
              "--seed", 3, "--num-workers", 1, "--lr", "1e-3", "--schedule-updates", 12, "--valid-interval", 5,
              "--log-interval", 5]
    aug = ["--speed-perturb", "0.9,1.0,1.1", "--noise", "pink", "--noise-snr", "5,20", "--noise-prob", "0.7"]
    load = lambda p: torch.load(p / "last.pt", map_location="cpu", weights_only=True)  # noqa: E731
    output = w2v(*common, *aug, "--out", tmp_path / "one", "--max-updates", 12)
    assert "augmenting the training audio: speed 0.9/1/1.1" in output and "pink noise at 5-20 dB SNR on 70%" in output
    w2v(*common, *aug, "--out", tmp_path / "two", "--max-updates", 7)
    assert load(tmp_path / "two")["data"] == {"epoch": 2, "batch": 2}
    w2v(*common, "--out", tmp_path / "two", "--max-updates", 12, "--resume")  # the options come from config.toml
    w2v(*common, "--out", tmp_path / "plain", "--max-updates", 12)
    a, b, plain = load(tmp_path / "one"), load(tmp_path / "two"), load(tmp_path / "plain")
    assert a["update"] == b["update"] == 12 and a["data"] == b["data"] and a["data"]["epoch"] >= 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert any(not torch.equal(a["model"][k], plain["model"][k]) for k in a["model"])
