"""Render a report in headless Chromium and check the screenshot is not blank.

Usage: python scripts/check_report.py out/demo/report.html [--png out/demo/report/screenshot.png]
Needs Debian's chromium (`apt-get install chromium`). Exit 0 when the page
rendered with real content, 1 when blank, 2 when Chromium is missing or fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def screenshot(page: Path, png: Path, size: str = "1400,2200") -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={png}", page.resolve().as_uri()], check=True, capture_output=True, timeout=180)


def not_blank(png: Path) -> tuple[bool, str]:
    arr = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    colours = len(np.unique(arr.reshape(-1, 3)[::7], axis=0))
    dark = float((arr.mean(axis=2) < 128).mean())
    ok = colours > 200 and arr.std() > 20 and dark > 0.02
    return ok, f"{colours} colours, std {arr.std():.1f}, {100 * dark:.1f} % dark pixels"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    png = args.png or args.report.with_name("report") / "screenshot.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        screenshot(args.report, png)
    except (FileNotFoundError, subprocess.SubprocessError) as err:
        print(f"check_report: error: {err}", file=sys.stderr)
        return 2
    ok, detail = not_blank(png)
    print(f"{'rendered' if ok else 'BLANK'}: {png} ({detail})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
