"""Chat clients for the broker tests: each sends numbered messages
("<name>:<n>") and records everything it receives, on its own thread."""

from __future__ import annotations

import threading
import time
from typing import Dict, Iterable, List

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class ChatClient:
    """A connected client; `received` fills from a reader thread."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.ws = connect(
            url, open_timeout=10, max_size=None, compression=None
        ).__enter__()
        self.received: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                self.received.append(self.ws.recv())
        except ConnectionClosed:
            pass

    def send_numbered(
        self, first: int, count: int, pause: float = 0.0
    ) -> None:
        for n in range(first, first + count):
            self.ws.send('%s:%d' % (self.name, n))
            if pause:
                time.sleep(pause)

    def by_sender(self) -> Dict[str, List[int]]:
        """Sequence numbers received, per sender, in arrival order."""
        result: Dict[str, List[int]] = {}
        for message in list(self.received):
            sender, _, n = message.rpartition(':')
            result.setdefault(sender, []).append(int(n))
        return result

    def close(self) -> None:
        self.ws.close()
        self._reader.join(5)


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def wait_received(
    clients: Iterable[ChatClient], total: int, timeout: float
) -> bool:
    clients = list(clients)
    return wait_until(
        lambda: all(len(c.received) >= total for c in clients), timeout
    )


def send_all(
    clients: Iterable[ChatClient],
    count: int,
    pause: float = 0.0,
    first: int = 0,
) -> None:
    """Every client sends `count` messages, all at the same time."""
    threads = [
        threading.Thread(target=c.send_numbered, args=(first, count, pause))
        for c in clients
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
