"""The course in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

Runs every cell of notebook 01's memory calculator (a temporary copy, cut to the cells it needs) through
JupyterLab's own "Run All Cells" menu, then checks that a cell's output and an ipywidgets slider render, and
that moving the slider with the mouse changes the output.
Screenshots (before and after the move) land in ``artifacts/browser/``. Needs Debian's ``chromium``
(``make browser`` installs it, on request only; without it the test is skipped, unless
``MINIPEFT_REQUIRE_BROWSER=1``, as in CI, makes that a failure) and the ``playwright`` Python package (the dev
extra); it never downloads a browser.
"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import free_port, stop_server

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 90_000
COURSE_NOTEBOOK = ROOT / "notebooks" / "01_why_finetune.ipynb"
NOTEBOOK = "01_memory_calculator.ipynb"
SLIDER = "LoRA rank r"  # the memory calculator's slider that the test moves


def _notebook() -> nbformat.NotebookNode:
    """A temporary copy of notebook 01 cut to its memory calculator: the introduction, every code cell up to
    and including ``setup_notebook()`` (the Colab cell too), and the cell that shows the calculator."""
    assert COURSE_NOTEBOOK.exists(), f"{COURSE_NOTEBOOK} is missing; the browser test opens its memory calculator"
    nb = nbformat.read(COURSE_NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup_at = next(i for i, cell in enumerate(code) if "setup_notebook(" in cell.source)
    calculator = [cell for cell in code if "MemoryCalculator(" in cell.source]
    assert calculator, f"{COURSE_NOTEBOOK.name} no longer shows the MemoryCalculator; point the browser test elsewhere"
    nb.cells = [nb.cells[0], *code[: setup_at + 1], calculator[0]]
    for cell in code:
        cell.outputs, cell.execution_count = [], None
    return nb


def _chromium_or_skip() -> Path:
    """Debian's chromium, else a skip that says how to get it (a failure where MINIPEFT_REQUIRE_BROWSER=1, as in CI)."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = (f"{CHROMIUM} is missing: `make browser` installs it (Debian's chromium package, through apt-get as "
               "root or with sudo); set-up never installs it by itself.")
    if os.environ.get("MINIPEFT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} MINIPEFT_REQUIRE_BROWSER=1 requires this test to run.")
    pytest.skip(message)



@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a fresh folder with the test notebook, on 127.0.0.1 with a token; yields its URL."""
    work, home = tmp_path / "work", tmp_path / "jupyter"
    work.mkdir()
    nbformat.write(_notebook(), work / NOTEBOOK)
    settings = home / "settings" / "@jupyterlab"
    for extension, plugin, value in [("apputils-extension", "notification", '{"fetchNews": "false"}'),
                                     ("notebook-extension", "tracker", '{"autoStartDefaultKernel": true}')]:
        (settings / extension).mkdir(parents=True, exist_ok=True)  # no news pop-up, no kernel dialog
        (settings / extension / f"{plugin}.jupyterlab-settings").write_text(value)
    port, token = free_port(), os.urandom(12).hex()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "MINIPEFT_PROFILE": "ci", "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--allow-root", "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
         "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start on {url}:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, token
    finally:
        stop_server(server)
        log.close()


def test_notebook_runs_and_its_slider_responds_in_chromium(lab):
    chromium = _chromium_or_skip()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("The browser test needs the `playwright` package (dev extra): pip install -e '.[dev]'")
    url, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "failure.png").unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1700})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}&reset")
            expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
            expect(page.locator(".jp-Dialog")).to_have_count(0)

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            banner = page.locator(".jp-OutputArea-output").filter(has_text="minipeft profile: ci")
            expect(banner, "the setup_notebook() cell printed no banner").to_be_visible()
            slider = page.locator(".widget-slider").filter(has_text=SLIDER)
            expect(slider, "the ipywidgets slider did not render").to_be_visible()
            summary = page.locator(".widget-html").filter(has_text="trainable of")
            expect(summary).to_contain_text("LoRA r=4 ")
            readout = slider.locator(".widget-readout")
            expect(readout).to_have_text("4")
            chart = page.locator(".widget-image")
            expect(chart, "the memory chart did not render").to_be_visible()
            chart_before = chart.get_attribute("src")
            page.screenshot(path=ARTIFACTS / "01_memory_calculator_before.png", full_page=True)

            handle, track = slider.locator(".noUi-handle"), slider.locator(".noUi-base")
            handle.scroll_into_view_if_needed()  # the mouse can only drag what is on screen
            box, bar = handle.bounding_box(), track.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(bar["x"] + 0.75 * bar["width"], box["y"] + box["height"] / 2, steps=10)
            page.mouse.up()

            expect(readout, "the slider did not move").not_to_have_text("4")
            moved = readout.inner_text()
            expect(summary, "the output did not follow the slider").to_contain_text(f"LoRA r={moved} ")
            expect(chart, "the chart was not redrawn").not_to_have_attribute("src", chart_before)
            page.screenshot(path=ARTIFACTS / "01_memory_calculator_after.png", full_page=True)
            assert int(moved) > 4
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()


def test_a_missing_chromium_says_how_to_get_it_and_fails_where_required(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "chromium")
    monkeypatch.delenv("MINIPEFT_REQUIRE_BROWSER", raising=False)
    expected = (f"{tmp_path}/chromium is missing: `make browser` installs it (Debian's chromium package, through "
                "apt-get as root or with sudo); set-up never installs it by itself.")
    with pytest.raises(pytest.skip.Exception) as skipped:
        _chromium_or_skip()
    assert str(skipped.value) == expected
    monkeypatch.setenv("MINIPEFT_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        _chromium_or_skip()
    assert str(failed.value) == f"{expected} MINIPEFT_REQUIRE_BROWSER=1 requires this test to run."


def test_a_slide_deck_renders_styled_with_the_network_off(tmp_path):
    """`make slides`' deck of notebook 03, opened from disk in headless Chromium with the network off: reveal.js (the
    local copy beside the deck) styles it and counts every slide; no Colab badge or stamp line is on a slide."""
    chromium = _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    from minipeft.tools import build_slides

    deck, slides = build_slides.build(ROOT / "notebooks" / "03_lora.ipynb", tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    remote = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, offline=True)
        page = context.new_page()
        page.on("request", lambda request: request.url.startswith("file:") or remote.append(request.url))
        try:
            page.goto(deck.as_uri())
            expect(page.locator(".reveal.ready"), "reveal.js did not start").to_have_count(1, timeout=30_000)
            page.screenshot(path=ARTIFACTS / "slides_offline_03_lora.png")
            assert page.evaluate("Reveal.getTotalSlides()") == slides > 1
            theme = (deck.parent / page.get_attribute("#theme", "href")).read_text()  # the local theme's stylesheet
            styled = page.evaluate("""() => [getComputedStyle(document.querySelector('.reveal .slides')).position,
                getComputedStyle(document.documentElement).getPropertyValue('--r-link-color').trim()]""")
            assert styled[0] == "absolute" and f"--r-link-color: {styled[1]};" in theme, (
                f"reveal.js's CSS or its theme did not load: {styled}")
            text = page.locator(".reveal .slides").inner_text()
            assert "Stored outputs" not in text and "Open In Colab" not in page.content()
        finally:
            browser.close()
    assert all("/mathjax/" in url for url in remote), f"the deck asked the network for more than MathJax: {remote}"
