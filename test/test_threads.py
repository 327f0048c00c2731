"""Background threads start with every signal blocked, so that a signal
sent to an Apache child runs Apache's handler on the thread Apache serves
from (a prefork child's SIGTERM handler ends the process from wherever it
runs)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from mod_pywebsocket import apache_io
from mod_pywebsocket.threads import call_later, start_daemon

pytestmark = pytest.mark.skipif(
    not hasattr(signal, 'pthread_sigmask'), reason='POSIX threads only'
)


def blocked_signals(native_id: int) -> set:
    """The signals a thread of this process blocks (its SigBlk)."""
    with open('/proc/self/task/%d/status' % native_id) as f:
        for line in f:
            if line.startswith('SigBlk:'):
                mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def thread_blocking_run(start) -> set:
    """What a thread started by `start(target)` blocks while it runs."""
    ready, done = threading.Event(), threading.Event()
    seen = {}

    def target():
        seen['id'] = threading.get_native_id()
        ready.set()
        done.wait(10)

    thread = start(target)
    assert ready.wait(10)
    try:
        return blocked_signals(seen['id'])
    finally:
        done.set()
        thread.join(10)


SERVER_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT}


def test_a_started_thread_blocks_every_signal_and_its_creator_none_more():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    blocked = thread_blocking_run(lambda t: start_daemon(t, 'test-thread'))
    assert SERVER_SIGNALS <= blocked
    # every signal that can be blocked (not SIGKILL, SIGSTOP)
    assert len(blocked) >= 60
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_the_send_watchdog_leaves_apache_signals_to_the_main_thread():
    watchdog = apache_io._Watchdog()
    watchdog.start()
    thread = watchdog._thread
    assert thread is not None and thread.daemon
    assert SERVER_SIGNALS <= blocked_signals(thread.native_id)
    assert not SERVER_SIGNALS & blocked_signals(threading.get_native_id())


def test_call_later_calls_once_after_the_delay():
    called = []
    started = time.monotonic()
    thread = call_later(0.05, lambda: called.append(time.monotonic()), 'later')
    thread.join(10)
    assert len(called) == 1 and called[0] - started >= 0.05
    assert thread.daemon and thread.name == 'later'
