"""ctc_inference: greedy transcription throughput, audio seconds per wall second.

    python -m bench.suite.ctc_inference --preset base --seconds 10 12 13 15 --reps 5

One batch of real-length utterances (cut from real speech), the same weights on both sides
(bench.models). w2v runs what `w2v transcribe` runs for short files: `Emitter.batch` (inference
mode, log-softmax; sub-batches that compute no padding) then `GreedyDecoder` per utterance;
transformers runs what its docs show: the model under `no_grad` on the zero-padded batch with
the attention mask, argmax, then `Wav2Vec2CTCTokenizer.batch_decode`. The logits of both models
on the zero-padded batch are checked equal on valid frames first.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from bench.common import interleaved, report, set_threads, timed
from bench.common import audio_batch, model_pair
from w2vcli.decode.ctc import GreedyDecoder
from w2vcli.decode.emissions import EmissionOptions, Emitter
from w2vcli.model.hf_dir import export_hf


def verify(ours, ref, wav, lengths) -> None:
    am = (torch.arange(wav.shape[1])[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        got, frames = ours(wav, lengths)
        exp = ref(wav, attention_mask=am).logits
    keep = (torch.arange(got.shape[1])[None, :] < frames[:, None])[:, :, None]
    torch.testing.assert_close(got * keep, exp * keep, atol=1e-4, rtol=1e-3)
    print(f"verified: logits {tuple(got.shape)} equal on valid frames (max |diff| "
          f"{float(((got - exp) * keep).abs().max()):.2e})", flush=True)


def run(preset: str, seconds: list[float], reps: int, threads: int = 2) -> float:
    import transformers

    set_threads(threads)
    ours, ref = model_pair("ctc", preset)
    wav, lengths = audio_batch(seconds)
    verify(ours, ref, wav, lengths)
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        export_hf(ours, tmp)
        tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp)
    emitter = Emitter(ours, EmissionOptions(device="cpu"))
    greedy = GreedyDecoder(ours.vocab)
    wavs = [wav[b, : int(n)].numpy() for b, n in enumerate(lengths)]
    am = (torch.arange(wav.shape[1])[None, :] < lengths[:, None]).long()
    audio_s = float(lengths.sum()) / 16000

    def ours_step():
        return [greedy.decode(lp).text for lp in emitter.batch(wavs)]

    def ref_step():
        with torch.no_grad():
            logits = ref(wav, attention_mask=am).logits
        return tokenizer.batch_decode(logits.argmax(dim=-1))

    speeds = interleaved({"w2v": lambda: audio_s / timed(ours_step), "transformers": lambda: audio_s / timed(ref_step)},
                         reps)  # fmt: skip
    label = "+".join(f"{s:g}" for s in seconds)
    return report(f"ctc_inference_{preset}", speeds, f"audio s/s (batch {label} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 12.0, 13.0, 15.0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    run(a.preset, a.seconds, a.reps, a.threads)


if __name__ == "__main__":
    main()
