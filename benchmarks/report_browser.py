"""Renders a run's report.html in headless Chromium (Debian: `apt-get install chromium`) and checks what
a reader would see: the page loads, every image decodes (complete, naturalWidth > 0), and the console
shows no error. Writes a screenshot beside the report.

    python benchmarks/report_browser.py runs/quickstart     # runs launch.py --mode=report first

The check runs on a copy of the page with a probe script appended (the report itself has no script);
the last line is KEY=VALUE: images_ok, images, console_errors, screenshot."""

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = 'PROBE images_ok=' + ok + ' images=' + imgs.length;
});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("no Chromium found: apt-get install chromium")


def run_browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--no_refresh", action="store_true", help="use the existing report.html")
    parser.add_argument("--height", type=int, default=2400, help="the screenshot's height in pixels (width 1280)")
    a = parser.parse_args()
    workdir = pathlib.Path(a.workdir).resolve()
    if not a.no_refresh:
        subprocess.run([sys.executable, str(REPO / "launch.py"), "--mode=report", "--workdir", str(workdir)],
                       check=True)
    report = workdir / "report.html"
    with tempfile.TemporaryDirectory() as tmp:
        probed = pathlib.Path(tmp) / "probed.html"
        probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
        dom = run_browser("--dump-dom", probed.as_uri())
    found = re.search(r"PROBE images_ok=(\d+) images=(\d+)", dom.stdout)
    if not found:
        sys.exit(f"the probe did not run: {dom.stderr[-2000:]}")
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("rror" in line or "Uncaught" in line)]
    screenshot = workdir / "report_screenshot.png"
    run_browser(f"--screenshot={screenshot}", f"--window-size=1280,{a.height}", report.as_uri())
    for line in errors:
        print(line)
    print(f"images_ok={found.group(1)} images={found.group(2)} console_errors={len(errors)} screenshot={screenshot}")


if __name__ == "__main__":
    main()
