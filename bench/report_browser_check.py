"""Open report.html in a real headless browser: layout at 820 and 1280 px, script errors, table sorting.

    python bench/report_browser_check.py [--out DIR] [--chromium PATH] [--keep-screenshot docs/x.png]

Unit tests read report.html as text; what a browser makes of it they cannot
see: whether a table pushes the page wider than the window, whether the
inline sorting script runs without an error, whether a click really sorts.
This script builds two reports from hand-made folders (tests/fixtures_results.py,
no training): one search with its rerun's final table, and a comparison of
two searches (icarl, der). For each it runs Chromium headless (Debian's
``chromium`` package: ``apt-get install -y chromium``; a browser that downloads
itself does not work on the development machine):

1. ``--screenshot`` of the page at 820 x 1600 and 1280 x 1600 px, kept in --out;
2. ``--enable-logging=stderr --v=0`` on the page as written: any "Uncaught"
   error or console error line fails the check;
3. ``--dump-dom`` of a copy of the page with a probe script added (an error
   collector first in <head>, a check at the end of <body>). At 820 and 1280 px
   the probe reads the page's scroll width against the window's, the right edge
   of every table box, and that every sortable heading got its aria-sort from
   the report's script; then it clicks "final acc %" of the all-trials table
   twice and reads the column (ascending, then descending, empty cells last).
   The results come back in the dumped DOM as JSON.

Prints one line per check and exits 1 when one fails. Runs in ~20 s on the
2-core development machine; bench/README.md has what it printed.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WIDTHS = (820, 1280)
SORT_COLUMN = "final acc %"

# Runs before anything else of the page: every error and console.error is kept.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
(function () { var orig = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' ')); orig.apply(console, arguments); }; })();
</script>"""

# Runs after the report's own script (it is appended after it).
PROBE_TAIL = """<script>
(function () {
  var out = {errors: window.__errors, innerWidth: window.innerWidth,
             scrollWidth: document.documentElement.scrollWidth, boxes: [], headings: 0, unsorted: 0};
  Array.prototype.forEach.call(document.querySelectorAll('.scroll'), function (d) {
    out.boxes.push(Math.round(d.getBoundingClientRect().right));
  });
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable th'), function (th) {
    out.headings += 1;
    if (th.getAttribute('aria-sort') !== 'none') out.unsorted += 1;
  });
  var tables = document.querySelectorAll('table.sortable');
  var table = tables[tables.length - 1];
  var heads = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return c.textContent; });
  var col = heads.indexOf(COLUMN);
  function column() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[col].textContent; });
  }
  out.before = column();
  table.tHead.rows[0].cells[col].click();
  out.ascending = column();
  out.ariaAfterOne = table.tHead.rows[0].cells[col].getAttribute('aria-sort');
  table.tHead.rows[0].cells[col].click();
  out.descending = column();
  out.ariaAfterTwo = table.tHead.rows[0].cells[col].getAttribute('aria-sort');
  document.body.setAttribute('data-check', JSON.stringify(out));
})();
</script>"""


def build_reports(work: Path) -> dict[str, Path]:
    """The two reports the check opens: one search (with a rerun), one comparison."""
    from analysis.report import build_report
    from analysis.results import write_trials_csv
    from tests.fixtures_results import trial_at, write_rerun_fixture, write_search_fixture

    one = write_search_fixture(work / "icarl-synthetic")
    write_trials_csv(one)
    write_rerun_fixture(one, picked=(1, 0))
    der = write_search_fixture(work / "der-synthetic", method="der", prefix="ddddd",
                               trials=[trial_at(0, .75, .30), trial_at(1, .45, .02), trial_at(2, .30, .50),
                                       trial_at(3, .62, .12)])
    quiet = lambda line: None  # noqa: E731
    return {"search": build_report([one], warn=quiet),
            "comparison": build_report([one, der], out_dir=work / "compare-icarl-der", warn=quiet)}


def chromium(binary: str, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    # --no-sandbox: the development machine runs as root, where Chromium's sandbox refuses to start.
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines()
            if "Uncaught" in ln or ("CONSOLE" in ln and ("ERROR" in ln or ":ERROR:" in ln))]


def probe(binary: str, page: Path, width: int, work: Path) -> dict:
    text = page.read_text()
    text = text.replace("<head>", "<head>" + PROBE_HEAD, 1)
    text = text.replace("</body>", PROBE_TAIL.replace("COLUMN", json.dumps(SORT_COLUMN)) + "</body>", 1)
    copy = work / f"probe-{page.parent.name}-{width}.html"
    copy.write_text(text)
    proc = chromium(binary, f"--window-size={width},1600", "--virtual-time-budget=3000", "--dump-dom",
                    copy.as_uri())
    m = re.search(r'data-check="([^"]*)"', proc.stdout)
    if not m:
        return {"failed": f"no probe result in the dumped DOM (exit {proc.returncode}): {proc.stderr[-300:]}"}
    return json.loads(html.unescape(m.group(1)))


def _numbers(cells: list[str]) -> tuple[list[float], int]:
    values = [float(c) for c in cells if c.strip() not in ("", "–")]
    return values, len(cells) - len(values)


def check_probe(name: str, width: int, r: dict) -> list[str]:
    """Problems found by one probe (empty: all good)."""
    if "failed" in r:
        return [r["failed"]]
    problems = []
    if r["errors"]:
        problems.append(f"script errors: {r['errors']}")
    if r["scrollWidth"] > r["innerWidth"]:
        problems.append(f"page {r['scrollWidth']} px wide in a {r['innerWidth']} px window")
    wide = [b for b in r["boxes"] if b > r["innerWidth"]]
    if wide:
        problems.append(f"table boxes end past the window: {wide}")
    if r["headings"] == 0 or r["unsorted"]:
        problems.append(f"{r['unsorted']} of {r['headings']} sortable headings without aria-sort='none'")
    up, missing = _numbers(r["ascending"])
    down, missing2 = _numbers(r["descending"])
    if up != sorted(up) or r["ascending"][len(up):] != ["–"] * missing:
        problems.append(f"ascending sort wrong: {r['ascending']}")
    if down != sorted(down, reverse=True) or r["descending"][len(down):] != ["–"] * missing2:
        problems.append(f"descending sort wrong: {r['descending']}")
    if (r["ariaAfterOne"], r["ariaAfterTwo"]) != ("ascending", "descending"):
        problems.append(f"aria-sort after two clicks: {r['ariaAfterOne']}, {r['ariaAfterTwo']}")
    if sorted(r["before"]) != sorted(r["ascending"]):
        problems.append("sorting lost or changed cells")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="folder for the reports and screenshots (default: a new temporary one)")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    p.add_argument("--keep-screenshot", default=None, metavar="PNG",
                   help="copy the 820 px screenshot of the single-search report here")
    args = p.parse_args(argv)
    if not shutil.which(args.chromium) and not Path(args.chromium).is_file():
        print(f"error: no Chromium at {args.chromium!r} (apt-get install -y chromium)", file=sys.stderr)
        return 2
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="report-browser-"))
    work.mkdir(parents=True, exist_ok=True)
    version = chromium(args.chromium, "--version").stdout.strip()
    print(f"browser: {version or args.chromium}; files in {work}")
    failed = 0
    for name, page in build_reports(work).items():
        for width in WIDTHS:
            shot = work / f"{name}-{width}.png"
            proc = chromium(args.chromium, f"--window-size={width},1600", "--enable-logging=stderr", "--v=0",
                            "--virtual-time-budget=3000", f"--screenshot={shot}", page.as_uri())
            problems = [f"console: {ln.strip()}" for ln in console_errors(proc.stderr)]
            if not shot.is_file():
                problems.append(f"no screenshot (exit {proc.returncode})")
            r = probe(args.chromium, page, width, work)
            problems += check_probe(name, width, r)
            status = "ok" if not problems else "FAILED"
            failed += bool(problems)
            detail = ("" if "failed" in r else
                      f"page {r['scrollWidth']}/{r['innerWidth']} px, {len(r['boxes'])} table boxes, "
                      f"{r['headings']} sortable headings, '{SORT_COLUMN}' sorted up "
                      f"{r['ascending'][:4]}... and down {r['descending'][:4]}...")
            print(f"{status:6s} {name:10s} {width:4d} px: {detail}")
            for problem in problems:
                print(f"       {problem}")
            if args.keep_screenshot and name == "search" and width == WIDTHS[0] and shot.is_file():
                from PIL import Image  # matplotlib's dependency; 64 colours keep a page shot small for git

                Image.open(shot).convert("RGB").quantize(colors=64).save(args.keep_screenshot, optimize=True)
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
