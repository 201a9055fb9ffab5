"""End to end: `streamlit run app.py` in a subprocess, driven by headless Debian Chromium through Playwright.

Needs /usr/bin/chromium (`apt-get install chromium`; CI's .ci/run installs it) and the
`playwright` package (the [dev] extra). Playwright's own browser download is never used.

Screenshot of the results page: set QA_SEARCH_SCREENSHOT to the file to write (and optionally
QA_SEARCH_SCREENSHOT_INDEX to the index to show), e.g. for the README's picture::

    QA_SEARCH_SCREENSHOT=docs/screenshot-results.png QA_SEARCH_SCREENSHOT_INDEX=indexes/squad-dev \\
        python -m pytest tests/test_browser.py -k super_bowl
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from conftest import REPO, SUPER_BOWL_QUESTION

from pipeline.index import build_index

CHROMIUM = Path(os.environ.get("QA_SEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOAD_TIMEOUT_MS = 600_000  # first load of real weights on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(index: Path, **env: str) -> Iterator[str]:
    """`streamlit run app.py -- --index INDEX` on a free loopback port; yields its URL."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QA_SEARCH_")}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO), **env)
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--", "--index", str(index),
    ]
    proc = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not answer its health check within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def search(page, url: str, question: str) -> None:
    page.goto(url)
    box = page.get_by_placeholder("Ask a question")
    box.wait_for(timeout=LOAD_TIMEOUT_MS)  # the box appears once the index and models are loaded
    box.fill(question)
    box.press("Enter")
    page.locator(".qa-card").first.wait_for(timeout=LOAD_TIMEOUT_MS)


def test_super_bowl_question_shows_its_paragraph_first(browser, request, standin_reranker, standin_reader, tmp_path):
    index = Path(os.environ.get("QA_SEARCH_SCREENSHOT_INDEX") or request.getfixturevalue("squad_slice_index"))
    env = {"QA_SEARCH_RERANKER": str(standin_reranker), "QA_SEARCH_READER": str(standin_reader)}
    with running_app(index.resolve(), **env) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 1500})
        search(page, url, SUPER_BOWL_QUESTION)
        first = page.locator(".qa-card.qa-yes").first
        assert first.get_attribute("data-id") == "Super_Bowl_50#0"
        assert "Super Bowl 50 was an American football game" in first.inner_text()
        assert first.locator("mark.qa-term", has_text="AFC").count() >= 1
        # The reader's answer: above the cards, and marked inside its paragraph.
        assert page.locator(".qa-best-text").inner_text() == "Denver Broncos"
        assert first.locator("mark.qa-answer").inner_text() == "Denver Broncos"
        page.get_by_text("Total").first.wait_for()  # per-stage latency in the sidebar
        shot = Path(os.environ.get("QA_SEARCH_SCREENSHOT") or tmp_path / "results.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000

        # A narrow (phone-sized) window: the cards reflow, nothing scrolls sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(500)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        card = page.locator(".qa-card.qa-yes").first.bounding_box()
        assert card["x"] >= 0 and card["x"] + card["width"] <= 390
        page.screenshot(path=str(tmp_path / "results-narrow.png"))


@pytest.fixture
def payload_index(tmp_path, tiny_bi_encoder) -> Path:
    records = [
        {"id": "script", "title": "Script", "text": "<script>alert(1)</script> The capital of Atlantis is Poseidonia."},
        {"id": "img", "title": "Image", "text": "<img src=x onerror=alert(1)> Poseidonia is the capital of Atlantis."},
    ]
    corpus = tmp_path / "payload.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    build_index(corpus, tmp_path / "index", bi_encoder=str(tiny_bi_encoder), progress=False)
    return tmp_path / "index"


def test_html_payload_paragraphs_render_as_text(browser, payload_index, tiny_cross_encoder, tiny_reader):
    # Threshold 0 and an answer policy that never abstains: both paragraphs are shown as open cards whatever
    # the random reranker and reader say.
    never_abstains = payload_index.parent / "never-abstains.json"
    never_abstains.write_text(json.dumps({"paragraphs": 3}), encoding="utf-8")
    env = {"QA_SEARCH_RERANKER": str(tiny_cross_encoder), "QA_SEARCH_READER": str(tiny_reader), "QA_SEARCH_THRESHOLD": "0",
           "QA_SEARCH_ANSWER_POLICY": str(never_abstains)}
    with running_app(payload_index, **env) as url:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        search(page, url, "What is the capital of Atlantis?")
        page.locator(".qa-card").nth(1).wait_for()
        page.wait_for_timeout(1000)  # time for an onerror handler to fire, were there one
        text = " ".join(page.locator(".qa-card").all_inner_texts())
        assert "<script>alert(1)</script>" in text
        assert "<img src=x onerror=alert(1)>" in text
        assert page.get_by_text("<img src=x onerror=alert(1)>", exact=False).is_visible()
        assert page.locator(".qa-card img, .qa-card script").count() == 0
        assert dialogs == []
