"""Decoding: emissions from a CTC model, greedy and LM beam search, long-audio chunking,
output formats, and `w2v lm build`.

    ctc.py          DecodingOptions, GreedyDecoder, BeamSearchDecoder (pyctcdecode), make_decoder
    emissions.py    EmissionOptions, Emitter: batched / chunked model runs -> log-probs [T,V]
    transcribe.py   transcribe(model, audio) / Transcriber / transcribe_files(_to) / transcribe_manifest(_to) / tune_lm
    output.py       Output, transcript_writer: stdout, one --out file or --out-dir files per audio file
    formats.py      txt, jsonl, srt, vtt
    lm.py           KenLM n-gram building (lmplz, build_binary) and unigram lists
"""
