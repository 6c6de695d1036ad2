"""The course in a real browser: JupyterLab renders notebook 05's step explorer, and its slider works.

JupyterLab is started on a free local port (with a token); Debian's Chromium, driven headless by Selenium
through the system ``chromedriver`` (never a downloaded one: the driver's path is passed explicitly, so
Selenium Manager is not asked for anything), opens a copy of ``solutions/05_rim_cell.ipynb`` cut down to
the cells that build the explorer (the tiny RIM on the adding problem, smoke profile), runs them from the Run
menu, moves the time-step slider with the keyboard and checks that the displayed step (the slider's readout)
and the figure below it changed. Screenshots go to ``test-artifacts/browser/`` (git-ignored).

Needs ``apt-get install chromium chromium-driver`` and ``pip install selenium`` (the dev extra); without them
the test is skipped, unless ``MINIRIMS_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "solutions" / "05_rim_cell.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DEADLINE_S = 85.0  # the whole test, server start to the last assertion
FIRST_CELL = "def adding_batch("  # the tiny RIM section starts here ...
LAST_CELL = "viz.step_explorer("  # ... and ends with the explorer

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

_MISSING = [
    what
    for what, ok in (
        ("chromium (apt-get install chromium)", CHROMIUM),
        ("chromedriver (apt-get install chromium-driver)", CHROMEDRIVER),
        ("selenium (pip install selenium, in the dev extra)", HAVE_SELENIUM),
    )
    if not ok
]
if _MISSING and os.environ.get("MINIRIMS_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"MINIRIMS_REQUIRE_BROWSER=1 but the browser test lacks: {', '.join(_MISSING)}")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_MISSING), reason=f"browser test needs {', '.join(_MISSING)}"),
]


class Deadline:
    """Seconds left until the test's overall deadline; ``wait`` polls a condition until it holds."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def wait(self, what: str, condition, poll: float = 0.25):
        while True:
            try:
                value = condition()
            except Exception:  # the page is still changing under us (stale or missing elements)
                value = None
            if value:
                return value
            if not self.left():
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(poll)


def explorer_notebook() -> nbformat.NotebookNode:
    """Notebook 05's imports and the cells from the adding problem to the step explorer, outputs cleared."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    starts = [i for i, cell in enumerate(code) if FIRST_CELL in cell.source]
    ends = [i for i, cell in enumerate(code) if LAST_CELL in cell.source]
    assert starts and ends and starts[0] < ends[-1], (
        f"{NOTEBOOK.name}: expected a code cell with {FIRST_CELL!r} and a later one with {LAST_CELL!r}"
    )
    cells = [code[0], *code[starts[0] : ends[-1] + 1]]
    for cell in cells:
        cell.outputs, cell.execution_count = [], None
    nb.cells = cells
    nb.metadata.pop("widgets", None)  # no saved widget state: what shows must come from this run
    return nb


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_lab(root: Path, port: int, token: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MINIRIMS_PROFILE": "smoke",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        # a learner's set-up: no MPLBACKEND (the test run's Agg would hide the figures), private Jupyter dirs
        "JUPYTER_CONFIG_DIR": str(root / ".jupyter" / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".jupyter" / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".jupyter" / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".jupyter" / "workspaces"),
    }
    env.pop("MPLBACKEND", None)
    notification = root / ".jupyter" / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(root / "lab.log", "wb")  # noqa: SIM115 -- closed with the process, in the fixture
    return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def api(port: int, token: str, path: str, body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) the Jupyter server's REST API; the decoded JSON answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture
def lab(tmp_path):
    """(url of the explorer notebook, deadline, log path): a JupyterLab serving a copy of notebook 05."""
    nbformat.write(explorer_notebook(), tmp_path / "explorer.ipynb")
    port, token = free_port(), uuid.uuid4().hex
    deadline = Deadline(DEADLINE_S)
    process = start_lab(tmp_path, port, token)
    try:
        state = deadline.wait(
            "JupyterLab to answer on its port",
            lambda: "exited" if process.poll() is not None else api(port, token, "status") and "up",
        )
        if state == "exited":
            tail = (tmp_path / "lab.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"JupyterLab exited with status {process.returncode}:\n{tail}")
        # start the notebook's kernel from the server side: the page then joins this session (no "Select
        # Kernel" dialog when the page loads its kernel list late, as it can on a busy machine)
        api(
            port,
            token,
            "sessions",
            {
                "path": "explorer.ipynb",
                "name": "explorer.ipynb",
                "type": "notebook",
                "kernel": {"name": "python3"},
            },
        )
        yield f"http://127.0.0.1:{port}/lab/tree/explorer.ipynb?token={token}", deadline, tmp_path / "lab.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_download(self, args):
        raise AssertionError(
            f"Selenium Manager was asked for a browser or driver ({args}); use the system ones"
        )

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_download)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_step_explorer_slider_changes_the_displayed_step(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, deadline, log = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser
    try:
        driver.get(url)
        deadline.wait(
            "the notebook to open", lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
        )
        # should JupyterLab still ask for a kernel, take the one it proposes (the notebook's python3)
        time.sleep(1.0)
        for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept"):
            button.click()
        # Run > Run All Cells, through the menu as a learner would
        deadline.wait(
            "the Run menu",
            lambda: next(
                e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == "Run"
            ),
        ).click()
        deadline.wait(
            "Run All Cells in the Run menu",
            lambda: next(
                e
                for e in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-itemLabel")
                if e.text == "Run All Cells"
            ),
        ).click()

        def explorer():
            readout = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea .widget-slider .widget-readout")
            image = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea .widget-output img")
            return readout, image

        readout, image = deadline.wait("the step explorer (slider and figure) to render", explorer)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", readout)
        before_step, before_src = readout.text.strip(), image.get_attribute("src")
        driver.save_screenshot(str(ARTIFACTS / "step_explorer_before.png"))
        assert before_step.isdigit(), f"slider readout {before_step!r}"

        handle = driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea .widget-slider .noUi-handle")
        at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        handle.click()
        handle.send_keys(Keys.ARROW_LEFT if at_end else Keys.ARROW_RIGHT)
        want = str(int(before_step) + (-1 if at_end else 1))

        def moved():
            readout, image = explorer()
            src = image.get_attribute("src")
            return (readout.text.strip(), src) if readout.text.strip() == want and src != before_src else None

        after_step, _ = deadline.wait(f"the displayed step to change from t={before_step} to t={want}", moved)
        driver.save_screenshot(str(ARTIFACTS / "step_explorer.png"))
        assert after_step == want
    except Exception:
        driver.save_screenshot(str(ARTIFACTS / "step_explorer_failure.png"))
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        print(f"JupyterLab log (tail):\n{tail}")
        raise
