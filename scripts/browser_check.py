#!/usr/bin/env python3
"""Check a finished sweep in TensorBoard with a real browser: headless Chromium, driven by Selenium.

    python scripts/browser_check.py --sweep sweeps/quickstart [--screenshot docs/tensorboard_hparams.png]

Starts `tensorboard --logdir SWEEP --host 127.0.0.1` on a free port, opens the Scalars and the HParams
dashboards, and checks that each lists every trial of the sweep (Scalars: the `trial-<id>` runs and the
`val_knn_acc` chart; HParams: one session per trial id, with the kNN metric). Saves a screenshot of the HParams
table. Exit 0 when all is there, 1 when something is missing, 2 on bad input.

Needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver) and the `browser`
extra (pip install -c constraints.txt -e ".[browser]"). Everything stays on 127.0.0.1: TensorBoard binds
there, and the browser resolves no other host name.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"
MAX_SCREENSHOT_BYTES = 300_000
HPARAMS_COLUMNS = ("val_knn_acc", "loss")  # the final validation kNN and loss of each session

# the page's rendered text nodes (stripped), through shadow roots and same-origin iframes (TensorBoard's
# dashboards use both); only those in an element that is laid out and not hidden
VISIBLE_TEXTS_JS = """
const texts = [];
const visit = (node) => {
  if (node.nodeType === Node.TEXT_NODE) {
    const el = node.parentElement, text = node.textContent.trim();
    if (text && el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden') texts.push(text);
    return;
  }
  if (node.shadowRoot) visit(node.shadowRoot);
  if (node.tagName === 'IFRAME') { try { visit(node.contentDocument.documentElement); } catch (e) {} }
  for (const child of node.childNodes) visit(child);
};
visit(document.documentElement);
return texts;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # always http://127.0.0.1
        return json.loads(response.read())


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as err:  # the server is not up yet, a page still rendering
            last_error = err
        time.sleep(every)
    detail = f" ({last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def start_tensorboard(logdir: str, port: int, log_path: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("tensorboard")
    command = [str(exe) if exe.exists() else "tensorboard", "--logdir", logdir, "--host", HOST, "--port", str(port)]
    command += ["--load_fast", "false", "--reload_interval", "2"]  # the Python loader; no extra data-server binary
    log = open(log_path, "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def unserved(base: str, runs: list[str]) -> list[str]:
    """The runs for which TensorBoard serves no val_knn_acc scalars (yet)."""
    try:
        tags = get_json(f"{base}/data/plugin/scalars/tags")
    except OSError:
        return runs
    return [r for r in runs if "val_knn_acc" not in tags.get(r, {})]


def make_browser(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: no driver downloads
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--no-proxy-server",
        f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {HOST}",  # no host but 127.0.0.1 resolves
    ):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def missing_in_page(driver: Any, wanted: list[str]) -> list[str]:
    """Those of `wanted` that no visible text on the page is exactly (a run name, a table cell, a chart title)."""
    shown = set(driver.execute_script(VISIBLE_TEXTS_JS))
    return [w for w in wanted if w not in shown]


def save_screenshot(driver: Any, path: Path) -> int:
    """A PNG under MAX_SCREENSHOT_BYTES (fewer colours if the full-colour one is larger)."""
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    for colors in (None, 256, 128, 64):
        buf = io.BytesIO()
        shown = image if colors is None else image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
        shown.save(buf, format="PNG", optimize=True)
        if buf.tell() <= MAX_SCREENSHOT_BYTES:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.tell()


def check(sweep_dir: str, screenshot: Path, port: int, timeout: float, width: int, height: int) -> list[str]:
    """Run the checks; returns the problems found (empty when everything is there)."""
    from selenium.webdriver.common.by import By

    from ssl_tune.tune.results import TRIAL_PREFIX, load_sweep

    sweep = load_sweep(sweep_dir)
    if not sweep.trials:
        raise SystemExit(f"browser_check: error: sweep {sweep_dir} has no trials")
    ids = [t.trial_id for t in sweep.trials]
    runs = [f"{TRIAL_PREFIX}{i}" for i in ids]
    problems: list[str] = []
    base = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = start_tensorboard(sweep_dir, port, Path(tmp) / "tensorboard.log")
        driver = None
        try:
            # the server has read every trial's events before the browser looks
            try:
                wait_for("TensorBoard to serve every trial's val_knn_acc", lambda: not unserved(base, runs), timeout)
            except TimeoutError as err:
                problems.append(f"tensorboard server: {err}; runs without val_knn_acc: {unserved(base, runs)}")
                return problems
            driver = make_browser(width, height)
            driver.set_page_load_timeout(timeout)

            driver.get(f"{base}/#scalars")
            try:
                wait_for(
                    "the Scalars dashboard to show every run and the val_knn_acc chart",
                    lambda: not missing_in_page(driver, [*runs, "val_knn_acc"]),
                    timeout,
                )
                print(f"scalars: all {len(runs)} runs listed, and the val_knn_acc chart")
            except TimeoutError as err:
                problems.append(f"scalars dashboard: {err}; missing: {missing_in_page(driver, [*runs, 'val_knn_acc'])}")

            driver.get(f"{base}/#hparams")
            try:
                wait_for(
                    "the HParams dashboard to show a session per trial",
                    lambda: not missing_in_page(driver, [*ids, *HPARAMS_COLUMNS]),
                    timeout,
                )
                print(f"hparams: all {len(ids)} trial sessions listed, with columns {', '.join(HPARAMS_COLUMNS)}")
            except TimeoutError as err:
                missing = missing_in_page(driver, [*ids, *HPARAMS_COLUMNS])
                problems.append(f"hparams dashboard: {err}; missing: {missing}")
            driver.find_element(By.TAG_NAME, "body")  # still alive
            time.sleep(1.0)  # let the table finish its layout before the screenshot
            size = save_screenshot(driver, screenshot)
            print(f"screenshot: {screenshot} ({size // 1024} KB)")
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if problems:
                sys.stderr.write((Path(tmp) / "tensorboard.log").read_text(errors="replace")[-3000:])
    return problems


def browser_missing(prog: str) -> bool:
    """Whether chromium or chromedriver is missing (then said in one line on stderr)."""
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            print(f"{prog}: error: {tool} not found (apt-get install chromium chromium-driver)", file=sys.stderr)
            return True
    return False


def report(prog: str, problems: list[str], started: float) -> int:
    """Each problem on stderr, OK or FAILED with the time taken on stdout; the exit code (0 or 1)."""
    for problem in problems:
        print(f"{prog}: FAIL: {problem}", file=sys.stderr)
    print(f"{'FAILED' if problems else 'OK'} in {time.monotonic() - started:.0f}s")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="a finished sweep directory (<storage>/<name>)")
    parser.add_argument("--screenshot", type=Path, default=REPO / "docs" / "tensorboard_hparams.png")
    parser.add_argument("--port", type=int, default=0, help="TensorBoard's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each page (default 120)")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args(argv)
    if not Path(args.sweep).is_dir():
        print(f"browser_check: error: sweep {args.sweep} does not exist", file=sys.stderr)
        return 2
    if browser_missing("browser_check"):
        return 2
    from ssl_tune.errors import UsageError

    started = time.monotonic()
    try:
        problems = check(args.sweep, args.screenshot, args.port or free_port(), args.timeout, args.width, args.height)
    except UsageError as err:
        print(f"browser_check: error: {err}", file=sys.stderr)
        return 2
    return report("browser_check", problems, started)


if __name__ == "__main__":
    sys.exit(main())
