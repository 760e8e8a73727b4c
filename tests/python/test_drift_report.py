"""`vigil drift --format html`: the report is one self-contained page, and it draws.

Runs the binary (VIGIL_BIN, as deploy/local/test sets it, else target/debug/vigil) on the
vigil-offline test files, checks the page needs nothing from the network, renders it in Debian's
headless Chromium and checks the screenshot: the reference and current colours of the charts
cover a real area of it. With VIGIL_UPDATE_SCREENSHOT=1 the screenshot is also copied to
docs/images/drift-report.png (the one the docs show).
"""
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "crates" / "vigil-offline" / "testdata"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REFERENCE = (0x4C, 0x78, 0xA8)
CURRENT = (0xF5, 0x85, 0x18)


def vigil():
    binary = Path(os.environ.get("VIGIL_BIN", REPO / "target" / "debug" / "vigil"))
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build -p vigil` or set VIGIL_BIN")
    return binary


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prev = line
    return width, height, [[tuple(r[x * channels:x * channels + 3]) for x in range(width)] for r in rows]


def near(pixel, color, tolerance=6):
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, color))


def blend(color, opacity):
    """`color` at `opacity` over white, as the overlaid histograms draw."""
    return tuple(round(255 * (1 - opacity) + c * opacity) for c in color)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift") / "report.html"
    proc = subprocess.run(
        [str(vigil()), "drift", "reference.csv", "current.csv", "--format", "html", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=TESTDATA,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_page_is_self_contained(report):
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no scripts, stylesheets, images or fonts from elsewhere.
    assert not re.search(r"<script|<link|<img|@import|url\(", html), "external resources"
    assert "http://" not in html and "https://" not in html
    # A summary, the tests with their thresholds, and one chart per column (5 columns).
    assert re.search(r"<b>\d of 5</b>columns drifted", html)
    assert "Kolmogorov-Smirnov test &mdash; threshold 0.0500" in html
    assert len(re.findall(r'<svg class="chart histogram"', html)) == 2  # age, income
    assert len(re.findall(r'<svg class="chart bars"', html)) == 3  # city, churned, note
    # p-values are readable numbers, not raw floats.
    assert "&times; 10<sup>-11</sup>" in html  # age: p = 3.5e-11


def test_chromium_draws_the_charts(report, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: deploy/local/up installs it (apt-get install chromium)"
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1100,1900", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), f"no screenshot ({proc.returncode}): {proc.stderr[-2000:]}"
    width, height, pixels = read_png(shot)
    assert (width, height) == (1100, 1900)
    counts = {"reference bars": 0, "current bars": 0, "reference histogram": 0, "current histogram": 0}
    hist_ref, hist_cur = blend(REFERENCE, 0.55), blend(CURRENT, 0.55)
    for row in pixels:
        for px in row:
            if near(px, REFERENCE):
                counts["reference bars"] += 1
            elif near(px, CURRENT):
                counts["current bars"] += 1
            elif near(px, hist_ref):
                counts["reference histogram"] += 1
            elif near(px, hist_cur):
                counts["current histogram"] += 1
    # Each kind of mark covers at least a few thousand pixels: the charts drew.
    assert all(n > 2000 for n in counts.values()), counts
    if os.environ.get("VIGIL_UPDATE_SCREENSHOT") == "1":
        target = REPO / "docs" / "images" / "drift-report.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
