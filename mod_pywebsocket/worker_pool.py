"""Threads for accepted connections, kept once idle for the next one.

A connection thread reads the opening handshake and then either runs a
classic handler to the end or hands the socket to the event loop within a
millisecond (an event-style handshake whose head has all arrived by the
time it is accepted needs no thread: the accepting thread runs it).
Starting a thread for each costs more CPU than the handshake itself, so
a finished thread waits up to `idle_timeout` seconds for the next
connection (at most `max_idle` wait); there is no limit on busy threads,
as with one thread per connection. No I/O."""

from __future__ import annotations

import queue
import threading
from typing import Callable

Job = Callable[[], None]


class WorkerPool:
    def __init__(
        self,
        name: str = 'ws-conn',
        idle_timeout: float = 30.0,
        max_idle: int = 64,
    ) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle
        self._jobs: 'queue.SimpleQueue[Job]' = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting in _jobs.get()
        self._started = 0

    @property
    def idle(self) -> int:
        return self._idle

    def submit(self, job: Job) -> None:
        """Run `job` on an idle thread, else on a new one."""
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread is spoken for
                self._jobs.put(job)
                return
            self._started += 1
            number = self._started
        threading.Thread(
            target=self._work,
            args=(job,),
            daemon=True,
            name='%s-%d' % (self._name, number),
        ).start()

    def _work(self, job: Job) -> None:
        while True:
            job()
            del job  # (drop the connection before waiting)
            with self._lock:
                if self._idle >= self._max_idle:
                    return
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    try:  # handed one as the wait ran out
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        return
