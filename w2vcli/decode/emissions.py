"""Acoustic emissions: run a CTC model over waveforms and return log-probabilities [T,V].

Short files are batched with little padding: they run in sub-batches of similar length, and
group-norm feature encoders (BASE) normalise over each utterance's valid frames only, so each
utterance gets the emissions it would get alone.
Long files are streamed from disk in blocks and cut into overlapping windows:

    window k = [c_k - context, c_k + chunk + context) samples, c_k = k * chunk   (clipped to the file)

`chunk` and `context` are whole numbers of frames (multiples of the conv stride, 320 samples = 20 ms
for the paper's stack), so frame u of a window starting at sample w is frame w / stride + u of
the whole file. From window k only the frames of its centre [c_k, c_k + chunk) are kept; the
context on both sides gives the Transformer (and the conv receptive field) audio to look at.
The kept frames tile the file exactly, so the stitched emissions have as many frames as an
unchunked pass and are decoded once: a word on a chunk border is neither lost nor doubled.
Memory holds at most `batch_size` windows of audio plus the stitched emissions (T x V floats,
about 23 MB per hour for a 32-letter vocabulary).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr
import torch

from w2vcli.audio import SAMPLE_RATE
from w2vcli.cpu import PRECISIONS, QUANTIZE, Mode, auto_inference_mode, check_cpu_bf16
from w2vcli.errors import W2VError
from w2vcli.model.quantize import bf16_weights, quantize_int8
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC

BLOCK_SECONDS = 10.0  # audio read from disk at a time when streaming
MAX_PADDING = 0.1  # on a GPU, at most this share of a forward pass is padding (EmissionOptions.max_padding)


@dataclass(frozen=True)
class EmissionOptions:
    """How to run the acoustic model; validates itself."""

    batch_size: int = 8  # files (or windows of one long file) per forward pass
    chunk_seconds: float = 30.0  # kept centre of a window for long audio; 0 = never chunk
    context_seconds: float = 5.0  # audio on each side of a window's centre (--context-seconds)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 (or fp16 where bf16 is missing) on CUDA; on a CPU w2vcli.cpu.auto_inference_mode's rule
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    quantize: str = "auto"  # auto (as precision auto decides) | none | int8 (CPU: int8 Transformer Linears)
    # share of a forward pass that may be padding when batching files of different lengths;
    # None: 0 on a CPU (batching buys nothing there, padding costs time), 0.1 on a GPU
    max_padding: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise W2VError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.chunk_seconds < 0 or self.context_seconds < 0:
            raise W2VError("--chunk-seconds and --context-seconds must be >= 0")
        if self.max_padding is not None and not 0 <= self.max_padding < 1:
            raise W2VError(f"max_padding must be in [0, 1), got {self.max_padding}")
        if self.precision not in PRECISIONS:
            raise W2VError(f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.quantize not in QUANTIZE:
            raise W2VError(f"--quantize must be auto, none or int8, got {self.quantize!r}")
        if self.quantize == "int8" and self.precision in ("bf16", "fp16"):
            raise W2VError(f"--quantize int8 runs the rest of the model in fp32; drop --precision {self.precision}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise W2VError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise W2VError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)


def resolve_mode(device: torch.device, precision: str, quantize: str = "auto", exported: str | None = None) -> Mode:
    """What `--precision` and `--quantize` mean on this device; `exported`: the quantization an
    exported (ONNX) model was written with, None for a PyTorch model."""
    if exported is not None:  # an exported model runs as it was exported
        if precision not in ("auto", "fp32") or quantize == "int8":
            raise W2VError("--precision and --quantize apply to PyTorch models; an ONNX model runs as exported "
                           "(export it with `w2v export --to onnx --quantize int8` for int8)")
        return Mode("fp32", exported)
    if device.type == "cuda":
        if quantize == "int8":
            raise W2VError("--quantize int8 is for CPUs; on CUDA use --precision bf16 or fp16")
        if precision == "auto":
            return Mode("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        return Mode(precision)
    if precision == "fp16":
        raise W2VError("--precision fp16 is for CUDA; on a CPU use fp32, bf16 (CPUs with native bf16) or --quantize int8")
    if precision == "auto":
        mode = auto_inference_mode() if quantize == "auto" else Mode("fp32", quantize)
        return Mode("fp32") if quantize == "none" and mode.quantize == "int8" else mode
    if precision == "bf16":
        check_cpu_bf16()
    return Mode(precision, "int8" if quantize == "int8" else "none")


def autocast_dtype(mode: Mode) -> torch.dtype | None:
    """The autocast dtype of a mode (None: float32 throughout)."""
    return mode.precision.dtype


@dataclass
class Window:
    """One window of a long file: samples [start, start + len(wav)), centre from `keep_from`."""

    start: int  # first sample of the window in the file
    keep_from: int  # first sample of the kept centre (c_k)
    keep_to: int | None  # one past the kept centre; None for the last window (keep to the end)
    wav: np.ndarray  # [S] float32


def stream_audio(path: str, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Blocks of mono float32 audio at 16 kHz, read (and resampled) a piece at a time."""
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise W2VError(f"{path}: not readable audio ({exc})") from None
    with f:
        resampler = None
        if f.samplerate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(f.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        n = max(1, int(block_seconds * f.samplerate))
        while True:
            try:
                block = f.read(n, dtype="float32", always_2d=True)  # [S, C]
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise W2VError(f"{path}: audio could not be decoded past sample {f.tell()} ({exc})") from None
            last = len(block) < n
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                return


def iter_windows(blocks: Iterable[np.ndarray], chunk: int, context: int) -> Iterator[Window]:
    """Cut a stream of audio blocks into overlapping windows: `chunk` samples kept, `context`
    samples on each side (see the module docstring)."""
    blocks = iter(blocks)
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # file sample index of buf[0]
    eof = False
    k = 0
    while True:
        centre = k * chunk
        ws, we = max(0, centre - context), centre + chunk + context
        while not eof and buf_start + len(buf) < we:
            block = next(blocks, None)
            if block is None:
                eof = True
            else:
                buf = np.concatenate([buf, block])
        total = buf_start + len(buf)  # samples known so far (the file length once eof)
        if centre >= total:  # implies eof: the loop above reads until `we` or the end
            return
        last = eof and centre + chunk >= total
        yield Window(ws, centre, None if last else centre + chunk, buf[ws - buf_start : min(we, total) - buf_start].copy())
        if last:
            return
        k += 1
        drop = max(0, (k * chunk - context) - buf_start)  # samples no later window needs
        buf, buf_start = buf[drop:], buf_start + drop


def needs_chunking(num_samples: int, chunk: int, context: int) -> bool:
    """`transcribe`'s rule: audio longer than chunk + context is cut into windows; shorter audio
    (or any, with chunk 0) runs in one pass over the whole of it."""
    return chunk > 0 and num_samples > chunk + context


def kept_frames(win: Window, log_probs: np.ndarray, frame_stride: int) -> np.ndarray:
    """The frames of a window's kept centre [keep_from, keep_to) out of its log-probabilities [T,V]."""
    first = (win.keep_from - win.start) // frame_stride  # local index of the first kept frame
    stop = len(log_probs) if win.keep_to is None else min(len(log_probs), (win.keep_to - win.start) // frame_stride)
    return log_probs[first:stop]


class Emitter:
    """Runs a CTC model (`model(wav[B,S], lengths[B]) -> (logits[B,T,V], frame_lengths[B])`).

    The model is a torch module, or an exported one (`w2vcli.model.onnx.OnnxCTCModel`, whose
    `runtime` is "onnxruntime"), which takes and returns the same tensors. `self.mode` is the
    precision and quantization it runs in; on a CPU, int8 runs a quantized copy and bf16 a copy
    with bf16 weights (w2vcli/model/quantize.py): the caller's model is left as it is.
    """

    def __init__(self, model: torch.nn.Module, options: EmissionOptions = EmissionOptions()):
        self.options = options
        exported = getattr(model, "quantize", "none") if getattr(model, "runtime", "torch") != "torch" else None
        self.device = resolve_device("cpu" if exported is not None and options.device == "auto" else options.device)
        self.mode = resolve_mode(self.device, options.precision, options.quantize, exported)
        self.dtype = autocast_dtype(self.mode)
        if exported is None and self.device.type == "cpu" and str(self.mode) in ("int8", "bf16"):
            model = quantize_int8(model) if self.mode.quantize == "int8" else bf16_weights(model)
        self.model = model.to(self.device).eval()
        # padding must not change a row's group norm: w2v's CTC model is asked for valid-frame
        # statistics; any other (wav, lengths) model (an ONNX export computes them so) is called as it is
        self.forward_options = {"valid_group_norm": True} if isinstance(model, Wav2Vec2ForCTC) else {}
        cfg = model.config
        self.frame_stride = int(cfg.frame_stride)  # samples per frame
        self.receptive_field = int(cfg.receptive_field)  # samples seen by one frame
        fs = self.frame_stride
        self.chunk = int(round(options.chunk_seconds * SAMPLE_RATE / fs)) * fs
        self.context = int(round(options.context_seconds * SAMPLE_RATE / fs)) * fs  # samples on each side
        if self.chunk and self.context < self.receptive_field:
            raise W2VError(
                f"--context-seconds {options.context_seconds} is shorter than one frame's receptive field "
                f"({self.receptive_field / SAMPLE_RATE:.3f} s); use a few seconds"
            )
        self.model_seconds = 0.0  # wall time spent in the model (for throughput reports)
        self.max_padding = options.max_padding
        if self.max_padding is None:
            self.max_padding = MAX_PADDING if self.device.type == "cuda" else 0.0

    @property
    def frame_seconds(self) -> float:
        return self.frame_stride / SAMPLE_RATE

    def needs_chunking(self, num_samples: int) -> bool:
        return needs_chunking(num_samples, self.chunk, self.context)

    def sub_batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices into `lengths` grouped into forward passes that compute (almost) no padding.

        Utterances are taken longest first and a pass is closed when its padding would exceed
        `max_padding` of the samples it computes (0 on a CPU: only equal lengths share a pass).
        Padding only costs time: padded frames are masked out of attention, and `_forward` has
        group norm skip them too (`valid_group_norm`).
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep input order
        groups: list[list[int]] = []
        for i in order:
            if groups:
                g = groups[-1]
                longest, n = lengths[g[0]], len(g) + 1  # the pass if i joins: n rows of `longest`
                padding = longest * n - sum(lengths[j] for j in g) - lengths[i]
                if padding <= self.max_padding * longest * n:
                    g.append(i)
                    continue
            groups.append([i])
        return groups

    @torch.inference_mode()
    def batch(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities [T_i, V] (float32) for each waveform [S_i] (16 kHz mono), in order.

        The waveforms run in the sub-batches of `sub_batches` (zero-padded within one), so each
        utterance gets the emissions it would get alone (up to float rounding).
        """
        t0 = time.perf_counter()
        out: list[np.ndarray | None] = [None] * len(wavs)
        idx = [i for i, w in enumerate(wavs) if len(w) >= self.receptive_field]  # shorter: no frame
        for group in self.sub_batches([len(wavs[i]) for i in idx]):
            rows = [idx[g] for g in group]
            for i, lp in zip(rows, self._forward([wavs[i] for i in rows])):
                out[i] = lp
        V = len(self.model.vocab)
        result = [o if o is not None else np.zeros((0, V), dtype=np.float32) for o in out]
        self.model_seconds += time.perf_counter() - t0
        return result

    def _forward(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """One zero-padded forward pass: log-probabilities [T_i, V] for each waveform."""
        lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
        x = torch.zeros(len(wavs), int(lengths.max()), dtype=torch.float32)  # [B,S]
        for row, w in enumerate(wavs):
            x[row, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        x, lengths_dev = x.to(self.device, non_blocking=True), lengths.to(self.device)
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with autocast:
            logits, frame_lengths = self.model(x, lengths_dev, **self.forward_options)  # [B,T,V], [B]
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return [log_probs[row, :t] for row, t in enumerate(frame_lengths.tolist())]

    def stitched(self, windows: Iterable[Window]) -> tuple[np.ndarray, int]:
        """Emissions [T,V] of a long file from its windows, and its length in samples."""
        pieces: list[np.ndarray] = []
        num_samples = 0
        pending: list[Window] = []

        def flush() -> None:
            for win, lp in zip(pending, self.batch([w.wav for w in pending])):
                pieces.append(kept_frames(win, lp, self.frame_stride))
            pending.clear()

        for win in windows:
            num_samples = max(num_samples, win.start + len(win.wav))
            pending.append(win)
            if len(pending) == self.options.batch_size:
                flush()
        flush()
        V = len(self.model.vocab)
        return (np.concatenate(pieces) if pieces else np.zeros((0, V), np.float32)), num_samples

    def windows(self, wav: np.ndarray) -> list[Window]:
        """The windows of a waveform [S] in memory: one window of the whole of it when it is short
        (`needs_chunking`), else the overlapping windows of the module docstring."""
        if not self.needs_chunking(len(wav)):
            return [Window(0, 0, None, wav)]
        return list(iter_windows([wav], self.chunk, self.context))

    def emissions(self, wav: np.ndarray) -> np.ndarray:
        """Log-probabilities [T,V] of a waveform [S] (16 kHz mono) held in memory: what a file of
        that audio gets, short (one pass) or long (stitched windows)."""
        if not self.needs_chunking(len(wav)):
            return self.batch([wav])[0]
        return self.stitched(self.windows(wav))[0]

    def long_file(self, path: str) -> tuple[np.ndarray, int]:
        """Stream a long file from disk through the model in windows: (emissions [T,V], samples)."""
        return self.stitched(iter_windows(stream_audio(path), self.chunk, self.context))
