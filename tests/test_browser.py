"""The HTML mail renders in a real browser (Debian's headless Chromium).

Locally the test skips, saying why, when Chromium is not installed; under CI (CI=true)
a missing browser fails: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from testkit.cli import run_cli

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: Debian's chromium is not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


def rendered_dom(browser: str, page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(("page", "facts"), [
    ("subscription_expired.customer.fr.html", ("expiré", "mars 2027", "TBox")),
    ("renewal_upcoming.customer.en.html", ("2027", "renew")),
    ("reseller_digest.reseller.fr.html", ("renouveler",)),
])
def test_a_preview_loads_in_chromium_and_shows_its_key_facts(
    tmp_path: Path, page: str, facts: tuple[str, ...]
) -> None:
    """What the `preview` command writes is a page a browser renders, facts and all."""
    browser = chromium()
    out = tmp_path / "preview"
    result = run_cli("preview", "--out", str(out), database_url=f"sqlite:///{tmp_path}/w.db",
                     cwd=tmp_path)
    assert result.code == 0, result.stderr
    dom = rendered_dom(browser, out / page)
    assert "<table" in dom
    for fact in facts:
        assert fact in dom
    index = rendered_dom(browser, out / "index.html")
    assert page in index
