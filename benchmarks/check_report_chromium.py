"""Render a report.html in headless Chromium: take a screenshot and check that every figure loads.

Usage::

    python benchmarks/check_report_chromium.py runs/<name>/report.html [--output check/]

Needs a Chromium binary (Debian: ``apt-get install chromium``); pass
``--chromium PATH`` if it is not on the path as ``chromium``. Writes
``screenshot.png`` (the whole page) to the output folder and prints, for
every <img> of the page, whether the browser decoded it (``complete`` and a
non-zero natural width). Exits with status 1 when an image did not load.

The image check runs on a temporary copy of the report with a short script
appended, because the report itself contains no script; Chromium's
``--dump-dom`` then prints the page after that script ran. The report file
is not changed. Running as root (containers) needs ``--no-sandbox``, which
this script passes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Appended to the copy: lists every image's load state in a <pre> element once the page has loaded.
CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const rows = Array.from(document.images).map((image, index) => ({
    index: index,
    alt: image.alt,
    complete: image.complete,
    width: image.naturalWidth,
    height: image.naturalHeight,
  }));
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(rows);
  document.body.appendChild(out);
});
</script>
"""

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
]


def run_chromium(chromium: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, *arguments], capture_output=True, text=True, timeout=180)


def check_images(chromium: str, report: Path) -> list[dict[str, object]]:
    """Load a copy of the report with the check script and return the state of every image."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "report-check.html"
        copy.write_text(
            report.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8"
        )
        result = run_chromium(chromium, "--virtual-time-budget=20000", "--dump-dom", copy.as_uri())
    match = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.DOTALL)
    if match is None:
        raise RuntimeError(f"Chromium printed no image check; its error output:\n{result.stderr[-2000:]}")
    rows: list[dict[str, object]] = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return rows


def screenshot(chromium: str, report: Path, output: Path, width: int) -> None:
    """Screenshot the whole page: the window is made as tall as the page's content."""
    # A first pass reads the page height; the window then covers it in one shot.
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "report-height.html"
        probe = (
            "<script>window.addEventListener('load', "
            "() => { document.title = 'height=' + document.body.scrollHeight; });</script>"
        )
        copy.write_text(report.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
        result = run_chromium(
            chromium, f"--window-size={width},1000", "--virtual-time-budget=20000", "--dump-dom", copy.as_uri()
        )
    found = re.search(r"<title>height=(\d+)</title>", result.stdout)
    height = min(int(found.group(1)) + 40, 32000) if found else 16000
    run_chromium(chromium, f"--window-size={width},{height}", f"--screenshot={output}", report.resolve().as_uri())
    if not output.exists():
        raise RuntimeError(f"Chromium wrote no screenshot to {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to check")
    parser.add_argument("--output", type=Path, default=Path("report-check"), help="folder for screenshot.png")
    parser.add_argument("--chromium", default="chromium", help="Chromium binary")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
    args = parser.parse_args()
    chromium = shutil.which(args.chromium)
    if chromium is None:
        print(f"error: Chromium binary '{args.chromium}' not found; install it (Debian: apt-get install chromium)")
        return 2

    version = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()
    print(version)
    rows = check_images(chromium, args.report)
    failed = [row for row in rows if not row["complete"] or not row["width"]]
    for row in rows:
        state = "FAILED" if row in failed else "loaded"
        print(f"image {row['index']:3d}: {state} {row['width']}x{row['height']}  {row['alt']}")
    print(f"{len(rows)} images, {len(rows) - len(failed)} loaded, {len(failed)} failed")

    args.output.mkdir(parents=True, exist_ok=True)
    shot = args.output / "screenshot.png"
    screenshot(chromium, args.report, shot, args.width)
    print(f"screenshot: {shot} ({args.width} pixels wide)")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
