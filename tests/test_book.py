"""The offline book: a static site built from a run folder, opened in Chromium with no network.

The run folder is made here by executing two tiny notebooks through the course runner (math, a plot,
a progress bar on stderr, the injected parameters), never the course notebooks. Chromium is Debian's;
the browser test is skipped only outside CI when it is missing (see ``test_widgets_browser``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from regkit.course.__main__ import main
from regkit.course.book import INJECTED_LABEL, build_book
from regkit.course.runner import run_course
from tests.test_widgets_browser import CHROMIUM_ARGS, REPO, require_chromium

REMOTE_RESOURCE = re.compile(r"""(?:src\s*=\s*["']?|<link[^>]*href\s*=\s*["']?|url\(\s*["']?|import\(\s*["'])https?:""",
                             re.I)


def fixture_notebook(path: Path, heading: str) -> None:
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell(f"# {heading}\n\nThe norm $\\lVert w\\rVert^2$ and $$\\sum_i x_i^2.$$"),
        v4.new_code_cell('profile = "quick"\nscale = 2', metadata={"tags": ["parameters"]}),
        v4.new_code_cell('import sys\nsys.stderr.write(str(50) + "%|#####     | 5/10 [00:01<00:01]\\r")\n'
                         'print("loss", 0.5 * scale)'),
        v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()"),
    ]
    nb = v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("book")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    fixture_notebook(notebooks / "01_first.ipynb", "First page")
    fixture_notebook(notebooks / "02_second.ipynb", "Second page")
    run = run_course("quick", None, {}, notebooks_dir=notebooks, out_dir=root / "run")
    assert not run.failed, [o.message for o in run.failed]
    return root / "run"


@pytest.fixture(scope="module")
def site(run_folder) -> Path:
    return build_book(run_folder, run_folder.parent / "site").parent


def test_book_has_an_index_a_page_per_notebook_and_the_summary(site):
    assert sorted(p.name for p in site.glob("*.html")) == ["01_first.html", "02_second.html", "index.html"]
    index = (site / "index.html").read_text()
    assert '<a href="01_first.html">First page</a>' in index and '<a href="02_second.html">Second page</a>' in index
    assert "<table>" in index and "01_first" in index  # summary.md's status table
    page = (site / "01_first.html").read_text()
    assert 'href="02_second.html"' in page and 'href="index.html"' in page
    assert "mathjax/MathJax.js?config=" in page and (site / "mathjax" / "MathJax.js").exists()


def test_book_pages_reference_no_network_resource(site):
    for page in site.glob("*.html"):
        text = page.read_text()
        assert not REMOTE_RESOURCE.search(text), f"{page.name}: {REMOTE_RESOURCE.search(text).group(0)}"


def test_book_drops_progress_bars_and_labels_the_injected_parameters(run_folder, site):
    executed = (run_folder / "01_first.ipynb").read_text()
    assert "50%|" not in executed and "loss 1.0" in executed  # the runner's saved copy has no bar either
    page = (site / "01_first.html").read_text()
    assert "50%|" not in page
    assert "loss 1.0" in page  # stdout is kept
    assert "Parameters of this run, injected by papermill" in page and INJECTED_LABEL.startswith("# Parameters")


def test_book_without_a_run_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["book", "--run", str(tmp_path / "missing")]) == 2
    assert f"run folder {tmp_path / 'missing'} does not exist: run the course first" in capsys.readouterr().err


def test_book_opens_in_chromium_with_no_broken_link_missing_image_or_request(site, tmp_path):
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    requested = []

    def local_only(route) -> None:
        if urlparse(route.request.url).scheme == "file":
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            context.route("**/*", local_only)
            page = context.new_page()
            for html_page in sorted(site.glob("*.html")):
                page.goto(html_page.as_uri())
                links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
                local = [urlparse(link) for link in links if link.startswith("file:")]
                assert local, f"{html_page.name}: no navigation links"
                for link in local:
                    assert Path(link.path).exists(), f"{html_page.name}: broken link {link.geturl()}"
                broken = page.eval_on_selector_all("img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).length")
                assert broken == 0, f"{html_page.name}: {broken} images missing"
            page.goto((site / "01_first.html").as_uri())
            assert page.locator("img").count() == 1
            page.wait_for_selector(".MathJax, .MathJax_Display", timeout=30_000)  # typeset by the local MathJax
            (REPO / "runs").mkdir(exist_ok=True)
            page.screenshot(path=str(REPO / "runs" / "book-screenshot.png"), full_page=True)
        finally:
            context.close()
    assert requested == []
