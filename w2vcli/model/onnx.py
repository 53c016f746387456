"""ONNX: export a CTC model to one `.onnx` file, and run such a file with onnxruntime.

    export_onnx(model, "model.onnx")                     # fp32
    export_onnx(model, "model-int8.onnx", quantize="int8")
    onnx_model = load_onnx("model.onnx")                 # OnnxCTCModel, used like Wav2Vec2ForCTC:
    logits, frame_lengths = onnx_model(wav, lengths)     # [B,T,V] float32, [B] int64 (torch tensors)

The graph (shape legend: B batch, S samples, T frames, V vocabulary; all three dynamic):

    inputs   waveform [B,S] float32 (16 kHz, zero-padded), lengths [B] int64 (valid samples per row)
    outputs  logits [B,T,V] float32, frame_lengths [B] int64 (valid frames per row)

A zero-padded row gets the logits it gets alone: attention ignores padded frames, input
normalisation (LARGE) and BASE's group norm take statistics over each row's valid samples
and frames only (the model's `valid_group_norm=True`, exported as masked sums).

int8 (`quantize="int8"`): onnxruntime's dynamic quantization of the MatMuls with a weight
operand inside the Transformer blocks (the same layers `--quantize int8` quantizes in PyTorch):
int8 weights, activations quantized on the fly. The conv stack, attention's own products and
the CTC head stay fp32.

What a transcription needs besides the graph travels in the file's `metadata_props`: key
"w2v" holds the JSON of `checkpoint_dict(model)` without the weights (model config,
vocabulary tokens, word boundary, units, text rules), read back with the same functions that
read a w2v checkpoint; "w2v_quantize" says "none" or "int8".

The exporter is torch's (`torch.onnx.export(dynamo=True)`, which needs the `onnxscript`
package); the legacy TorchScript exporter is deprecated in torch 2.13 and is not used.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from w2vcli.errors import W2VError
from w2vcli.model.checkpoint import checkpoint_dict, vocab_from_checkpoint
from w2vcli.model.config import ModelConfig
from w2vcli.model.wav2vec2 import Wav2Vec2ForCTC
from w2vcli.text import TextRules

INPUTS = ("waveform", "lengths")
OUTPUTS = ("logits", "frame_lengths")
META_KEY = "w2v"  # metadata_props key: JSON of the checkpoint without weights
QUANTIZE_KEY = "w2v_quantize"
MAX_ONNX_BYTES = 2**31 - 1  # protobuf's limit for one file (weights inside); LARGE (1.3 GB) fits
EXTRA = "pip install 'w2vcli[onnx]' (onnx, onnxruntime, onnxscript)"


def _require(*modules: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise W2VError(f"{what} needs {', '.join(missing)}: {EXTRA}")


@contextlib.contextmanager
def quiet():
    """Keep the exporter's and quantizer's chatter (deprecations, progress, hints) off the console."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir", "root")
    loggers = [logging.getLogger(n if n != "root" else None) for n in names]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


# --- export ----------------------------------------------------------------------------------------


def metadata(model) -> dict[str, str]:
    """The metadata_props an fp32 export of `model` carries (see the module docstring)."""
    meta = {k: v for k, v in checkpoint_dict(model).items() if k != "model"}
    return {META_KEY: json.dumps(meta, ensure_ascii=False), QUANTIZE_KEY: "none"}


def export_onnx(model, path: str | os.PathLike, quantize: str = "none") -> Path:
    """Write a w2v CTC model as an ONNX file (atomically: temp file + rename). Returns the path."""
    if not isinstance(model, Wav2Vec2ForCTC):
        raise W2VError(f"--to onnx exports CTC models; this is a {type(model).__name__} (fine-tune it first)")
    if quantize not in ("none", "int8"):
        raise W2VError(f"--quantize must be none or int8, got {quantize!r}")
    _require("onnx", "onnxscript", what="ONNX export")
    if quantize == "int8":
        _require("onnxruntime", what="ONNX int8 quantization")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size > MAX_ONNX_BYTES:
        raise W2VError(f"the model's weights take {size / 2**30:.1f} GiB; one ONNX file holds at most 2 GiB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".w2v-onnx-", dir=path.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        program = _torch_export(model)
        for key, value in metadata(model).items():
            program.model.metadata_props[key] = value
        with quiet():
            program.save(str(fp32), external_data=False)
        result = fp32
        if quantize == "int8":
            result = Path(tmp) / "int8.onnx"
            quantize_onnx(fp32, result)
        os.replace(result, path)
    return path


class _ValidGroupNorm(torch.nn.Module):
    """`model(wav, lengths)` with group norm over each row's valid frames: what the graph computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(wav, lengths, valid_group_norm=True)  # padded rows get what they get alone


def _torch_export(model):
    """torch.onnx.export of a copy of `model` with dynamic B and S; group norm over valid frames."""
    cfg = model.config
    model = _ValidGroupNorm(copy.deepcopy(model).cpu().eval()).eval()
    n = 16000  # an example batch of two rows, one padded (1 s and 0.75 s)
    wav = torch.randn(2, n) * 0.1
    lengths = torch.tensor([n, 3 * n // 4])
    wav[1, lengths[1]:] = 0.0
    B = torch.export.Dim("batch", min=1, max=4096)
    S = torch.export.Dim("samples", min=cfg.receptive_field, max=16000 * 3600 * 4)
    with quiet(), torch.no_grad():
        program = torch.onnx.export(
            model, (wav, lengths), dynamo=True, input_names=list(INPUTS), output_names=list(OUTPUTS),
            dynamic_shapes=({0: B, 1: S}, {0: B}), optimize=True, verbose=False,
        )  # fmt: skip
    frames = program.model.graph.outputs[0].shape[1]  # named by the exporter after its formula in S
    if not isinstance(frames, int):
        program.rename_axes({frames: "frames"})
    return program


def _transformer_matmuls(model_proto) -> list[str]:
    """Names of the MatMul nodes of the Transformer blocks whose second operand is a weight."""
    weights = {t.name for t in model_proto.graph.initializer}
    names = []
    for node in model_proto.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        if ".encoder.layers." in scopes:
            names.append(node.name)
    return names


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an int8 copy of an fp32 file from `export_onnx` (its Transformer MatMuls quantized)."""
    _require("onnx", "onnxruntime", what="ONNX int8 quantization")
    # lazy: optional extra [onnx]: onnx / onnxruntime, where installed
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get(QUANTIZE_KEY, "none") != "none":
        raise W2VError(f"{src} is already quantized ({meta[QUANTIZE_KEY]})")
    nodes = _transformer_matmuls(proto)
    if not nodes:
        raise W2VError(f"{src}: found no Transformer MatMul to quantize (not written by `w2v export --to onnx`?)")
    with quiet():
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         weight_type=QuantType.QInt8, per_channel=False)  # fmt: skip
    out = onnx.load(str(dst))
    del out.metadata_props[:]  # the quantizer may keep or drop them: write them again
    for key, value in {**meta, QUANTIZE_KEY: "int8"}.items():
        out.metadata_props.add(key=key, value=value)
    onnx.save(out, str(dst))
    return Path(dst)


# --- running an exported model ---------------------------------------------------------------------


class OnnxCTCModel:
    """An exported CTC model run by onnxruntime, with what the Emitter and decoders use of a
    `Wav2Vec2ForCTC`: `model(wav[B,S], lengths[B]) -> (logits[B,T,V], frame_lengths[B])`,
    `.config` (ModelConfig: frame stride, receptive field), `.vocab`, `.text_rules`.

    It runs on the CPU only, in the precision it was exported with (`.quantize`). The
    onnxruntime session starts at the first call, with torch's intra-op thread count then.
    """

    runtime = "onnxruntime"  # the Emitter asks this instead of treating it as a torch module

    def __init__(self, path: str | os.PathLike, config, vocab, text_rules, quantize: str):
        self.path, self.config, self.vocab, self.text_rules, self.quantize = Path(path), config, vocab, text_rules, quantize
        self._session = None

    def to(self, device) -> "OnnxCTCModel":
        if torch.device(device).type != "cpu":
            raise W2VError(f"{self.path}: an ONNX model runs on the CPU with onnxruntime; use --device cpu")
        return self

    def eval(self) -> "OnnxCTCModel":
        return self

    def session(self):
        if self._session is None:
            # lazy: optional extra [onnx]: onnx / onnxruntime, where installed
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3  # errors only
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        return self._session

    def __call__(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = {"waveform": wav.detach().cpu().float().numpy(), "lengths": lengths.detach().cpu().long().numpy()}
        logits, frame_lengths = self.session().run(list(OUTPUTS), feeds)
        return torch.from_numpy(logits), torch.from_numpy(frame_lengths)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file (without loading its weights into a session)."""
    # lazy: optional extra [onnx]: onnx / onnxruntime, where installed
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a file that is not ONNX
        raise W2VError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return {p.key: p.value for p in proto.metadata_props}


def load_onnx(path: str | os.PathLike, vocab=None) -> OnnxCTCModel:
    """An `OnnxCTCModel` for a file written by `export_onnx`; `vocab` overrides the stored vocabulary."""
    _require("onnx", "onnxruntime", what=f"{path}: running an ONNX model")
    meta = read_metadata(path)
    if META_KEY not in meta:
        raise W2VError(f"{path}: an ONNX model without w2v's metadata (export it with `w2v export --to onnx`)")
    try:
        info = json.loads(meta[META_KEY])
        config = ModelConfig.from_dict(info["model_config"])
        stored = vocab_from_checkpoint(info)
        rules = TextRules.from_dict(info["text_rules"], f"{path}: text_rules") if info.get("text_rules") else None
    except (ValueError, KeyError, TypeError) as exc:
        raise W2VError(f"{path}: damaged w2v metadata ({type(exc).__name__}: {exc})") from None
    if vocab is not None and len(vocab) != len(stored):
        raise W2VError(f"{path}: the vocabulary has {len(vocab)} tokens but the model has {len(stored)} outputs")
    vocab = vocab or stored
    rules = rules or TextRules.for_vocabulary(vocab.tokens)
    return OnnxCTCModel(path, config, vocab, rules, meta.get(QUANTIZE_KEY, "none"))
