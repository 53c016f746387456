"""lm_decode: pyctcdecode beam search with a KenLM 4-gram, audio seconds per wall second.

    python -m bench.suite.lm_decode --beam 50 --repeat 2 --preset base

The 4-gram is built once with `w2v lm build` from ../shared/data/text (all but the held-out
files) and cached in bench/.cache/lm/. A random model's emissions are flat, which makes beam
search far slower than on a trained model's, so both decoders run on "trained-like" emissions
of the real-mini transcripts (`bench.transcribe_speed.trained_like`, the decoding engineer's
generator). w2v: `BeamSearchDecoder` (what `w2v transcribe --lm` uses); transformers:
`Wav2Vec2ProcessorWithLM.decode` over a pyctcdecode decoder with the same LM, unigrams and
α/β. Then the LM decoder's share of `w2v transcribe --lm` time: the decoder time over the
model + decoder time of the same audio, the model time measured by `transcribe_files`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import CACHE, REAL_MINI, TEXT, emit, interleaved, median, report, timed
from bench.common import real_mini, trained_like

ALPHA, BETA = 0.5, 1.0


def cached_lm() -> Path:
    """bench/.cache/lm/4gram.bin, built by `w2v lm build` the first time."""
    out = CACHE / "lm" / "4gram.bin"
    if not out.is_file() or not (out.parent / "4gram.bin.unigrams.txt").is_file():
        texts = sorted(str(p) for p in TEXT.glob("*.txt.gz") if not p.name.startswith("heldout"))
        print(f"building the 4-gram from {len(texts)} text files (cached in {out.parent})", flush=True)
        cmd = [sys.executable, "-m", "w2vcli", "lm", "build", *texts, "--order", "4", "--out", str(out)]
        subprocess.run(cmd, check=True)
    return out


def hf_processor(vocab, lm: Path):
    """transformers' Wav2Vec2ProcessorWithLM over the same LM (vocab exported as HF's vocab.json)."""
    import transformers
    from pyctcdecode import build_ctcdecoder

    from w2vcli.decode.lm import read_unigrams, unigrams_path

    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        vocab.save(Path(tmp) / "vocab.json")
        tokenizer = transformers.Wav2Vec2CTCTokenizer(str(Path(tmp) / "vocab.json"))
    labels = [tokenizer.convert_ids_to_tokens(i) for i in range(len(vocab))]
    labels = ["" if t == tokenizer.pad_token else " " if t == tokenizer.word_delimiter_token else t for t in labels]
    decoder = build_ctcdecoder(labels, kenlm_model_path=str(lm), unigrams=read_unigrams(unigrams_path(lm)),
                               alpha=ALPHA, beta=BETA)  # fmt: skip
    fe = transformers.Wav2Vec2FeatureExtractor()
    return transformers.Wav2Vec2ProcessorWithLM(feature_extractor=fe, tokenizer=tokenizer, decoder=decoder)


def run(beam: int, repeat: int, reps: int, preset: str, threads: int = 2) -> float:
    import torch

    from w2vcli.decode.ctc import DecodingOptions, make_decoder
    from w2vcli.decode.emissions import EmissionOptions
    from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files
    from w2vcli.model.build import build_model, librispeech_vocab
    from w2vcli.model.config import get_preset

    torch.set_num_threads(threads)
    lm = cached_lm()
    vocab = librispeech_vocab()
    files, texts = real_mini(REAL_MINI)
    files = files * repeat
    rng = np.random.default_rng(0)
    emissions = [trained_like(texts[Path(f).name.split(".")[0]], vocab, rng) for f in files]
    audio_s = sum(len(e) for e in emissions) / 50.0
    ours = make_decoder(vocab, DecodingOptions(beam_size=beam, lm=str(lm), alpha=ALPHA, beta=BETA))
    processor = hf_processor(vocab, lm)
    kw = dict(beam_width=beam, beam_prune_logp=-10.0, token_min_logp=-5.0)
    a = [ours.decode(e).text for e in emissions]
    b = [processor.decode(e, **kw).text for e in emissions]
    same = sum(x == y for x, y in zip(a, b))
    exact = sum(x == texts[Path(f).name.split(".")[0]] for x, f in zip(a, files))
    print(f"verified: {same}/{len(a)} identical hypotheses from both; {exact}/{len(a)} equal the reference", flush=True)
    speeds = interleaved({
        "w2v": lambda: audio_s / timed(lambda: [ours.decode(e) for e in emissions]),
        "transformers": lambda: audio_s / timed(lambda: [processor.decode(e, **kw) for e in emissions]),
    }, reps)  # fmt: skip
    ratio = report(f"lm_decode_beam{beam}", speeds, f"audio s/s ({audio_s:.0f} s of trained-like emissions)")

    # share of `w2v transcribe --lm` time: model time from a greedy transcribe run of the same audio
    torch.manual_seed(0)
    model = build_model("ctc", get_preset(preset), vocab).eval()
    opts = TranscribeOptions(emission=EmissionOptions(batch_size=8, device="cpu"))
    transcribe_files(model, files[:2], opts, lambda _t: None)  # warm-up
    t0 = time.perf_counter()
    stats = transcribe_files(model, files, opts, lambda _t: None)
    wall = time.perf_counter() - t0
    decode_s = audio_s / median(speeds["w2v"])
    rest = wall - stats.decode_seconds  # model + audio loading, without the greedy decoder
    share = decode_s / (rest + decode_s)
    emit(f"ABS lm_share_{preset} w2v {100 * share:.1f} % of transcribe time (model+loading {rest:.2f} s, "
          f"LM beam {beam} {decode_s:.2f} s for {stats.audio_seconds:.0f} s of audio)")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1, help="decode real-mini this many times per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--preset", default="base", help="model for the share of transcribe time")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    run(a.beam, a.repeat, a.reps, a.preset, a.threads)


if __name__ == "__main__":
    main()
