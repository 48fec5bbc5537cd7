"""Headless Chromium, the one browser cityhub drives: the report printed to PDF, the dashboard's screenshot.

Chromium and the CJK fonts are Debian packages installed by the opt-in hack/browser.sh (pure-PyPI PDF
libraries ship no CJK fonts). Every run gets a throw-away profile directory and ends with the call: these are
one-shot commands, not servers, so they run to completion under a timeout instead of under the supervisor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL = "hack/browser.sh"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class BrowserMissing(FileNotFoundError):
    """No Chromium on PATH; the message names the script that installs it."""


def find() -> str | None:
    """The Chromium binary on PATH, or None."""
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def require() -> str:
    binary = find()
    if binary is None:
        raise BrowserMissing(f"headless Chromium is missing: run {INSTALL} (installs chromium and CJK fonts)")
    return binary


def headless_args(profile: Path) -> list[str]:
    """Flags for a headless run in `profile`. --no-sandbox only as root (Chromium refuses root otherwise)."""
    args = [
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def run(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Chromium with `args` after the headless flags, in a fresh profile; raises naming its stderr."""
    binary = require()
    with tempfile.TemporaryDirectory(prefix="cityhub-chromium-") as profile:
        proc = subprocess.run(
            [binary, *headless_args(Path(profile)), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def print_to_pdf(page: Path, pdf: Path, timeout: float = 120.0) -> Path:
    """Print an HTML file to `pdf` (no header or footer: the page carries its own title and date)."""
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.unlink(missing_ok=True)
    run(["--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}", page.resolve().as_uri()], timeout)
    if not pdf.is_file() or pdf.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no PDF at {pdf}")
    return pdf


def screenshot(
    url: str, png: Path, size: tuple[int, int] = (1400, 1000), wait_ms: int = 3000, timeout: float = 120.0
) -> Path:
    """A PNG of `url` at `size` after `wait_ms` of page time (its scripts run and refresh first)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={png.resolve()}",
            url,
        ],
        timeout,
    )
    return png


def dump_dom(url: str, wait_ms: int = 3000, timeout: float = 120.0) -> str:
    """The DOM of `url` after `wait_ms` of page time, serialized (what a reader would see)."""
    return run([f"--virtual-time-budget={wait_ms}", "--dump-dom", url], timeout).stdout
