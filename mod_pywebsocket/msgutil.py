"""Message functions and helper threads for handlers.

`send_message(request, message)` and friends call `request.ws_stream`.
`MessageReceiver` receives on a thread of its own into a queue;
`MessageSender` sends from a queue on a thread of its own.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Optional, Union

from mod_pywebsocket import common

# Exceptions handlers caught as msgutil.<name> in the original package.
from mod_pywebsocket.common import (
    BadOperationException,  # noqa: F401
    ConnectionTerminatedException,  # noqa: F401
    InvalidFrameException,  # noqa: F401
    InvalidUTF8Exception,  # noqa: F401
    UnsupportedFrameException,  # noqa: F401
)

# Frame builders re-exported for handlers that used them from here.
from mod_pywebsocket.stream import (
    create_binary_frame,  # noqa: F401
    create_close_frame,  # noqa: F401
    create_closing_handshake_body,  # noqa: F401
    create_header,  # noqa: F401
    create_ping_frame,  # noqa: F401
    create_pong_frame,  # noqa: F401
    create_text_frame,  # noqa: F401
)

Message = Union[str, bytes]


def close_connection(
    request,
    code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
    reason: str = '',
    wait_response: bool = True,
) -> None:
    """Start the closing handshake (see Stream.close_connection)."""
    request.ws_stream.close_connection(code, reason, wait_response)


def send_message(
    request, message: Message, end: bool = True, binary: bool = False
) -> None:
    """Send a message: str as text, bytes as binary."""
    request.ws_stream.send_message(message, end=end, binary=binary)


def receive_message(request) -> Optional[Message]:
    """The next message, or None once the peer has closed."""
    return request.ws_stream.receive_message()


def send_ping(request, body: Union[bytes, str] = b'') -> None:
    request.ws_stream.send_ping(body)


class MessageReceiver(threading.Thread):
    """Receives messages on its own thread.

    With `onmessage`, each message is passed to it; otherwise they queue
    up for `receive()` (blocking) and `receive_nowait()` (None if empty).
    A None message marks the end of the connection.
    """

    def __init__(
        self,
        request,
        onmessage: Optional[Callable[[Optional[Message]], None]] = None,
    ) -> None:
        super().__init__(daemon=True, name='MessageReceiver')
        self._request = request
        self._queue: 'queue.Queue[Optional[Message]]' = queue.Queue()
        self._onmessage = onmessage
        self._stop_requested = False
        self.error: Optional[BaseException] = None
        self.start()

    def run(self) -> None:
        try:
            while not self._stop_requested:
                message = self._request.ws_stream.receive_message()
                if self._onmessage:
                    self._onmessage(message)
                else:
                    self._queue.put(message)
                if message is None:
                    break
        except Exception as e:  # surfaced through .error and a None
            self.error = e
            if not self._onmessage:
                self._queue.put(None)
        finally:
            close_connection(self._request)

    def receive(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message; blocks (up to `timeout`; queue.Empty after)."""
        if self._onmessage:
            raise common.BadOperationException(
                'receive() is not available with onmessage'
            )
        return self._queue.get(timeout=timeout)

    def receive_nowait(self) -> Optional[Message]:
        """The next message, or None when none has arrived."""
        if self._onmessage:
            raise common.BadOperationException(
                'receive_nowait() is not available with onmessage'
            )
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Stop after the current receive; closes the connection."""
        self._stop_requested = True


class MessageSender(threading.Thread):
    """Sends messages on its own thread, in the order given."""

    def __init__(self, request) -> None:
        super().__init__(daemon=True, name='MessageSender')
        self._request = request
        self._queue: 'queue.Queue' = queue.Queue()
        self.start()

    def run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            message, done = item
            try:
                send_message(
                    self._request, message, binary=isinstance(message, bytes)
                )
                done.put(None)
            except Exception as e:
                done.put(e)

    def send(self, message: Message) -> None:
        """Send and wait until it is written; raises what sending raised."""
        done: 'queue.Queue' = queue.Queue()
        self._queue.put((message, done))
        error = done.get()
        if error is not None:
            raise error

    def send_nowait(self, message: Message) -> None:
        """Queue a message and return at once."""
        self._queue.put((message, queue.Queue()))

    def stop(self) -> None:
        """Finish the queued messages, then end the thread."""
        self._queue.put(None)
