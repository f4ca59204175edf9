#!/usr/bin/env python3
"""Check the built documentation site in a real browser: headless Chromium, driven by Selenium.

    make docs && python scripts/docs_site_check.py --site site [--screenshot docs/getting_started.png]

Serves SITE on 127.0.0.1 (a free port), opens it, and checks that the getting-started page shows the two
commands (`make demo`, `make test`) and that the reference pages list every run-config key (augment.* too)
and every search-space key (asha.*, sweep.*), each as a cell of its own. The keys are read here from the
pydantic models, apart from the generator that wrote the pages. Saves a screenshot of the getting-started
page. Exit 0 when all is there, 1 when something is missing, 2 on bad input.

Needs Debian's `chromium` and `chromium-driver` and the `browser` extra, as scripts/browser_check.py.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from browser_check import (
    HOST,
    REPO,
    VISIBLE_TEXTS_JS,
    browser_missing,
    make_browser,
    report,
    save_screenshot,
    wait_for,
)

TWO_COMMANDS = ("make demo", "make test")


def model_keys(model: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a pydantic settings model, into nested models."""
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        if hasattr(info.annotation, "model_fields"):
            keys += model_keys(info.annotation, f"{prefix}{name}.")
    return keys


def reference_keys() -> dict[str, list[str]]:
    """The page (its path in the site) and the keys it must list."""
    from ssl_tune.config import TrainConfig
    from ssl_tune.tune.space import SearchSpace

    return {"reference/config/": model_keys(TrainConfig), "reference/space/": model_keys(SearchSpace)}


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site over HTTP on 127.0.0.1 (a free port), for as long as the block runs; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no request log on the console
        pass


def check_site(site: Path, screenshot: Path | None, timeout: float = 60) -> list[str]:
    """Run the checks; returns the problems found (empty when everything is there)."""
    from selenium.webdriver.common.by import By

    problems: list[str] = []
    with serve(site) as base:
        driver = make_browser(1280, 900)
        try:
            driver.set_page_load_timeout(timeout)
            driver.get(base + "getting-started/")
            body = wait_for("the getting-started page", lambda: driver.find_element(By.TAG_NAME, "body").text, timeout)
            problems += [f"getting started: '{c}' is not shown" for c in TWO_COMMANDS if c not in body]
            if screenshot is not None:
                save_screenshot(driver, screenshot)
            for page, keys in reference_keys().items():
                driver.get(base + page)
                wait_for(f"{page}", lambda: driver.find_element(By.TAG_NAME, "table"), timeout)
                shown = set(driver.execute_script(VISIBLE_TEXTS_JS))
                missing = [k for k in keys if k not in shown]
                if missing:
                    problems.append(f"{page}: {len(missing)} of {len(keys)} keys not listed: {', '.join(missing)}")
        finally:
            driver.quit()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=REPO / "site", help="the built site (default: site/)")
    parser.add_argument("--screenshot", type=Path, help="save the getting-started page as this PNG")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"docs_site_check: error: no built site in {args.site} (make docs)", file=sys.stderr)
        return 2
    if browser_missing("docs_site_check"):
        return 2
    started = time.monotonic()
    return report("docs_site_check", check_site(args.site, args.screenshot), started)


if __name__ == "__main__":
    sys.exit(main())
