"""w2v: wav2vec 2.0 speech recognition from the command line."""

__version__ = "0.1.0"


def load_model(path, device="cpu", vocab=None):
    """Load a w2v, Hugging Face or fairseq checkpoint; see `w2vcli.model.checkpoint.load_model`."""
    from w2vcli.model.checkpoint import load_model as _load_model

    return _load_model(path, device=device, vocab=vocab)


def load_ctc_model(path, device="cpu", vocab=None):
    """A CTC model (for `w2vcli.decode`), or a W2VError saying what `path` holds; see `load_model`."""
    from w2vcli.model.checkpoint import load_ctc_model as _load_ctc_model

    return _load_ctc_model(path, device=device, vocab=vocab)


def transcribe(model, audio, options=None):
    """Transcribe `audio` (a path, or a 16 kHz mono waveform [S] as a numpy array or torch tensor)
    with a CTC model: a `Transcript` (`.hyp.text`, `.hyp.words` with frames and confidences,
    `.to_dict()` with times in seconds); `options`: `w2vcli.decode.transcribe.TranscribeOptions`.
    For many recordings keep a `w2vcli.decode.transcribe.Transcriber`: its decoder (and LM) loads once."""
    from w2vcli.decode.transcribe import TranscribeOptions
    from w2vcli.decode.transcribe import transcribe as _transcribe

    return _transcribe(model, audio, options or TranscribeOptions())


def align(model, audio, text, options=None, emission=None):
    """Forced alignment of `text` to `audio` (a path or a 16 kHz waveform [S]) with a CTC model:
    an `Alignment` of words and characters with times and scores; see `w2vcli.alignment.align`."""
    from w2vcli.alignment.align import AlignOptions
    from w2vcli.alignment.align import align as _align

    return _align(model, audio, text, options or AlignOptions(), emission)


__all__ = ["__version__", "load_model", "load_ctc_model", "transcribe", "align"]
