"""The PNG path of `rlaif report --png`: a screenshot of the summary page by headless Chromium.

Why Chromium: the one rasteriser we can count on for HTML+SVG (Debian: `apt-get install chromium`);
it runs with a throwaway profile and no network services.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rlaif.errors import RlaifError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-extensions", "--mute-audio"]


def chromium_binary() -> str | None:
    """$RLAIF_CHROMIUM, else the first Chromium/Chrome on PATH, else None."""
    env = os.environ.get("RLAIF_CHROMIUM")
    if env:
        return env
    for n in CHROMIUM_NAMES:
        found = shutil.which(n)
        if found:
            return found
    return None


def run_chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throwaway profile (no network services, no first-run UI)."""
    exe = chromium_binary()
    if not exe:
        raise RlaifError("rendering a PNG needs Chromium, which was not found; install it "
                         "(Debian/Ubuntu: apt-get install chromium) or set RLAIF_CHROMIUM to its path")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1300, height: int = 1000) -> None:
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    proc = run_chromium([f"--screenshot={png}", f"--window-size={width},{height}",
                         Path(html_path).resolve().as_uri()])
    if not png.exists() or png.stat().st_size == 0:
        raise RlaifError(f"Chromium did not write {png} (exit {proc.returncode}): {proc.stderr[-500:]}")
