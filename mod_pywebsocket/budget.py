"""A server-wide budget for buffered incoming message bytes: each
connection reserves what it holds for messages not yet complete (frame
bytes received, fragments, inflated data) and releases it as messages
complete or the connection ends. A reservation past the budget is
refused: the connection closes with 1009 and a log line, and the budget
is never exceeded. Thread-safe; no I/O."""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any, Optional

from mod_pywebsocket.common import MessageTooBigException

_logger = logging.getLogger('mod_pywebsocket.budget')

DEFAULT_MAX_BUFFERED = 512 * 1024 * 1024


class BudgetExhausted(MessageTooBigException):
    """The server-wide budget has no room for more of a message (1009)."""


class MessageBudget:
    """`limit` bytes in all (0 = no limit)."""

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refusals = 0
        self._released = 0  # since the last trim
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
            granted = (
                n if not self.limit else max(0, min(n, self.limit - self.used))
            )
            self.used += granted
            self.peak = max(self.peak, self.used)
            return granted

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)
            self._released += n

    def give_back_memory(self) -> None:
        """Once 1 MiB or more was released since the last trim: have the C
        allocator return freed memory to the system. A host calls it when
        a connection has ended and dropped its buffers."""
        if self._released < _TRIM_AFTER:  # (most connections: no lock)
            return
        with self._lock:
            released, self._released = self._released, 0
        give_back_memory(released)

    def refused(self, peer: str, holding: int, wanted: int) -> None:
        """The log line of a refusal."""
        _logger.warning(
            '%s: message buffer budget (%d bytes, %d in use) '
            'exhausted: holding %d, wanted %d more; closing '
            'with 1009',
            peer,
            self.limit,
            self.used,
            holding,
            wanted,
        )


def forget_tracebacks(error: Optional[BaseException]) -> None:
    """Drop the tracebacks of a connection's stored error and of the
    errors it chains to. Such a traceback holds the frames the error was
    raised through, the connection's own among them: a reference cycle
    that keeps the connection and the locals of those frames (a half
    inflated message, the frame being read) until the next full garbage
    collection, which an idle server may not run for a long time."""
    for _ in range(8):  # (a chain is short; bound it anyway)
        if error is None:
            return
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


_TRIM_AFTER = 1 << 20
_libc: Optional[Any] = None


def _load_libc() -> Optional[Any]:
    global _libc
    if _libc is None:
        # The process's own symbols: libc's are among them in any
        # dynamically linked program (find_library would run ldconfig,
        # a fork and exec in every Apache child).
        try:
            _libc = ctypes.CDLL(None)
        except OSError:
            _libc = False
    return _libc or None


# glibc hands a freed block of 128 KiB or more straight back to the
# system (mmap, or trimming the heap's top), raising those thresholds on
# its own only part of the way, so every new large message faults its
# pages in again: 0.85 ms per fresh MiB on this kind of VM, more than the
# rest of a 1 MiB echo. With these, freed buffers under 4 MiB stay in
# the heap for the next message (up to 8 MiB free per arena: a bounded
# addition to the budget, and glibc has at most 8 arenas per core);
# give_back_memory() still returns them once connections end.
MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_buffers() -> bool:
    """Tune glibc's malloc for a server that moves large messages (see
    above); False when the C library is not glibc. Process-wide: the
    standalone server calls it at startup, hosts embedded elsewhere
    (Apache, a test harness) do not."""
    libc = _load_libc()
    mallopt = getattr(libc, 'mallopt', None) if libc else None
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def give_back_memory(released: int) -> None:
    """After `released` buffered bytes (1 MiB or more) were freed:
    malloc_trim(0), so glibc returns the free pages of all its arenas to
    the system (the per-thread arenas otherwise keep them: glibc only
    shrinks an arena from its top, and after a big free it raises its
    trim threshold). No-op without glibc."""
    if released < _TRIM_AFTER:
        return
    libc = _load_libc()
    trim = getattr(libc, 'malloc_trim', None) if libc else None
    if trim is not None:
        trim(0)
