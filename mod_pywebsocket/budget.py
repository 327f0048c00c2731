"""A server-wide budget for buffered incoming message bytes: each
connection reserves what it holds for messages not yet complete (frame
bytes received, fragments, inflated data) and releases it as messages
complete or the connection ends. A reservation past the budget is
refused: the connection closes with 1009 and a log line, and the budget
is never exceeded. Thread-safe; no I/O."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any, Optional

from mod_pywebsocket.common import MessageTooBigException

_logger = logging.getLogger('mod_pywebsocket.budget')

DEFAULT_MAX_BUFFERED = 512 * 1024 * 1024


class BudgetExhausted(MessageTooBigException):
    """The server-wide budget has no room for more of a message (1009).
    """


class MessageBudget:
    """`limit` bytes in all (0 = no limit)."""

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refusals = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        """Take `n` bytes; False (nothing taken) when they do not fit."""
        with self._lock:
            if self.limit and self.used + n > self.limit:
                self.refusals += 1
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def reserve_up_to(self, n: int) -> int:
        """Take up to `n` bytes; how many were taken."""
        with self._lock:
            granted = n if not self.limit else max(
                0, min(n, self.limit - self.used))
            self.used += granted
            self.peak = max(self.peak, self.used)
            return granted

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)

    def refused(self, peer: str, holding: int, wanted: int) -> None:
        """The log line of a refusal."""
        _logger.warning('%s: message buffer budget (%d bytes, %d in use) '
                        'exhausted: holding %d, wanted %d more; closing '
                        'with 1009', peer, self.limit, self.used, holding,
                        wanted)


_TRIM_AFTER = 1 << 20
_libc: Optional[Any] = None


def give_back_memory(released: int) -> None:
    """After a connection released `released` buffered bytes (1 MiB or
    more): malloc_trim(0), so glibc returns the freed heap to the system
    (its per-thread arenas otherwise keep it). No-op without glibc."""
    global _libc
    if released < _TRIM_AFTER:
        return
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library('c') or None)
        except OSError:
            _libc = False
    trim = getattr(_libc, 'malloc_trim', None) if _libc else None
    if trim is not None:
        trim(0)
