#!/usr/bin/env python3
"""Renders a pipeline report (report.html) in headless Chromium and saves a screenshot.

    pip install playwright && python3 -m playwright install chromium
    python3 scripts/report_screenshot.py runs/pipeline/report.html docs/img/pipeline-report.png

Not part of CI (it needs a browser). The report is self-contained (inline SVG, no
network), so the page is opened from the file and nothing else is fetched: the script
fails if the page asks for anything over the network.
"""

import pathlib
import sys

from playwright.sync_api import sync_playwright


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    html = pathlib.Path(sys.argv[1]).resolve()
    png = pathlib.Path(sys.argv[2])
    png.parent.mkdir(parents=True, exist_ok=True)
    fetched = []
    with sync_playwright() as p:
        browser = p.chromium.launch()
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith("file:") else None)
        page.goto(html.as_uri())
        svgs = page.locator("svg").count()
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    if fetched:
        sys.exit(f"{html}: the report fetched {fetched}; it must be self-contained")
    print(f"{png}: {svgs} inline SVG plots rendered")


if __name__ == "__main__":
    main()
