"""Notebook 08 in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium driven by Playwright.

The test starts JupyterLab (a free port, a token, a temporary root holding a copy of the notebook,
every Jupyter/IPython/matplotlib directory redirected to temporary ones), runs all cells, moves the
first slider of the first demo with the keyboard and checks that the displayed PNG changed. A
screenshot goes to the test's output folder (``tmp_path``). The server, and every kernel it
started, is stopped in the fixture's teardown, also when the test fails.

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

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "08_classroom_demos.ipynb"
CHROMIUM = Path(os.environ.get("REGKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
# No "Select Kernel" dialog, no news or update notifications (they would cover the notebook).
OVERRIDES = {
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
SERVER_START_S = 60
RUN_ALL_S = 150  # every cell of notebook 08, in a kernel started by the server


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
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES))
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


def test_notebook_08_slider_changes_the_displayed_picture(chromium, lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "08_classroom_demos.png"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            context.route("**/*", _local_only)
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
            # the toolbar says idle before a kernel exists; the status bar names the kernel once it runs
            expect(page.locator("#jp-main-statusbar")).to_contain_text(re.compile(r"Python 3.*\| Idle"), timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

            # the last cell records the redraw times: all cells have run
            expect(page.locator(".jp-NotebookPanel .jp-OutputArea-output", has_text="recorded widgets.")
                   .first).to_be_visible(timeout=RUN_ALL_S * 1000)  # fmt: skip
            assert page.locator(".jp-NotebookPanel [data-mime-type='application/vnd.jupyter.stderr']",
                                has_text="Error").count() == 0  # fmt: skip
            demo = page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-slider")).first
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
    print(f"screenshot: {screenshot}")
