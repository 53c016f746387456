"""Transcription throughput (audio seconds per wall second) and the decoder's share of the time.

    OMP_NUM_THREADS=2 python bench/studies/transcribe_speed.py --lm 4gram.bin --presets small base --beam 50

For each preset a CTC model with random weights is built (speed does not depend on training)
and the real-mini utterances (tests/data/real-mini, 49 s, repeated `--repeat` times) are
transcribed with `transcribe_files`, greedy and with the LM at the given beam. Beam-search cost
depends on how peaked the emissions are, and a random model's are flat and spell nonsense,
which is not what a trained model gives. So the decoder is also timed alone on "trained-like"
emissions built from the reference transcripts (one letter per 2-4 frames, blanks between,
the right token at 0.6-0.99 probability, the rest spread over a few confusable letters).
Prints one JSON line per measurement and a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from w2vcli.decode.ctc import DecodingOptions, make_decoder
from w2vcli.decode.emissions import EmissionOptions
from w2vcli.decode.transcribe import TranscribeOptions, transcribe_files
from w2vcli.model.build import build_model, librispeech_vocab
from w2vcli.model.config import get_preset
from w2vcli.text import letters

REAL_MINI = Path(__file__).resolve().parents[2] / "tests" / "data" / "real-mini"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--lm", type=str, default=None, help="KenLM model for the beam-search runs")
    ap.add_argument("--beam", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="transcribe real-mini this many times")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=1, help="beam-search decoder processes")
    ap.add_argument("--data", type=Path, default=REAL_MINI)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files, texts = real_mini(args.data)
    files = files * args.repeat
    vocab = librispeech_vocab()
    results = []

    methods = [("greedy", DecodingOptions())]
    if args.lm:
        methods.append((f"lm beam {args.beam}", DecodingOptions(beam_size=args.beam, lm=args.lm, alpha=0.5, beta=1.0)))
    for preset in args.presets:
        torch.manual_seed(0)
        model = build_model("ctc", get_preset(preset), vocab).eval()
        for name, dec in methods:
            opts = TranscribeOptions(EmissionOptions(batch_size=args.batch_size, device="cpu"), dec, jobs=args.jobs)
            transcribe_files(model, files[:2], opts, lambda _t: None)  # warm-up (LM load, allocator)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            stats = transcribe_files(model, files, opts, lambda _t: None)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            row = {
                "preset": preset, "decoding": name, "emissions": "random model", "jobs": stats.decode_jobs,
                "audio_s": round(stats.audio_seconds, 1), "wall_s": round(stats.wall_seconds, 2),
                "audio_s_per_wall_s": round(stats.audio_seconds / stats.wall_seconds, 2),
                "model_s": round(stats.model_seconds, 2), "decoder_s": round(stats.decode_seconds, 2),
                "decoder_share": round(stats.decode_seconds / stats.wall_seconds, 3),
                "cpu_s": round(cpu_s, 2), "load_avg_1m": round(__import__("os").getloadavg()[0], 1),
            }  # fmt: skip
            if name != "greedy":  # decoder CPU time ~ this run's CPU minus the greedy run's (same model work)
                greedy_cpu = next(r["cpu_s"] for r in results if r["preset"] == preset and r["decoding"] == "greedy")
                row["decoder_cpu_s_est"] = round(cpu_s - greedy_cpu, 2)
                row["decoder_cpu_share_est"] = round((cpu_s - greedy_cpu) / cpu_s, 3)
            print(json.dumps(row), flush=True)
            results.append(row)

    # the decoder alone on trained-like emissions (independent of the preset)
    rng = np.random.default_rng(0)
    keys = [Path(f).name.split(".")[0] for f in files]
    emissions = [trained_like(texts[k], vocab, rng) for k in keys]
    audio_s = sum(len(e) for e in emissions) / 50.0
    for name, dec in methods:
        decoder = make_decoder(vocab, dec)
        decoder.decode(emissions[0])
        t0, c0 = time.perf_counter(), time.process_time()
        hyps = [decoder.decode(e).text for e in emissions]
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        row = {"preset": "-", "decoding": name, "emissions": "trained-like", "audio_s": round(audio_s, 1),
               "decoder_s": round(dt, 3), "decoder_audio_s_per_s": round(audio_s / dt, 1),
               "decoder_cpu_s": round(cpu, 3), "decoder_audio_s_per_cpu_s": round(audio_s / cpu, 1),
               "exact_transcripts": sum(h == texts[k] for h, k in zip(hyps, keys))}  # fmt: skip
        print(json.dumps(row), flush=True)
        results.append(row)


if __name__ == "__main__":
    main()
