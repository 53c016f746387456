"""Synthetic corpora for the training tests: each letter is a 80 ms tone, a space 40 ms of quiet.

The letter-to-frequency code makes CTC learnable by a tiny model in a few dozen updates, and
the varied tone sequences give pretraining something to predict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
LETTERS = "ABCDE"
FREQS = {c: 300.0 * 1.5**i for i, c in enumerate(LETTERS)}  # Hz


def render(text: str, rng: np.random.Generator) -> np.ndarray:
    parts = []
    for ch in text:
        n = int(0.08 * SR) if ch != " " else int(0.04 * SR)
        t = np.arange(n) / SR
        tone = 0.5 * np.sin(2 * np.pi * FREQS[ch] * t) if ch != " " else np.zeros(n)
        parts.append(tone + 0.01 * rng.standard_normal(n))
    return np.concatenate(parts).astype(np.float32)


def random_text(rng: np.random.Generator, words: int = 3) -> str:
    return " ".join("".join(rng.choice(list(LETTERS), size=rng.integers(2, 4))) for _ in range(words))


def make_corpus(root: Path, name: str, n: int, seed: int = 0, words: int = 3, fixed_len: int | None = None) -> Path:
    """n utterances under root/name/, manifest root/name.jsonl. With `fixed_len`, every file has
    exactly that many samples (cropped or zero-padded)."""
    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text = random_text(rng, words)
        wav = render(text, rng)
        if fixed_len:
            wav = np.pad(wav, (0, max(0, fixed_len - len(wav))))[:fixed_len]
        path = root / name / f"{name}-{i:03d}.wav"
        sf.write(path, wav, SR, subtype="FLOAT")
        rows.append({"id": f"{name}-{i:03d}", "audio": str(path), "num_samples": len(wav),
                     "sample_rate": SR, "text": text, "speaker": "s0"})
    manifest = root / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
