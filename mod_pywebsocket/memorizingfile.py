"""A file wrapper that remembers the lines read through it.

`MemorizingFile(f)` forwards everything to `f`; `readline()` also keeps
each whole line it reads (up to `max_memorized_lines` of them) for
`get_memorized_lines()`. pywebsocket3's standalone server used it to see
the request head http.server had already consumed; handlers and tests
written for it import it from here.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional


class MemorizingFile:
    """Wraps a file object; `readline(size)` memorizes lines."""

    def __init__(
        self, file_: Any, max_memorized_lines: int = sys.maxsize
    ) -> None:
        self._file = file_
        self._memorized_lines: List[Any] = []
        self._max_memorized_lines = max_memorized_lines
        # The rest of a line a readline(size) call cut short: returned by
        # the next calls before anything new is read (and not memorized
        # twice).
        self._rest: Optional[Any] = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names this class does not define.
        return getattr(self._file, name)

    def readline(self, size: int = -1) -> Any:
        """The next line, or its first `size` characters (the remainder
        comes with the next calls). The whole line is memorized when it
        is first read from the wrapped file."""
        if self._rest is not None:
            line, self._rest = self._rest, None
        else:
            line = self._file.readline()
            if line and (
                len(self._memorized_lines) < self._max_memorized_lines
            ):
                self._memorized_lines.append(line)
        if 0 <= size < len(line):
            self._rest = line[size:]
            return line[:size]
        return line

    def get_memorized_lines(self) -> List[Any]:
        """The lines memorized so far, in order."""
        return self._memorized_lines
