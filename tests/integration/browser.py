"""Headless Chromium for tests that look at a page as a person would: the DOM after the browser
parsed and laid it out, and a screenshot whose pixels can be counted. Chromium is Debian's
`chromium` package (`make install` and `.ci/run` install it); without it a test skips, except
in CI, where it must run."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run this test (make install installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium, or make install as root)")
    return found


def _browse(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def rendered_dom(page: Path, tmp: Path) -> str:
    """The DOM as Chromium built it from the page (`--dump-dom`)."""
    return _browse(page, tmp, "--dump-dom").stdout


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    pixels: list[bytes]  # one row of RGB(A) bytes per line
    channels: int

    def count(self, rgb: tuple[int, int, int]) -> int:
        """How many pixels have exactly this colour."""
        target, step = bytes(rgb), self.channels
        return sum(1 for row in self.pixels for x in range(0, len(row), step) if row[x : x + 3] == target)


def screenshot(page: Path, tmp: Path, width: int, height: int) -> tuple[Path, Picture]:
    shot = tmp / "page.png"
    _browse(page, tmp, f"--screenshot={shot}", f"--window-size={width},{height}")
    return shot, decode_png(shot.read_bytes())


def decode_png(data: bytes) -> Picture:
    """8-bit RGB or RGBA, not interlaced: what Chromium writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, chunks, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "an unexpected PNG layout"
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride, rows = width * channels, []
    previous: bytes | bytearray = bytes(width * channels)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels)
        rows.append(bytes(row))
        previous = row
    return Picture(width, height, rows, channels)


def _unfilter(kind: int, row: bytearray, above: bytes | bytearray, bpp: int) -> bytearray:
    if kind == 0:
        return row
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(row, above, strict=True))
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up, corner = above[i], above[i - bpp] if i >= bpp else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            guess = left + up - corner
            near = min(
                (abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner)
            )
            row[i] = (row[i] + near[2]) & 0xFF
    return row
