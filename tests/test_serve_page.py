"""The page `w2v serve` shows at /, in a real browser: Debian's headless chromium driven by
Selenium, against a real `w2v serve` on a free loopback port.

- A file chosen on the page, or dropped on it, goes through POST /v1/audio/transcriptions and
  shows the words (and times) that `w2v transcribe` prints for the same file; playing it
  highlights the word at the player's time.
- The microphone is chromium's fake capture device fed with a WAV of real speech
  (tests/data/real-mini): the page shows partial results while it records, and after Stop the
  words `w2v transcribe` finds in the audio the page sent (the page offers it as a WAV); that
  audio is the speech itself (correlation with the source above 0.99), so the capture and the
  page's resampling to 16 kHz lose nothing that matters.
- The page's resampler, at 44.1 and 48 kHz, returns speech to 16 kHz and filters out what
  16 kHz cannot hold (a 12 kHz whistle), instead of folding it into the speech band.
- With an API key, the page sends the key it is given, and says so when it has none.

The model is the tiny preset with random weights: its output is letter salad, but a
deterministic one, and so a sharp check that the page shows exactly what the model says.
Skipped without chromium, chromedriver or selenium (scripts/install_browser.sh installs them);
`make test-browser` runs only these tests.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from w2vcli.cli import app

from tiny_models import tiny_checkpoint  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    import selenium  # noqa: F401
except ImportError:  # pragma: no cover
    selenium = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver (scripts/install_browser.sh)"),
    pytest.mark.skipif(selenium is None, reason="needs selenium (pip install -e '.[dev]')"),
]

TIME_TOLERANCE = 0.011  # s: the server and the CLI may round word times differently by one ms
# the server's stream windows (kept centre, context each side): a stream's words are those of
# `w2v transcribe --chunk-seconds STREAM_CHUNK --context-seconds STREAM_CONTEXT` (w2vcli/serve/stream.py)
STREAM_CHUNK, STREAM_CONTEXT = 2.0, 1.0
KEY = "page-test-key"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A w2v CTC checkpoint of the tiny preset with random weights (varied output)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def speech(real_mini, tmp_path_factory) -> Path:
    """7.1 s of real read speech as a 16-bit WAV (what chromium's fake microphone plays)."""
    audio, rate = sf.read(real_mini / "test-real" / "8001" / "1" / "8001-1-0000.flac", dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"w2v serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"w2v serve did not answer {url}/health within {seconds:.0f} s")


@contextlib.contextmanager
def _serve(ckpt: Path, *options: str):
    """A real `w2v serve` on a free loopback port, with the stream windows the tests transcribe
    with; its base URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "w2vcli", "serve", str(ckpt), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--stream-chunk-seconds", str(STREAM_CHUNK), "--stream-context-seconds", str(STREAM_CONTEXT),
           *options]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


@pytest.fixture(scope="module")
def server(ckpt):
    with _serve(ckpt) as url:
        yield url


@pytest.fixture(scope="module")
def browser(speech):
    """Headless chromium whose microphone plays `speech` (looped)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech}", "--autoplay-policy=no-user-gesture-required"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, seconds: float = 60.0, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition, what)


def _state(driver) -> str:
    return driver.execute_script("return document.body.dataset.state")


def _finished(driver) -> None:
    state = _wait(driver, lambda d: _state(d) in ("done", "error") and _state(d), what="the page never finished")
    assert state == "done", driver.execute_script("return document.getElementById('status').textContent")


def _page_words(driver) -> list[tuple[str, float, float]]:
    return [(w, float(s), float(e)) for w, s, e in driver.execute_script(
        "return [...document.querySelectorAll('#words .word')].map(e => [e.textContent, e.dataset.start, e.dataset.end])")]  # fmt: skip


def _solo_words(ckpt: Path, audio: Path, *options: str) -> list[tuple[str, float, float]]:
    """What `w2v transcribe` prints for `audio` alone."""
    res = CliRunner().invoke(app, ["transcribe", str(ckpt), str(audio), "--format", "jsonl", "--device", "cpu", *options])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return [(w["word"], w["start"], w["end"]) for w in row["words"]]


def _same_words(page, solo) -> None:
    assert [w for w, _, _ in page] == [w for w, _, _ in solo]
    for (w, s, e), (_, s0, e0) in zip(page, solo):
        assert abs(s - s0) <= TIME_TOLERANCE and abs(e - e0) <= TIME_TOLERANCE, (w, s, e, s0, e0)


def test_a_chosen_file_shows_the_words_transcribe_finds_and_playback_highlights_them(server, browser, ckpt, speech):
    browser.get(server + "/")
    browser.find_element("id", "file").send_keys(str(speech))
    _finished(browser)
    page = _page_words(browser)
    assert len(page) >= 5
    _same_words(page, _solo_words(ckpt, speech))

    # play it: whatever word is highlighted holds the player's time (sampled in one script, so
    # the two readings are of the same moment, give or take one animation frame)
    browser.execute_script("document.getElementById('player').play()")
    seen, t_end = set(), time.monotonic() + 20
    while time.monotonic() < t_end and len(seen) < 4:
        t, word = browser.execute_script(
            "const c = document.querySelector('#words .word.current');"
            "return [document.getElementById('player').currentTime, c && [c.textContent, +c.dataset.start, +c.dataset.end]]")  # fmt: skip
        if word is not None:
            assert word[1] - 0.1 <= t <= word[2] + 0.1, (t, word)
            seen.add(tuple(word))
        time.sleep(0.05)
    browser.execute_script("document.getElementById('player').pause()")
    assert len(seen) >= 4, f"playback highlighted {len(seen)} words in 20 s"


def test_a_file_dropped_on_the_page_is_transcribed(server, browser, ckpt, speech):
    """A drop anywhere on the page (a DragEvent carrying the file, as a drag from the desktop
    makes) is transcribed, not opened by the browser."""
    browser.get(server + "/")
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const dt = new DataTransfer(); dt.items.add(new File([bytes], 'speech.wav', {type: 'audio/wav'}));"
        "document.querySelector('h1').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
        base64.b64encode(speech.read_bytes()).decode())  # fmt: skip
    _finished(browser)
    assert browser.current_url == server + "/"
    _same_words(_page_words(browser), _solo_words(ckpt, speech))


def test_the_microphone_streams_partials_then_the_words_transcribe_finds(server, browser, ckpt, speech, tmp_path):
    browser.get(server + "/")
    browser.find_element("id", "record").click()
    _wait(browser, lambda d: _state(d) in ("recording", "error"), what="recording never started")
    partials, t_end = [], time.monotonic() + 30
    while time.monotonic() < t_end:  # record 6 s of the looped speech, watching the partial results
        text, seconds = browser.execute_script(
            "return [document.getElementById('partial').textContent, parseFloat(document.getElementById('clock').textContent)]")
        if text:
            partials.append(text)
        if seconds >= 6.0:
            break
        time.sleep(0.1)
    assert _state(browser) == "recording"
    assert partials, "no partial result was shown while recording"
    browser.find_element("id", "stop").click()
    _finished(browser)
    page = _page_words(browser)

    recording = base64.b64decode(browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('download').href).then(r => r.arrayBuffer()).then(b => {"
        "  const u = new Uint8Array(b); let s = '';"
        "  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));"
        "  done(btoa(s)); })"))  # fmt: skip
    sent, rate = sf.read(io.BytesIO(recording), dtype="float32")
    assert rate == 16000 and sent.ndim == 1 and len(sent) >= 6 * rate
    path = tmp_path / "sent.wav"
    path.write_bytes(recording)
    assert len(page) >= 5
    # a stream runs its windows one by one: so does `--batch-size 1` (no batched rounding)
    _same_words(page, _solo_words(ckpt, path, "--chunk-seconds", str(STREAM_CHUNK), "--context-seconds", str(STREAM_CONTEXT),
                                  "--batch-size", "1"))  # fmt: skip

    # the page sent the speech: 4 s of it match the source at one lag
    source, _ = sf.read(speech, dtype="float32")
    start = int(np.argmax(sent != 0))  # Chrome's fake device may open with a few exact zeros: not the speech
    a = sent[start : start + 4 * rate]
    n = len(a) + len(source)
    corr = np.fft.irfft(np.fft.rfft(source, 2 * n) * np.conj(np.fft.rfft(a, 2 * n)))
    lag = int(np.argmax(corr))  # a[k] ~ source[k + lag]
    lag = lag - 2 * n if lag > n else lag
    looped = np.tile(source, 3)  # the fake device loops the file
    b = looped[len(source) + lag : len(source) + lag + len(a)]
    assert float(a @ b / np.sqrt((a @ a) * (b @ b))) > 0.99


def test_with_an_api_key_the_page_sends_the_key_it_is_given(ckpt, browser, speech):
    """REST sends `Authorization: Bearer KEY`, the websocket `?api_key=KEY` (browsers cannot set
    its headers); without the key both are refused and the page says so."""
    with _serve(ckpt, "--api-key", KEY) as url:
        browser.get(url + "/")
        browser.find_element("id", "file").send_keys(str(speech))
        _wait(browser, lambda d: _state(d) in ("done", "error"))
        assert _state(browser) == "error"
        assert "401" in browser.find_element("id", "status").text
        browser.find_element("id", "record").click()
        _wait(browser, lambda d: _state(d) == "error" and "refused" in d.find_element("id", "status").text,
              what="the page did not say the stream was refused")

        browser.find_element("id", "key").send_keys(KEY)
        browser.find_element("id", "file").send_keys(str(speech))
        _finished(browser)
        _same_words(_page_words(browser), _solo_words(ckpt, speech))
        browser.find_element("id", "record").click()
        _wait(browser, lambda d: float(d.find_element("id", "clock").text.split()[0]) >= 3.0, what="no audio recorded")
        browser.find_element("id", "stop").click()
        _finished(browser)
        assert _page_words(browser)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_pages_resampler_brings_speech_at_the_usual_rates_back_to_16k(server, browser, speech, rate):
    """The page's own resampler (what the microphone path uses, whatever rate the browser's
    AudioContext runs at), fed in 128-frame quanta as an AudioWorklet delivers them: speech taken
    from 16 kHz up to `rate`, plus a loud 12 kHz whistle that 16 kHz cannot hold, comes back as
    the original speech: the whistle is filtered out, not folded down to 4 kHz."""
    import soxr

    source, _ = sf.read(speech, dtype="float32")
    up = soxr.resample(source, 16000, rate).astype(np.float32)
    up += 0.3 * np.sin(2 * np.pi * 12000 * np.arange(len(up)) / rate).astype(np.float32)
    browser.get(server + "/")
    out = browser.execute_script(
        "const x = Float32Array.from(arguments[0]), r = new Resampler(arguments[1]), parts = [];"
        "for (let i = 0; i < x.length; i += 128) parts.push(...r.push(x.subarray(i, i + 128)));"
        "parts.push(...r.push(new Float32Array(0), true));"
        "return parts;", up.tolist(), rate)  # fmt: skip
    back = np.asarray(out, dtype=np.float32)
    assert abs(len(back) - len(source)) <= 1
    n = min(len(back), len(source))
    a, b = back[:n], source[:n]
    assert float(a @ b / np.sqrt((a @ a) * (b @ b))) > 0.999
    assert float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2))) < 0.01  # error 40 dB below the speech
