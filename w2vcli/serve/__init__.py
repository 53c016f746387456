"""`w2v serve`: a model behind OpenAI's `/v1/audio/transcriptions` and a websocket with live results.

    engine.py   Engine: one model shared by every client; Batcher (forward passes across clients),
                decoding off the event loop (thread or forked decoder processes)
    stream.py   StreamState: a live stream cut into the windows `transcribe` stitches, segmented
                on silence, with partial results over the not yet final tail
    app.py      the FastAPI app: routes, limits, API key, CORS, errors as JSON
    static/     the browser page served at /

Protocol and limits: docs/serve.md.
"""
