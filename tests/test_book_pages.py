"""The built book, opened as a reader would: headless Chromium, with no network but localhost.

`make test` builds the book first (`make book`); these tests read `_build/html`.
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

def _chapters_in_toc() -> list[str]:
    """The chapter pages listed in _toc.yml, e.g. chapters/02_attention.html."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [f"{c['file']}.html" for part in toc.get("parts", []) for c in part.get("chapters", [])]


CHAPTERS = _chapters_in_toc()


def _figures_in_executed_notebook(page: str) -> int:
    """PNG outputs of the chapter as scripts/build_book.py executed it (_build/book_src/chapters/NN.ipynb)."""
    import json

    nb = json.loads((ROOT / "_build" / "book_src" / page.replace(".html", ".ipynb")).read_text())
    return sum("image/png" in out.get("data", {}) for cell in nb["cells"] for out in cell.get("outputs", []))

if not (HTML / "index.html").exists():
    pytest.fail("the book is not built: run `make book` (make test does) before these tests", pytrace=False)
if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail("chromium is missing; `make chromium` installs Debian's package", pytrace=False)
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


def open_page(browser, url):
    """Open url, refusing every request that leaves localhost; return (page, problems)."""
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))

    def only_localhost(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # the book must work offline: an outside request is a bug, not a slow load
            problems.append(f"outside request: {route.request.url}")
            route.abort()

    page.route("**/*", only_localhost)
    page.goto(url, wait_until="networkidle")
    return page, problems


def wait_for_mathjax(page):
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("() => MathJax.startup.promise")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_renders_offline(server, browser, chapter):
    page, problems = open_page(browser, f"{server}/{chapter}")
    wait_for_mathjax(page)
    assert problems == [], "\n".join(problems)
    assert page.locator("h1").first.inner_text().strip(), "the chapter has no title"
    # MathJax typeset the math: rendered containers exist and none reports a TeX error
    assert page.locator("mjx-container").count() >= 5
    assert page.locator("mjx-merror").count() == 0
    assert page.locator(".math").count() == 0 or page.locator(".math mjx-container").count() > 0
    # the executed notebook's figures are embedded and actually decoded by the browser
    sizes = page.eval_on_selector_all(".cell_output img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    figures = _figures_in_executed_notebook(chapter)
    assert figures >= 1 and len(sizes) == figures, (
        f"the executed chapter has {figures} figures; the page shows {len(sizes)}")
    assert all(w > 100 and h > 100 for w, h in sizes), f"a figure did not load: {sizes}"
    # code cells were executed at build: their printed output is on the page
    assert page.locator(".cell_output").count() >= 5
    page.close()


def test_home_page_navigation_and_search(server, browser):
    page, problems = open_page(browser, f"{server}/index.html")
    assert problems == [], "\n".join(problems)
    links = page.eval_on_selector_all("nav a.reference.internal", "as => as.map(a => a.getAttribute('href'))")
    for chapter in CHAPTERS:
        assert any(chapter in (href or "") for href in links), f"{chapter} is not in the navigation: {links}"
    page.close()
    page, problems = open_page(browser, f"{server}/search.html?q=softmax")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.locator("#search-results ul.search li a").all_inner_texts()
    assert problems == [], "\n".join(problems)
    assert any("Attention" in h for h in hits), f"searching 'softmax' did not find the attention chapter: {hits}"
    page.close()


INTERPRETABILITY = "chapters/15_interpretability.html"


@pytest.mark.skipif(INTERPRETABILITY not in CHAPTERS, reason="chapter 15 is not listed in _toc.yml")
def test_bertviz_views_draw_offline(server, browser):
    """Chapter 15's bertviz views: require.js, d3 and jQuery come from the book's own copies (_vendor/bertviz),
    and both views draw their SVG with every outside request refused."""
    page, problems = open_page(browser, f"{server}/{INTERPRETABILITY}")
    scripts = page.eval_on_selector_all("script[src]", "ss => ss.map(s => s.src)")
    assert any(s.endswith("/bertviz/require.js") for s in scripts), f"require.js is not loaded from the book: {scripts}"
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('div[id^=bertviz-]')].filter(v => v.querySelector('#vis svg')).length"
            " >= 2", timeout=30_000)
    except Exception:  # say why: usually a module that could not be loaded
        pytest.fail("the bertviz views did not draw within 30 s:\n" + "\n".join(problems), pytrace=False)
    views = page.eval_on_selector_all("div[id^=bertviz-]", """vs => vs.map(v => ({
        svg: v.querySelectorAll('#vis svg').length,
        shapes: v.querySelectorAll('#vis svg line, #vis svg rect, #vis svg path').length,
        texts: v.querySelectorAll('#vis svg text').length,
        layers: v.querySelectorAll('select#layer option').length}))""")
    assert len(views) == 2, f"expected a head view and a model view; found {views}"
    head, model = views
    assert head["layers"] == 4 and head["texts"] >= 20 and head["shapes"] >= 20, f"the head view is empty: {head}"
    assert model["svg"] >= 1 and model["shapes"] >= 16, f"the model view is empty: {model}"
    # the modules require.js loaded (from localhost: every other request is refused) are the shipped versions
    d3 = page.evaluate("() => new Promise(ok => require(['d3', 'jquery'], (d3, $) => ok([d3.version, $.fn.jquery])))")
    assert d3[0].startswith("5.") and d3[1].startswith("2."), f"unexpected d3 / jQuery versions {d3}"
    page.wait_for_timeout(500)  # late errors (a failed module load is reported after its timeout)
    assert problems == [], "\n".join(problems)
    page.close()
