"""One thread that reads every event-style connection of the standalone
server, so an open connection costs no thread of its own.

After the handshake, the connection's thread hands the socket to the loop
and ends. The loop waits on all sockets with a selector, feeds what
arrives to each stream (`Stream.feed` / `poll_message`) and calls
`on_message` on its own thread: callbacks must return quickly (hand long
work to a thread of your own). Sending goes through each connection's
queue and writer thread as before, so a slow client never blocks the loop.
Keepalive pings and the pong timeout are timers of the loop.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from typing import Callable, Dict, Optional

from mod_pywebsocket import common
from mod_pywebsocket.common import ConnectionTerminatedException, ProtocolError
from mod_pywebsocket.stream import NEED_DATA

_logger = logging.getLogger(__name__)

READ_SIZE = 65536


class _Entry:
    __slots__ = ('request', 'suite', 'sock', 'last_read', 'ping_sent_at',
                 'closing_since', 'on_end', 'ended')

    def __init__(self, request, suite, sock, on_end) -> None:
        self.request = request
        self.suite = suite
        self.sock = sock
        self.last_read = time.monotonic()
        self.ping_sent_at: Optional[float] = None
        self.closing_since: Optional[float] = None
        self.on_end = on_end
        self.ended = False


class EventLoop:
    """The selector thread; `add()` is called from connection threads."""

    def __init__(self, keepalive_interval: Optional[float] = None,
                 keepalive_timeout: Optional[float] = None,
                 close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT
                 ) -> None:
        self._selector = selectors.DefaultSelector()
        self._close_timeout = close_timeout
        self._interval = keepalive_interval
        self._timeout = keepalive_timeout or keepalive_interval
        self._lock = threading.Lock()
        self._incoming: list = []
        self._entries: Dict[int, _Entry] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='ws-event-loop')
        self._thread.start()

    def add(self, request, suite, sock: socket.socket,
            on_end: Callable[[object], None]) -> None:
        """Serve an open connection: start its suite and watch its socket;
        `on_end(request)` runs on the loop once it is over."""
        conn = request.ws_event_connection
        # The loop never blocks on a write: pongs go through the
        # connection's writer, and a write that still blocks (the reply to
        # a close) gives up after the close timeout.
        request.on_ping_handler = (
            lambda req, payload: conn.send_control(common.OPCODE_PONG,
                                                   payload))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                            struct.pack('ll', int(self._close_timeout), 0))
        except OSError:
            pass
        # Bytes the client sent right behind its handshake were read with
        # the HTTP head: they go first.
        pending = request.connection.take_pending()
        if pending:
            request.ws_stream.feed(pending)
        suite.start(request)
        # A close the loop sends must not wait here for the writer.
        request.ws_stream.before_close = None
        with self._lock:
            self._incoming.append(_Entry(request, suite, sock, on_end))
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b'x')
        except OSError:
            pass

    def _run(self) -> None:
        next_sweep = time.monotonic() + 1.0
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                entry = key.data
                if entry is None:
                    self._drain_wakeups()
                    continue
                try:
                    self._readable(entry)
                except Exception:
                    # One connection's failure never stops the loop.
                    _logger.error('%s: error on the event loop',
                                  entry.request.ws_resource, exc_info=True)
                    self._end(entry)
            self._register_incoming()
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + min(
                    1.0, (self._interval or 4.0) / 4)
        for entry in list(self._entries.values()):
            self._end(entry)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _register_incoming(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for entry in incoming:
            try:
                self._selector.register(entry.sock, selectors.EVENT_READ,
                                        entry)
            except (OSError, ValueError):
                self._end(entry)
                continue
            self._entries[entry.sock.fileno()] = entry
            self._deliver(entry)     # anything fed before registration

    def _readable(self, entry: _Entry) -> None:
        try:
            data = entry.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        if not data:
            return self._end(entry)
        entry.last_read = time.monotonic()
        entry.ping_sent_at = None
        entry.request.ws_stream.feed(data)
        self._deliver(entry)

    def _deliver(self, entry: _Entry) -> None:
        request = entry.request
        stream = request.ws_stream
        conn = request.ws_event_connection
        while True:
            try:
                message = stream.poll_message()
            except (ProtocolError, ConnectionTerminatedException) as e:
                _logger.info('%s: %s', request.ws_resource, e)
                return self._end(entry)
            if message is NEED_DATA:
                return
            if message is None:
                return self._end(entry)
            try:
                entry.suite.on_message(conn, message)
            except Exception:
                _logger.error('%s raised in on_message', entry.suite.path,
                              exc_info=True)
                conn.close(common.STATUS_INTERNAL_ENDPOINT_ERROR)
                return

    def _sweep(self) -> None:
        """Keepalive pings and their timeout; a bound on the wait for the
        peer's close after ours went out."""
        now = time.monotonic()
        for entry in list(self._entries.values()):
            request = entry.request
            if request.server_terminated:
                if entry.closing_since is None:
                    entry.closing_since = now
                elif now - entry.closing_since > self._close_timeout:
                    self._end(entry)
                continue
            if not self._interval:
                continue
            if entry.ping_sent_at is not None:
                if now - entry.ping_sent_at > self._timeout:
                    _logger.info('%s: no answer to a keepalive ping',
                                 request.ws_resource)
                    self._end(entry)
            elif now - entry.last_read > self._interval:
                request.ws_event_connection.send_control(
                    common.OPCODE_PING, b'keepalive')
                entry.ping_sent_at = now

    def _end(self, entry: _Entry) -> None:
        if entry.ended:
            return
        entry.ended = True
        if self._entries.pop(entry.sock.fileno(), None) is not None:
            try:
                self._selector.unregister(entry.sock)
            except (KeyError, ValueError, OSError):
                pass
        request = entry.request
        entry.suite.finish(request, wait=False)
        conn = request.ws_event_connection
        if conn.writer_active():
            # Let the writer finish what is queued, off the loop.
            threading.Thread(target=self._close_after_writer,
                             args=(entry,), daemon=True).start()
        else:
            self._close_socket(entry)

    def _close_after_writer(self, entry: _Entry) -> None:
        conn = entry.request.ws_event_connection
        deadline = time.monotonic() + common.DEFAULT_CLOSE_TIMEOUT
        while conn.writer_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._close_socket(entry)

    @staticmethod
    def _close_socket(entry: _Entry) -> None:
        sock = entry.sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        entry.on_end(entry.request)

