"""worker_pool: connection threads are reused once idle, never limited."""

from __future__ import annotations

import threading
import time

from mod_pywebsocket.worker_pool import WorkerPool


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'condition not met in time'
        time.sleep(0.005)


def test_an_idle_thread_serves_the_next_connection():
    pool = WorkerPool(idle_timeout=5)
    seen = []
    for _ in range(20):
        done = threading.Event()
        pool.submit(lambda: (seen.append(threading.get_ident()), done.set()))
        done.wait(5)
        _wait_for(lambda: pool.idle == 1)
    assert len(set(seen)) == 1  # one thread, not 20


def test_busy_threads_are_not_limited():
    pool = WorkerPool(idle_timeout=5, max_idle=2)
    release = threading.Event()
    running = []
    for _ in range(10):  # ten connections that block at once
        pool.submit(lambda: (running.append(1), release.wait(5)))
    _wait_for(lambda: len(running) == 10)
    release.set()
    _wait_for(lambda: pool.idle == 2)  # the rest have ended


def test_idle_threads_end_after_the_timeout():
    pool = WorkerPool(idle_timeout=0.05)
    done = threading.Event()
    pool.submit(done.set)
    done.wait(5)
    _wait_for(lambda: pool.idle == 0)
    again = threading.Event()
    pool.submit(again.set)  # a new thread serves it
    assert again.wait(5)
