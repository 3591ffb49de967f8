"""The quickstart notebook in a real JupyterLab, driven by headless Chromium: run all, see the widget reach 100%.

Needs Debian's chromium (`apt-get install chromium`; .ci/run installs it) and Playwright for Python,
which drives it through executable_path (no `playwright install`). Without a browser that starts, the
test is skipped with the reason, unless LLMFRAME_REQUIRE_BROWSER=1 (set by .ci/run) makes it fail.
A screenshot of the finished notebook is saved under tmp/artifacts/ (or LLMFRAME_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_quickstart.ipynb"
CHROMIUM = os.environ.get("LLMFRAME_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LLMFRAME_TEST_ARTIFACTS", REPO / "tmp" / "artifacts"))
# Chromium as root, in a container, with nothing to phone home to.
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run"]
SERVER_START_SECONDS = 90
RUN_ALL_SECONDS = 180
# The server stops itself this long after its kernels go idle and its last client leaves, even if the
# test process is killed before it can stop the server.
SERVER_IDLE_SECONDS = 300


def _no_browser(reason: str):
    """Skip loudly, or fail where CI demands the browser test."""
    message = f"BROWSER TEST NOT RUN: {reason}"
    if os.environ.get("LLMFRAME_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (LLMFRAME_REQUIRE_BROWSER=1)")
    print(f"\n{'!' * 20} {message} {'!' * 20}", file=sys.stderr)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 with a token, serving a copy of the quickstart with its outputs cleared."""
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # whatever the page shows after "run all" comes from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, root / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter"  # no user settings, workspaces or runtime files shared with anything else
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    # Start the notebook's kernel without asking, keep every cell in the page (Lab detaches cells out of
    # view by default), and fetch no news (there is no network to fetch it from).
    for plugin, settings in (("notebook-extension/tracker", '{"autoStartDefaultKernel": true, "windowingMode": "none"}'),
                             ("apputils-extension/notification", '{"fetchNews": "false"}')):
        path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(settings)
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", f"--ServerApp.shutdown_no_activity_timeout={SERVER_IDLE_SECONDS}",
         f"--MappingKernelManager.cull_idle_timeout={SERVER_IDLE_SECONDS}", "--MappingKernelManager.cull_interval=30",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyterlab exited with {server.returncode}:\n{(tmp_path / 'jupyterlab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyterlab not up in {SERVER_START_SECONDS} s:\n{(tmp_path / 'jupyterlab.log').read_text()}")
                time.sleep(0.2)  # polling a port that is not open yet: nothing to wait on but time
        yield url, token, tmp_path / "jupyterlab.log"
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and the kernel it started (its process group): politely, then by force."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            pass
        try:
            server.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def browser():
    """Headless Chromium (the system's), driven by Playwright; skipped loudly if it cannot start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _no_browser(f"Playwright is not installed ({exc}): pip install -e '.[dev]'")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        _no_browser(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set LLMFRAME_CHROMIUM)")
    with sync_playwright() as playwright:
        try:
            # Playwright gives every launch a fresh, temporary --user-data-dir.
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        except Exception as exc:  # noqa: BLE001  (any launch failure means: no browser here)
            _no_browser(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_for_kernel(page, url: str, token: str) -> None:
    """Wait until the notebook's kernel is started and idle (choosing it, should Lab still ask)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        kernels = page.request.get(f"{url}/api/kernels?token={token}").json()
        if kernels and all(k["execution_state"] == "idle" for k in kernels):
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            return
        select = page.locator(".jp-Dialog button", has_text="Select")
        if select.count():
            select.first.click()
        page.wait_for_timeout(250)  # the kernel's state is only known by asking the server again
    pytest.fail(f"the notebook's kernel did not start within {SERVER_START_SECONDS} s")


def test_quickstart_runs_in_jupyterlab_with_a_live_progress_widget(lab, browser):
    url, token, log = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("quickstart-jupyterlab*.png"):
        old.unlink()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=SERVER_START_SECONDS * 1000)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=SERVER_START_SECONDS * 1000)
        _wait_for_kernel(page, url, token)

        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        # Done when every code cell has its execution number and the kernel is idle again.
        page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
                return idle && prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
            }""",
            timeout=RUN_ALL_SECONDS * 1000,
        )
        first_bar = page.locator(".jp-OutputArea-output .widget-hprogress").first
        first_bar.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "quickstart-jupyterlab.png"))

        # No cell failed.
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert "Traceback" not in " ".join(errors.all_text_contents())

        # The progress widget rendered as a widget, reached 100% and ended green, with its counts.
        bars = page.locator(".jp-OutputArea-output .widget-hprogress .progress-bar")
        assert bars.count() == 2  # the first run and the cached re-run
        for i in range(2):
            assert bars.nth(i).evaluate("bar => bar.style.width") == "100%"
            assert "progress-bar-success" in bars.nth(i).get_attribute("class")
        labels = page.locator(".jp-OutputArea-output .widget-hbox").first.inner_text().replace("\u2007", " ")
        assert "(complete): 100%" in labels and "7/7" in labels and "failed=0" in labels, labels
        assert not page.locator(".jp-OutputArea-output:has-text('%|')").count(), "a text bar was printed"

        # The result table appeared, with the answers in it, and the report as its HTML summary.
        table = page.locator(".jp-RenderedHTMLCommon table.dataframe").nth(1)
        assert "sentiment" in table.locator("thead").inner_text()
        assert "positive" in table.inner_text() and "negative" in table.inner_text()
        report = page.locator(".llmframe-report").first
        assert "7 rows, 6 sent" in report.locator("summary").inner_text()
        report.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "quickstart-jupyterlab-report.png"))
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "quickstart-jupyterlab-failure.png"))
        print(f"jupyterlab log:\n{log.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        page.close()
