"""Small Common Voice-layout corpora spoken by espeak-ng (German, Russian, Mandarin), as 48 kHz MP3.

    make_commonvoice(root, "de") -> root/de/{clips/*.mp3, train.tsv, dev.tsv, test.tsv, validated.tsv}

Seven sentences per language: five in train, one each in dev and test, all in validated.
German uses the newer header (with sentence_id, sentence_domain), the others the older one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 48000  # Hz, Common Voice's older releases
OLD_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents",
              "variant", "locale", "segment"]
NEW_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
              "age", "gender", "accents", "variant", "locale", "segment"]

SENTENCES = {
    "de": ["Über den Fluß fährt ein Schiff.", "Die Größe der Bäume ist erstaunlich!",
           "Können Sie mir bitte helfen?", "Zwölf Boxkämpfer jagen Viktor quer über den Deich.",
           "Der Bäcker öffnet um sechs Uhr.", "Schöne Grüße aus München.", "Wir trinken heißen Tee."],
    "ru": ["Ёлка стоит в лесу.", "Съешь же ещё этих мягких французских булок!", "Мы пошли в магазин за хлебом.",
           "Как тебя зовут?", "Сегодня хорошая погода.", "Я люблю читать книги.", "Ёж живёт под ёлкой."],
    "cmn": ["我们今天去北京。", "你好，世界！", "这是一个测试。", "我喜欢喝茶。", "今天天气很好。",
            "他在学校学习中文。", "谢谢你的帮助。"],
}
VOICES = {"de": "de", "ru": "ru", "cmn": "cmn"}
SPLIT_OF = ["train"] * 5 + ["dev", "test"]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's audio for `text` at 48 kHz, float32 mono."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    import io

    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def make_commonvoice(root: Path, lang: str) -> Path:
    """A Common Voice language folder root/lang with MP3 clips and train/dev/test/validated tsv files."""
    folder = root / lang
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    header = NEW_HEADER if lang == "de" else OLD_HEADER
    rows: dict[str, list[str]] = {"train": [], "dev": [], "test": [], "validated": []}
    for i, sentence in enumerate(SENTENCES[lang]):
        name = f"common_voice_{lang}_{1000 + i}.mp3"
        speaker = f"{lang}speaker{i % 3}" + "0" * 40  # client ids are long hashes
        sf.write(folder / "clips" / name, speak(sentence, VOICES[lang], 150 + 15 * (i % 3), 40 + 10 * (i % 3)),
                 RATE, format="MP3")
        values = {"client_id": speaker, "path": name, "sentence_id": f"s{i}", "sentence": sentence,
                  "sentence_domain": "", "up_votes": "2", "down_votes": str(i % 2), "age": "", "gender": "",
                  "accents": "", "variant": "", "locale": lang, "segment": ""}
        line = "\t".join(values[c] for c in header)
        rows[SPLIT_OF[i]].append(line)
        rows["validated"].append(line)
    for split, lines in rows.items():
        (folder / f"{split}.tsv").write_text("\t".join(header) + "\n" + "".join(x + "\n" for x in lines),
                                             encoding="utf-8")
    return folder
