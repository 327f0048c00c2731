"""Background threads started with every signal blocked: those that can
run in an Apache child (send watchdog, HTTP/2 I/O, event writers, Redis
broker, close flushes). The standalone server's own threads (connection
workers, event loop) start as usual.

A process-directed signal goes to any thread that does not block it. In
an Apache child, SIGTERM, SIGHUP and SIGUSR1 run Apache's handlers (a
prefork child's SIGTERM handler exits the process), which must run on
the thread Apache serves from, not on a watchdog or writer of ours in the
middle of a Python call. Python's own handlers do not mind (they run on
the main thread whichever thread caught the signal), so the standalone
server loses nothing either.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, Tuple

_pthread_sigmask = getattr(signal, 'pthread_sigmask', None)


def start_daemon(
    target: Callable[..., Any], name: str, args: Tuple[Any, ...] = ()
) -> threading.Thread:
    """Start `target(*args)` on a new daemon thread that blocks every
    signal (the mask is set before the thread exists: no window)."""
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    if _pthread_sigmask is None:  # (no POSIX threads: nothing to block)
        thread.start()
        return thread
    previous = _pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()  # (a new thread inherits the mask of its creator)
    finally:
        _pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


def call_later(
    delay: float, function: Callable[[], Any], name: str
) -> threading.Thread:
    """Call `function()` after `delay` seconds, on such a thread."""
    return start_daemon(_call_after, name, (delay, function))


def _call_after(delay: float, function: Callable[[], Any]) -> None:
    time.sleep(delay)
    function()
