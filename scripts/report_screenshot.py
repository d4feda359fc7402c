#!/usr/bin/env python3
"""Renders a pipeline report (report.html) in headless Chromium and saves a screenshot.

    python3 scripts/report_screenshot.py runs/pipeline/report.html docs/img/pipeline-report.png

Two ways to a headless Chromium, the first that is installed wins:

- Playwright: `pip install playwright && python3 -m playwright install chromium`
  (the browser comes from Playwright's CDN). The page is opened from the file and a
  full-page screenshot is taken.
- kaleido 0.2.1: `pip install kaleido==0.2.1` (the wheel on PyPI carries a headless
  Chromium; the only way in where PyPI is reachable and browser CDNs are not). kaleido
  renders Plotly figures; this script gives its page a stand-in for plotly.js that lays
  the report out in the page at the given width and paints it through an SVG
  `<foreignObject>` onto a canvas, which Chromium encodes as PNG.

Not part of CI (it needs a browser). The report is self-contained (inline SVG, no
network): the script fails if the page fetches anything that is not the file itself.
"""

import base64
import json
import pathlib
import re
import sys
import tempfile
import types

WIDTH = 1200

# Stands in for plotly.js in kaleido's page: `Plotly.toImage` lays the report out and
# rasterises it; the report's HTML and the page width come in the figure's layout.
SHIM = r"""
window.Plotly = {
  version: '2.0.0',
  purge: function () {},
  toImage: function (fig) {
    const width = fig.layout.page_width;
    const doc = new DOMParser().parseFromString(fig.layout.html, 'text/html');
    const host = document.createElement('div');
    host.style.cssText = 'position:absolute;left:0;top:0;background:#fff;width:' + width + 'px';
    for (const s of doc.querySelectorAll('style')) host.appendChild(s.cloneNode(true));
    const body = document.createElement('div');
    body.innerHTML = doc.body.innerHTML;
    host.appendChild(body);
    document.body.appendChild(host);
    const height = Math.ceil(host.getBoundingClientRect().height) + 16;
    const xhtml = new XMLSerializer().serializeToString(host);
    document.body.removeChild(host);
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' +
      height + '"><foreignObject x="0" y="0" width="100%" height="100%">' + xhtml +
      '</foreignObject></svg>';
    return new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () {
        const fetched = performance.getEntriesByType('resource').map(function (e) { return e.name; })
          .filter(function (u) { return !u.startsWith('file:') && !u.startsWith('data:'); });
        if (fetched.length) { reject(new Error('the report fetched ' + fetched.join(' '))); return; }
        const c = document.createElement('canvas');
        c.width = width; c.height = height;
        const g = c.getContext('2d');
        g.fillStyle = '#fff'; g.fillRect(0, 0, width, height);
        g.drawImage(img, 0, 0);
        resolve(c.toDataURL('image/png'));
      };
      img.onerror = function () { reject(new Error('the report did not render')); };
      img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg);
    });
  }
};
"""


def with_playwright(html: pathlib.Path, png: pathlib.Path) -> bool:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return False
    fetched = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch()
        except Error:
            return False  # Playwright without its browser
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith("file:") else None)
        page.goto(html.as_uri())
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    if fetched:
        sys.exit(f"{html}: the report fetched {fetched}; it must be self-contained")
    return True


def with_kaleido(html: pathlib.Path, png: pathlib.Path) -> bool:
    # kaleido's scope imports plotly only to accept Figure objects and to write JSON;
    # this script hands it plain dicts, so an empty stand-in module is enough.
    if "plotly" not in sys.modules:
        go = types.ModuleType("plotly.graph_objects")
        go.Figure = type("Figure", (), {})
        sys.modules["plotly"] = types.ModuleType("plotly")
        sys.modules["plotly.graph_objects"] = go
    try:
        from kaleido.scopes.plotly import PlotlyScope
    except ImportError:
        return False

    class Scope(PlotlyScope):
        def _json_dumps(self, val):
            return json.dumps(val)

    with tempfile.TemporaryDirectory() as tmp:
        shim = pathlib.Path(tmp) / "shim.js"
        shim.write_text(SHIM)
        scope = Scope(plotlyjs=str(shim))
        figure = {"data": [], "layout": {"html": html.read_text(encoding="utf-8"), "page_width": WIDTH}}
        r = scope._perform_transform(figure, format="png", width=WIDTH, height=900, scale=1)
    if r.get("code") != 0 or not r.get("result"):
        sys.exit(f"{html}: headless Chromium (kaleido) did not render the report: {r.get('message')}")
    png.write_bytes(base64.b64decode(r["result"].split(",", 1)[-1]))
    return True


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    html = pathlib.Path(sys.argv[1]).resolve()
    png = pathlib.Path(sys.argv[2])
    png.parent.mkdir(parents=True, exist_ok=True)
    text = html.read_text(encoding="utf-8")
    # kaleido's check sees only what has loaded when the picture is painted: refuse
    # references to the network in the file itself too.
    remote = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//[^"\'\s>]+|url\(\s*["\']?(?:https?:)?//[^)]+', text)
    if remote:
        sys.exit(f"{html}: the report refers to {remote[:3]}; it must be self-contained")
    for engine, run in (("Playwright", with_playwright), ("kaleido", with_kaleido)):
        if run(html, png):
            print(f"{png}: {text.count('<svg')} inline SVG plots rendered by headless Chromium ({engine})")
            return
    sys.exit("no headless Chromium: pip install playwright && python3 -m playwright install chromium, "
             "or pip install kaleido==0.2.1")


if __name__ == "__main__":
    main()
