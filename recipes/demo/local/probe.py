"""What did pretraining learn? A linear CTC probe over letters on every layer of a frozen network.

    python recipes/demo/local/probe.py --model exp/pt/last.pt --train data/train-10m.jsonl \
        --valid data/dev-clean.jsonl [--random] [--updates 1500] [--out probe.json]

The network runs once over each manifest without masking or dropout; the output of the feature
projection (layer 0) and of every Transformer block (pre-LN: the residual stream) is kept, each
standardised per frame (a layer norm without weights, so a large residual stream does not
favour or handicap a layer). Then one linear CTC head per layer is trained on the cached
features (Adam, full batch) and scored by greedy CER on the validation manifest. `--random`
probes a network of the same architecture with freshly initialised weights (seeded), the
baseline that says how much of a layer's letter information comes from pretraining.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from w2vcli.data.manifest import read_manifest
from w2vcli.decode.ctc import GreedyDecoder
from w2vcli.model.load import load_model
from w2vcli.score import score_utterance
from w2vcli.text import Vocabulary


@torch.no_grad()
def layer_features(model, rows) -> list[list[torch.Tensor]]:
    """Per utterance, the standardised [T, D] output of layer 0 (projection) .. L (each block)."""
    enc = model.wav2vec2 if hasattr(model, "wav2vec2") else model
    out = []
    for r in rows:
        wav, sr = sf.read(r["audio"], dtype="float32")
        x = torch.from_numpy(wav)[None]
        lengths = torch.tensor([x.shape[1]])
        feats, fl = enc.extract_features(x, lengths, valid_group_norm=True)
        h, _ = enc.feature_projection(feats)
        e = enc.encoder
        h = h + e.pos_conv(h)
        states = [h]
        if not e.layer_norm_first:
            h = e.layer_norm(h)
        for layer in e.layers:
            h = layer(h, None)
            states.append(h)
        out.append([F.layer_norm(s[0], s.shape[-1:]) for s in states])
    return out


def probe(train_x, train_y, valid_x, valid_text, vocab: Vocabulary, updates: int, seed: int) -> dict:
    torch.manual_seed(seed)
    D = train_x[0].shape[1]
    head = torch.nn.Linear(D, len(vocab))
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    X = torch.nn.utils.rnn.pad_sequence(train_x, batch_first=True)
    lens = torch.tensor([len(x) for x in train_x])
    tgt = torch.cat([torch.tensor(y) for y in train_y])
    tl = torch.tensor([len(y) for y in train_y])
    for _ in range(updates):
        logp = F.log_softmax(head(X), -1).transpose(0, 1)
        loss = F.ctc_loss(logp, tgt, lens, tl, zero_infinity=True, reduction="sum") / len(train_x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec = GreedyDecoder(vocab)
    errs = n = werrs = wn = 0
    with torch.no_grad():
        for x, text in zip(valid_x, valid_text):
            hyp = dec.decode(head(x).numpy()).text
            u = score_utterance("u", text.split(), hyp.split())
            errs, n = errs + u.chars.errors, n + u.chars.ref_len
            werrs, wn = werrs + u.words.errors, wn + u.words.ref_len
    return {"train_ctc": float(loss), "cer": errs / max(n, 1), "wer": werrs / max(wn, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--random", action="store_true", help="probe a freshly initialised network of the same shape")
    ap.add_argument("--updates", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    if args.random:
        torch.manual_seed(args.seed)
        model = type(model)(model.config).eval()
    vocab = Vocabulary.load(args.vocab)
    train, valid = read_manifest(args.train), read_manifest(args.valid)
    tx, vx = layer_features(model, train), layer_features(model, valid)
    ty = [vocab.encode(r["text"]) for r in train]
    results = []
    for layer in range(len(tx[0])):
        r = probe([u[layer] for u in tx], ty, [u[layer] for u in vx], [r["text"] for r in valid], vocab,
                  args.updates, args.seed)
        r["layer"] = layer
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"model": args.model, "random": args.random, "layers": results}, f, indent=1)


if __name__ == "__main__":
    main()
