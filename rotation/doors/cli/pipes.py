"""`rotation plan K | head -1`: once the reader closes the pipe, output is dropped instead of
failing the command, so it ends with its own exit code (3 there) and prints nothing more."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, TextIO


class QuietOnClosedPipe(io.TextIOBase):
    """sys.stdout, except that a closed pipe silences it (fd 1 onto /dev/null) instead of raising."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.silenced = False

    def write(self, text: str) -> int:
        if not self.silenced:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.silenced:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.silenced = True
        # What Python still holds for fd 1 would fail again at exit: point fd 1 at /dev/null.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return not self.silenced and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def __getattr__(self, name: str) -> Any:  # buffer, errors, … as the real stream has them
        return getattr(self.stream, name)


def guard_stdout() -> None:
    if not isinstance(sys.stdout, QuietOnClosedPipe):
        sys.stdout = QuietOnClosedPipe(sys.stdout)
