"""A readable offline book: the executed notebooks of a run folder as a static HTML site.

``build_book(run_dir, out_dir)`` (``python -m regkit.course book [--run DIR] [--out DIR]``, ``make book``)
writes ``index.html`` (the course map and the run's ``summary.md`` table) and one page per executed
notebook ``NN_topic.ipynb`` of ``run_dir`` (outputs and plots embedded), linked by previous / contents /
next bars. Nothing is fetched from the network: math is typeset by a local copy of MathJax 2 (from the
``jupyter-server-mathjax`` package) in ``out_dir/mathjax``, no CDN script is referenced, and widgets are
shown by their static fallbacks. Progress bars on stderr (tqdm) and widget views are dropped; the cell
that papermill injects with the run's parameters is labelled as such.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html

from regkit.course.notebook import NOTEBOOK_NAME

MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's "42%|████" text bar
INJECTED_LABEL = "# Parameters of this run, injected by papermill (the course runner)\n"
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block jupyter_widgets %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block extra_css %}<style>""" + """
.book-nav { display: flex; justify-content: space-between; padding: 8px 16px; background: #f3f3f3;
            border-bottom: 1px solid #ddd; font: 14px sans-serif; }
</style>{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.book_nav }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.book_nav }}{{ super() }}{% endblock body_footer %}
"""
INDEX_STYLE = """body { font: 15px/1.5 sans-serif; max-width: 1100px; margin: 0 auto; padding: 0 16px; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ccc; padding: 3px 6px; }
th { background: #f3f3f3; } li { margin: 4px 0; }"""


def mathjax_dir() -> Path:
    """The MathJax 2 files shipped by ``jupyter-server-mathjax`` (a course requirement)."""
    try:
        import jupyter_server_mathjax
    except ImportError as error:
        raise FileNotFoundError("the book typesets math offline with MathJax from the jupyter-server-mathjax "
                                "package: pip install -r requirements.txt") from error
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def executed_notebooks(run_dir: Path) -> list[Path]:
    """The executed ``NN_topic.ipynb`` of a run folder, in order; FileNotFoundError if there are none."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist: run the course first "
                                "(python -m regkit.course run --profile quick) or pass --run DIR")
    found = sorted(p for p in run_dir.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if not found:
        raise FileNotFoundError(f"no executed notebooks NN_topic.ipynb in {run_dir}: run the course into it first")
    return found


def _keep_output(output) -> bool:
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        text = output.get("text", "")  # a closed progress bar leaves a bare newline behind
        return bool(text.strip()) and not PROGRESS_BAR.search(text) and "\r" not in text
    if output.get("output_type") in ("display_data", "execute_result") and WIDGET_VIEW in output.get("data", {}):
        del output["data"][WIDGET_VIEW]
        output["data"].pop("text/plain", None)  # the widget's repr ("HBox(children=...)") says nothing on a page
        return bool(output["data"])
    return True


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop progress bars and widget views, label the injected-parameters cell (in place; returns ``nb``)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if _keep_output(o)]
        if "injected-parameters" in cell.metadata.get("tags", []) and not cell.source.startswith(INJECTED_LABEL):
            cell.source = INJECTED_LABEL + cell.source  # once: the runner's saved copy is cleaned already
    return nb


def title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of the notebook, else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+)$", cell.source, flags=re.M)
            if match:
                return match.group(1).strip()
    return fallback


def _nav(pages: list[tuple[str, str]], i: int) -> str:
    def link(j: int, arrow: str) -> str:
        return f'<a href="{pages[j][0]}">{arrow} {html.escape(pages[j][1])}</a>' if 0 <= j < len(pages) else "<span></span>"

    return (f'<nav class="book-nav">{link(i - 1, "&larr;")}<a href="index.html">Contents</a>'
            f"{link(i + 1, '&rarr;')}</nav>")


def _index(run_dir: Path, pages: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{href}">{html.escape(name)}</a></li>' for href, name in pages)
    summary = run_dir / "summary.md"
    table = markdown2html(summary.read_text()) if summary.exists() else "<p>(this run folder has no summary.md)</p>"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>regkit course</title>'
            f"<style>{INDEX_STYLE}</style></head>\n<body>\n<h1>regkit: the course</h1>\n"
            f"<p>Executed notebooks of <code>{html.escape(str(run_dir))}</code>.</p>\n"
            f"<h2>Course map</h2>\n<ul>\n{items}\n</ul>\n<h2>Summary of the run</h2>\n{table}\n"
            "</body>\n</html>\n")


def build_book(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the site for the executed notebooks of ``run_dir`` into ``out_dir`` (default ``run_dir/book``).

    Returns the path of ``index.html``. FileNotFoundError when ``run_dir`` has no executed notebooks.
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "book"
    sources = executed_notebooks(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mathjax_dir(), out / "mathjax", dirs_exist_ok=True)
    notebooks = [nbformat.read(p, as_version=4) for p in sources]
    pages = [(f"{p.stem}.html", title(nb, p.stem)) for p, nb in zip(sources, notebooks, strict=True)]
    exporter = HTMLExporter(extra_loaders=[DictLoader({"book.html.j2": TEMPLATE})], template_file="book.html.j2",
                            mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}")
    for i, nb in enumerate(notebooks):
        body, _ = exporter.from_notebook_node(clean(nb), resources={"book_nav": _nav(pages, i)})
        (out / pages[i][0]).write_text(body, encoding="utf-8")
    index = out / "index.html"
    index.write_text(_index(run_dir, pages), encoding="utf-8")
    return index
