"""Notebook 08 in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

The test starts JupyterLab (a free port, a token, a temporary root holding a copy of the notebook,
every Jupyter/IPython/matplotlib directory redirected to temporary ones, and the settings of
``make lab``: ``lab/overrides.json``) in a 1280x720 window. It checks that opening the notebook does not
mark it modified, then presents it as README "For teachers" says (*View > Appearance > Presentation Mode*,
the left sidebar hidden), runs all cells, and measures each demo in the DOM: it fits one screen
(<= 650 px tall), no control's label or readout is cut off (text width <= box width), every control's
text is at least 11 pt, and each picture fills the width of its box without being upscaled. A
screenshot per demo goes to ``runs/browser/`` (``REGKIT_BROWSER_SHOTS`` overrides). Finally it moves
the first slider of the first demo with the keyboard and checks that the displayed PNG changed. The
server, and every kernel it started, is stopped in the fixture's teardown, also when the test fails.

Chromium is Debian's (``apt-get install chromium``; never ``playwright install``). All traffic
stays on 127.0.0.1: the browser aborts requests to any other host. Without Chromium the test is
skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from regkit.headless import HEADLESS_ENV
from regkit.widgets.gallery import DEMOS
from regkit.widgets.presentation import DEMO_CLASS, PIXEL_RATIO

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "08_classroom_demos.ipynb"
CHROMIUM = Path(os.environ.get("REGKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# The settings `make lab` starts JupyterLab with: no "Select Kernel" dialog, no news or update notifications.
OVERRIDES = REPO / "lab" / "overrides.json"
SHOTS = Path(os.environ.get("REGKIT_BROWSER_SHOTS", REPO / "runs" / "browser"))
SCREEN = {"width": 1280, "height": 720}
MAX_DEMO_HEIGHT_PX = 650  # one screen at 1280x720, with JupyterLab's menu and tab bars
MIN_TEXT_PX = 11 * 96 / 72 - 0.1  # 11 pt
SERVER_START_S = 60
RUN_ALL_S = 240  # every cell of notebook 08, in a kernel started by the server


def require_chromium() -> Path:
    """Debian's Chromium, or a skip (a failure in CI: CI installs it and must run this test)."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium; never `playwright install`)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must run the browser test")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    log: Path


def _server_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    env.pop(HEADLESS_ENV, None)  # the live widgets are what this test checks
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        env[name] = str(tmp / name.lower())
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _wait_for_status(url: str, token: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer /api/status within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server (it shuts its kernels down), then SIGKILL to whatever is left: its process
    group and its descendants (jupyter_client starts each kernel in a session of its own)."""
    import psutil

    try:
        descendants = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
    try:
        os.killpg(server.pid, signal.SIGKILL)  # the group the server leads
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


@pytest.fixture
def lab(chromium, tmp_path):
    """JupyterLab of this venv (``sys.executable -m jupyterlab``) on 127.0.0.1; stopped at teardown."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root)  # the server autosaves into this copy, never into the repository
    settings = tmp_path / "app_settings"
    settings.mkdir()
    shutil.copy(OVERRIDES, settings / "overrides.json")
    port, token, log = free_port(), secrets.token_hex(16), tmp_path / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.allow_root=True",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings}"]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=_server_env(tmp_path), cwd=root, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_status(url, token, server, log)
        yield Lab(url, token, log)
    finally:
        _stop(server)


def _local_only(route) -> None:
    if urlparse(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


PNG_OF_IMG = """async img => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""


def displayed_png(img) -> bytes:
    """The bytes behind an ``<img>`` (ipywidgets' Image shows its value through a blob: URL)."""
    return base64.b64decode(img.evaluate(PNG_OF_IMG))


def settled_png(page, image, timeout_s: float = 30) -> bytes:
    """The displayed PNG once the kernel is idle and the picture stayed the same for a second."""
    idle = re.compile(r"Python 3.*\| Idle")
    deadline = time.monotonic() + timeout_s
    previous = displayed_png(image.element_handle())
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        current = displayed_png(image.element_handle())
        if current == previous and idle.search(page.locator("#jp-main-statusbar").inner_text()):
            return current
        previous = current
    pytest.fail(f"the demo's picture did not settle within {timeout_s} s")


# Per demo: its height, its pictures (shown and natural widths, the box width) and every control text
# that is cut off (scrollWidth > clientWidth) or smaller than 11 pt.
MEASURE_DEMO = """(box, minPx) => {
    const texts = box.querySelectorAll(".widget-label, .widget-label-basic, .widget-readout, button, select");
    const visible = [...texts].filter(e => e.offsetParent !== null && e.textContent.trim());
    const label = e => `${e.className.split(" ")[0]} '${e.textContent.trim()}'`;
    return {
        height: box.getBoundingClientRect().height,
        boxWidth: box.getBoundingClientRect().width,
        images: [...box.querySelectorAll("img")].map(img => {
            // the room the picture has: its box's width, less its siblings' in a row (controls beside it)
            const parent = img.parentElement, row = getComputedStyle(parent).flexDirection === "row";
            const others = row ? [...parent.children].filter(e => e !== img && e.offsetParent !== null)
                                  .reduce((sum, e) => sum + e.getBoundingClientRect().width, 0) : 0;
            return {shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
                    cell: parent.clientWidth - others};
        }),
        cut: visible.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => `${label(e)}: ${e.scrollWidth} > ${e.clientWidth} px`),
        small: visible.filter(e => parseFloat(getComputedStyle(e).fontSize) < minPx)
                      .map(e => `${label(e)}: ${getComputedStyle(e).fontSize}`),
        texts: visible.length,
    };
}"""


def _menu(page, *path: str) -> None:
    """Click a menu bar item, then its submenus and command (exact labels)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(path[0])}$")).click()
    for label in path[1:]:
        page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")).last.click()


def _check_demos(page) -> list[str]:
    """Measure every demo (see MEASURE_DEMO) and save a screenshot of each; return the problems found."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    demos, problems = page.locator(f".jp-OutputArea-output .{DEMO_CLASS}"), []
    assert demos.count() == len(DEMOS), f"{demos.count()} demos displayed, {len(DEMOS)} in the gallery"
    for i, name in enumerate(DEMOS):
        demo = demos.nth(i)
        demo.evaluate("box => box.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        size = demo.evaluate(MEASURE_DEMO, MIN_TEXT_PX)
        page.screenshot(path=str(SHOTS / f"08_{i + 1}_{name}.png"))
        print(f"{name}: {json.dumps(size)}")
        if size["height"] > MAX_DEMO_HEIGHT_PX:
            problems.append(f"{name}: {size['height']:.0f} px tall > {MAX_DEMO_HEIGHT_PX}")
        problems += [f"{name}: cut off: {cut}" for cut in size["cut"]]
        problems += [f"{name}: under 11 pt: {small}" for small in size["small"]]
        for image in size["images"]:
            if image["shown"] < 0.97 * image["cell"]:
                problems.append(f"{name}: picture {image['shown']:.0f} px wide in a {image['cell']:.0f} px box")
            if image["shown"] > image["natural"] / PIXEL_RATIO * 1.25:
                problems.append(f"{name}: picture upscaled: shown {image['shown']:.0f} px, drawn for "
                                f"{image['natural'] / PIXEL_RATIO:.0f} px")
        if not size["texts"]:
            problems.append(f"{name}: no control text found")
    return problems


def test_notebook_08_presents_each_demo_on_one_screen_and_its_slider_redraws(chromium, lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "08_classroom_demos.png"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport=SCREEN,
        )  # fmt: skip
        try:
            context.route("**/*", _local_only)
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
            # the toolbar says idle before a kernel exists; the status bar names the kernel once it runs
            expect(page.locator("#jp-main-statusbar")).to_contain_text(re.compile(r"Python 3.*\| Idle"), timeout=90_000)
            page.wait_for_timeout(2000)
            tab = page.locator(".lm-TabBar-tab", has_text=NOTEBOOK.name)
            assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "opening the notebook marked it modified"

            # present as README "For teachers" says
            _menu(page, "View", "Appearance", "Presentation Mode")
            expect(page.locator("#main.jp-mod-presentationMode")).to_have_count(1)
            if page.locator("#jp-left-stack").is_visible():
                _menu(page, "View", "Appearance", "Show Left Sidebar")
            expect(page.locator("#jp-left-stack")).to_be_hidden()
            _menu(page, "Run", "Run All Cells")

            # the last cell shows the recorded redraw times: all cells have run
            expect(page.locator(".jp-NotebookPanel .jp-OutputArea-output", has_text="widgets.dynamics.max_update_cpu_ms")
                   .first).to_be_attached(timeout=RUN_ALL_S * 1000)  # fmt: skip
            assert page.locator(".jp-NotebookPanel [data-mime-type='application/vnd.jupyter.stderr']",
                                has_text="Error").count() == 0  # fmt: skip
            problems = _check_demos(page)
            assert not problems, "\n".join(problems)

            demo = page.locator(f".jp-OutputArea-output .{DEMO_CLASS}").first
            demo.evaluate("box => box.scrollIntoView({block: 'start'})")
            handle, readout = demo.locator(".noUi-handle").first, demo.locator(".widget-readout").first
            image = demo.locator("img").first
            expect(image).to_have_attribute("src", re.compile(r"^(blob|data):"), timeout=30_000)
            # sliders may snap their value onto their grid when first rendered (a redraw): wait it out
            before, before_readout = settled_png(page, image), readout.inner_text()
            assert before.startswith(b"\x89PNG\r\n\x1a\n")

            handle.focus()
            handle.press("ArrowRight")
            expect(readout).not_to_have_text(before_readout, timeout=10_000)
            deadline = time.monotonic() + 30
            while displayed_png(image.element_handle()) == before and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            after = settled_png(page, image)
            page.screenshot(path=str(screenshot), full_page=False)
            assert after.startswith(b"\x89PNG\r\n\x1a\n")
            assert after != before, f"the picture did not change after the slider moved ({before_readout} -> {readout.inner_text()})"
        except Exception:
            page.screenshot(path=str(screenshot))
            raise
        finally:
            context.close()
    print(f"screenshots: {screenshot}, {SHOTS}")
