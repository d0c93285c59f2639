"""Regenerate docs/report.png: the HTML health report of a fresh `cogent demo`, photographed in headless Chromium.

    python docs/screenshot.py                      # docs/report.png from a 40-order demo
    python docs/screenshot.py --orders 100 --output /tmp/report.png

Needs Debian's `chromium` and `chromium-driver` packages and selenium (the `test` extra).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from cogent_cli.demo import run_demo

WIDTH = 1280
MAX_HEIGHT = 2600
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def photograph(page: Path, output: Path, profile: Path) -> tuple[int, int]:
    """Open `page` in headless Chromium and save the top of it (up to MAX_HEIGHT pixels) as a PNG."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        sys.exit("Needs chromium and chromedriver on PATH (apt-get install chromium chromium-driver).")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        driver.get(page.as_uri())
        height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), MAX_HEIGHT)
        driver.set_window_size(WIDTH, height)
        driver.save_screenshot(str(output))
    finally:
        driver.quit()
    return WIDTH, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=40, help="orders in the demo retailer (default 40)")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("report.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(Path(tmp) / "demo", orders=args.orders, step=lambda message: print(message, file=sys.stderr))
        assert demo.report_path is not None
        width, height = photograph(demo.report_path, args.output.resolve(), Path(tmp) / "chromium-profile")
    print(f"Wrote {args.output} ({width}x{height}, {args.output.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
