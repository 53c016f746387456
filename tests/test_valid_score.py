"""Fine-tuning's validation scores as `w2v score` does, and best.pt follows the figure `score`
quotes: WER for spaced text, CER for scripts written without spaces (where WER is the sentence
error rate). Two made-up models are validated on a Chinese manifest: one misses one character
in every sentence (low CER, every sentence wrong), the other gets one sentence right and the
other wholly wrong (half the sentences right, high CER); the first must be the better one."""

from __future__ import annotations

import json

import numpy as np
import torch

from w2vcli.audio import write_flac
from w2vcli.score import score_texts
from w2vcli.text import TextRules
from w2vcli.train.config import FinetuneConfig, resolve
from w2vcli.train.distributed import Dist
from w2vcli.train.tasks import FinetuneTask

TRAIN = ["你好世界", "谢谢你们", "世界你好", "我们谢谢"]
VALID = {"v0": "你好世界", "v1": "谢谢你们"}
FRAMES = 40  # output frames the made-up models give every utterance


def manifest(folder, name: str, texts: dict[str, str], seconds: dict[str, float]) -> str:
    (folder / name).mkdir(parents=True)
    rows = []
    for i, (uid, text) in enumerate(texts.items()):
        n = int(seconds[uid] * 16000)
        write_flac(folder / name / f"{uid}.flac", 0.1 * np.random.default_rng(i).standard_normal(n))
        rows.append({"id": uid, "audio": str(folder / name / f"{uid}.flac"), "num_samples": n,
                     "sample_rate": 16000, "text": text})
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


class Transcribes(torch.nn.Module):
    """A CTC 'model' that emits a fixed transcript per utterance, told apart by its length."""

    def __init__(self, vocab, by_length: dict[int, str]):
        super().__init__()
        self.vocab, self.by_length = vocab, by_length

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.zeros(len(lengths), FRAMES, len(self.vocab))
        logits[:, :, 0] = 10.0  # blank
        for b, n in enumerate(lengths.tolist()):
            for i, ch in enumerate(self.by_length[n]):
                logits[b, 2 * i + 1, 0] = 0.0
                logits[b, 2 * i + 1, self.vocab.index[ch]] = 10.0
        return logits, torch.full((len(lengths),), FRAMES)


def test_unspaced_best_is_chosen_by_the_cer_that_score_quotes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    TextRules(word_boundary=False).save(data / "text_rules.json")
    train = manifest(data, "train", {f"t{i}": t for i, t in enumerate(TRAIN)}, {f"t{i}": 1.0 for i in range(4)})
    seconds = {"v0": 1.0, "v1": 1.5}
    valid = manifest(data, "valid", VALID, seconds)
    cfg = resolve(FinetuneConfig, "tiny", [{"init": "none", "train": train, "valid": valid, "out": str(tmp_path / "exp"),
                                            "max_tokens": 64000, "num_workers": 0}])
    task = FinetuneTask(cfg, Dist())
    assert task.vocab.word_boundary is None  # character units, no "|"
    length = {uid: int(s * 16000) for uid, s in seconds.items()}
    near = {"v0": "你好世们", "v1": "谢谢你界"}  # one character wrong in each: CER 2/8, every sentence wrong
    half = {"v0": "你好世界", "v1": "世界我好"}  # one sentence right, the other wholly wrong: CER 4/8
    results = {}
    for name, hyps in (("near", near), ("half", half)):
        model = Transcribes(task.vocab, {length[uid]: text for uid, text in hyps.items()})
        results[name] = task.validate(model, task.valid_loader())
        report = score_texts(VALID, hyps, rules=task.text_rules)  # what `w2v score` would say
        assert report.headline == "cer"
        assert results[name].metrics["cer"] == report.cer and results[name].metrics["wer"] == report.wer
    assert results["near"].metrics["cer"] < results["half"].metrics["cer"]
    assert results["near"].metrics["wer"] > results["half"].metrics["wer"]
    # the engine keeps the checkpoint whose score list compares lowest
    assert list(results["near"].score) < list(results["half"].score)
