"""Shared test fixtures. Tests run on the CPU with tiny models; torch uses one thread so
parallel helpers and CI's two cores stay predictable.

Real speech and LM text ship with the repository (tests/data, sources and licences in
tests/data/README.md), so a clone on its own runs every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# `--precision auto` on a CPU picks bf16 where the CPU has it natively (w2vcli/cpu.py): pin it to
# fp32 so results do not depend on the machine; tests of the modes ask for them explicitly
os.environ.setdefault("W2V_CPU_MODE", "fp32")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # w2v's own thread choice respects it, in-process and in subprocesses

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_mini() -> Path:
    """Ten real utterances (about 49 s) in LibriSpeech layout: real-mini/test-real/SPK/CHAP/."""
    return DATA / "real-mini"


# --- decoding (tests/test_decode.py, test_lm.py, test_transcribe.py) ----------------------------


@pytest.fixture(scope="session")
def lm_text() -> Path:
    """The first 3,000 sentences of Moby Dick (gzip), for tiny n-gram LMs."""
    return DATA / "text" / "moby3k.txt.gz"


@pytest.fixture(scope="session")
def tiny_lm(lm_text, tmp_path_factory) -> Path:
    """A 3-gram KenLM binary (+ .unigrams.txt) from `lm_text`; skipped without KenLM's programs."""
    from w2vcli.decode.lm import LMBuildConfig, build_lm
    from w2vcli.errors import W2VError

    out = tmp_path_factory.mktemp("lm") / "moby3.bin"
    try:
        build_lm(LMBuildConfig(texts=(lm_text,), out=out, order=3, memory="50M"))
    except W2VError as exc:
        if "install_kenlm.sh" in str(exc):
            pytest.skip(str(exc))
        raise
    return out
