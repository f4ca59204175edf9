"""The documentation site: `mkdocs build --strict` (a broken link, anchor or generated reference fails it), then
the built site in a real headless Chromium (scripts/docs_site_check.py): the getting-started page shows the two
commands, and the reference lists every run-config and search-space key."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {"PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"}
    built = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_site_builds_strictly_with_every_method_page(site):
    from ssl_tune.methods import METHODS

    for name in METHODS.names():
        page = (site / "methods" / name / "index.html").read_text()
        assert f"search_spaces/{name}.yaml" in page and f"method: {name}" in page, name
    assert "ssl_tune.api.sweep" in (site / "reference" / "api" / "index.html").read_text()


def test_the_site_in_chromium_shows_the_two_commands_and_every_config_key(site, tmp_path):
    missing = [tool for tool in ("chromium", "chromedriver") if not shutil.which(tool)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver", pytrace=False)
    from docs_site_check import check_site

    assert check_site(site, tmp_path / "getting_started.png") == []
    assert (tmp_path / "getting_started.png").stat().st_size > 10_000
