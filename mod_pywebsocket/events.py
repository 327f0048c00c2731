"""Event-style handlers (the apache-websocket plugin model) on the core.

A handler that defines `on_message(conn, message)` (and optionally
`on_connect(conn)` and `on_disconnect(conn, code, reason)`) instead of
`web_socket_transfer_data` gets a receive loop run for it. `conn.send()`
may be called from any thread at any time after `on_connect`: messages go
into a bounded per-connection queue drained by a writer thread, so a slow
client never blocks the sender. A client whose queue overflows is closed
with 1008 (policy violation) and later sends to it raise
ConnectionClosedError.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Set, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (ConnectionTerminatedException,
                                    HandshakeException)
from mod_pywebsocket.http_header_util import format_extension

_logger = logging.getLogger(__name__)

Message = Union[str, bytes]

DEFAULT_MAX_QUEUED_MESSAGES = 4096
DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024
SLOW_CLIENT_CLOSE_CODE = common.STATUS_POLICY_VIOLATION
_WRITER_LINGER = 2.0            # seconds an idle writer thread waits


# Items of a connection's send queue: typed, so that no payload (an empty
# message included) can be mistaken for an instruction.
class _Send:
    __slots__ = ('message',)

    def __init__(self, message: Message) -> None:
        self.message = message


class _Control:
    __slots__ = ('opcode', 'payload')

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload


class _Close:
    __slots__ = ('code', 'reason')

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Flush:
    """Write what a non-blocking send left unsent."""
    __slots__ = ()


_FLUSH = _Flush()
_QueueItem = Union[_Send, _Control, _Close, _Flush]


class ConnectionClosedError(ConnectionTerminatedException):
    """send() on a connection that is closed or closing."""


class _Registry:
    """Open event-style connections per resource, in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_resource: Dict[str, Set['Connection']] = {}

    def add(self, conn: 'Connection') -> None:
        with self._lock:
            self._by_resource.setdefault(conn.resource, set()).add(conn)

    def remove(self, conn: 'Connection') -> None:
        with self._lock:
            members = self._by_resource.get(conn.resource)
            if members is not None:
                members.discard(conn)
                if not members:
                    del self._by_resource[conn.resource]

    def members(self, resource: str) -> List['Connection']:
        with self._lock:
            return list(self._by_resource.get(resource, ()))


registry = _Registry()


class Connection:
    """What an event-style handler gets as `conn`."""

    max_queued_messages = DEFAULT_MAX_QUEUED_MESSAGES
    max_queued_bytes = DEFAULT_MAX_QUEUED_BYTES

    def __init__(self, request) -> None:
        self.request = request
        self.resource: str = request.ws_resource.split('?', 1)[0]
        self.state: dict = {}
        addr = getattr(request.connection, 'client_ip', None)
        if addr is None:
            remote = getattr(request.connection, 'remote_addr', None)
            addr = remote[0] if remote else None
        self.remote_address: Optional[str] = addr
        self._cond = threading.Condition()
        self._queue: 'collections.deque[_QueueItem]' = collections.deque()
        self._queued_bytes = 0
        self._in_flight = False   # the writer took an item, not yet sent
        # The writer thread runs in the context of the thread that accepted
        # the connection (a host's log context, e.g. Apache's server).
        self._context = contextvars.copy_context()
        self._started = False
        self._closed = False
        self._writer: Optional[threading.Thread] = None
        self._direct = False      # decided in _start(), once the stream exists

    # ---- what handlers use -------------------------------------------------

    @property
    def protocol(self) -> Optional[str]:
        """The subprotocol; set it in on_connect to choose one."""
        return self.request.ws_protocol

    @protocol.setter
    def protocol(self, value: Optional[str]) -> None:
        self.request.ws_protocol = value

    @property
    def requested_protocols(self) -> List[str]:
        return list(self.request.ws_requested_protocols or [])

    @property
    def extensions(self) -> List[str]:
        return [format_extension(e) for e in self.request.ws_extensions or []]

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: Message) -> None:
        """Send a message (str → text, bytes → binary) without blocking:
        written at once when the socket takes it, else queued for the
        writer thread. Raises ConnectionClosedError when the connection is
        closed, or was just closed because its queue overflowed (a client
        too slow)."""
        size = len(message)
        with self._cond:
            if self._closed:
                raise ConnectionClosedError('connection to %s is closed'
                                            % self.remote_address)
            direct = (self._started and self._writer is None
                      and not self._queue and self._direct)
            if not direct:
                if (len(self._queue) >= self.max_queued_messages
                        or self._queued_bytes + size > self.max_queued_bytes):
                    self._overflow()
                    raise ConnectionClosedError(
                        'send queue of %s full: closed with %d'
                        % (self.remote_address, SLOW_CLIENT_CLOSE_CODE))
                self._queue.append(_Send(message))
                self._queued_bytes += size
                self._wake_writer()
                return
        try:
            complete = self.request.ws_stream.send_message_nowait(message)
        except Exception as e:
            with self._cond:
                self._closed = True
            raise ConnectionClosedError('sending to %s failed: %s'
                                        % (self.remote_address, e))
        if not complete:
            with self._cond:
                self._queue.append(_FLUSH)
                self._wake_writer()

    def close(self, code: int = common.STATUS_NORMAL_CLOSURE,
              reason: str = '') -> None:
        """Close after the messages already queued have been sent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.append(_Close(code, reason))
            self._wake_writer()

    def send_control(self, opcode: int, payload: bytes = b'') -> None:
        """Queue a ping or pong (never blocks; dropped once closed)."""
        with self._cond:
            if self._closed:
                return
            self._queue.append(_Control(opcode, payload))
            self._wake_writer()

    def peers(self) -> List['Connection']:
        """The other open connections to this resource in this process."""
        return [c for c in registry.members(self.resource) if c is not self]

    def broadcast(self, message: Message, include_self: bool = True) -> int:
        """Send to every open connection of this resource (never blocks);
        returns how many accepted it."""
        sent = 0
        members = registry.members(self.resource)
        for conn in members:
            if conn is self and not include_self:
                continue
            try:
                conn.send(message)
                sent += 1
            except ConnectionClosedError:
                pass
        return sent

    # ---- internals -----------------------------------------------------

    def _wake_writer(self) -> None:
        # Called with self._cond held.
        if not self._started:
            return
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._context.run, args=(self._write_loop,),
                daemon=True, name='ws-writer')
            self._writer.start()
        else:
            self._cond.notify_all()

    def _overflow(self) -> None:
        # Called with self._cond held: drop the backlog, close with 1008
        # as soon as the writer is free, cut the connection if even that
        # does not go out within the close timeout.
        _logger.warning('%s: client too slow (%d messages, %d bytes '
                        'queued); closing with %d', self.remote_address,
                        len(self._queue), self._queued_bytes,
                        SLOW_CLIENT_CLOSE_CODE)
        self._queue.clear()
        self._queued_bytes = 0
        self._closed = True
        self._queue.append(_Close(SLOW_CLIENT_CLOSE_CODE, 'client too slow'))
        self._wake_writer()
        shutdown = getattr(self.request.connection, 'shutdown', None)
        if shutdown is not None:
            timer = threading.Timer(common.DEFAULT_CLOSE_TIMEOUT, shutdown)
            timer.daemon = True
            timer.start()

    def _write_loop(self) -> None:
        stream = self.request.ws_stream
        while True:
            with self._cond:
                self._in_flight = False
                if not self._queue:
                    self._cond.notify_all()          # drain() waits for this
                    self._cond.wait(_WRITER_LINGER)
                    if not self._queue:
                        self._writer = None
                        return
                item = self._queue.popleft()
                self._in_flight = True
                if isinstance(item, _Send):
                    self._queued_bytes -= len(item.message)
            try:
                self._write_item(stream, item)
            except Exception as e:
                _logger.warning('%s: sending failed, connection closed: %s',
                                self.remote_address, e)
                with self._cond:
                    self._closed = True
                    self._queue.clear()
                    self._queued_bytes = 0
                    self._in_flight = False
                    self._writer = None
                    self._cond.notify_all()
                return

    @staticmethod
    def _write_item(stream, item: _QueueItem) -> None:
        if isinstance(item, _Send):
            message = item.message
            stream.send_message(message, binary=not isinstance(message, str))
        elif isinstance(item, _Flush):
            stream.flush()
        elif isinstance(item, _Control):
            if item.opcode == common.OPCODE_PING:
                stream.send_ping(item.payload)
            else:
                stream.send_pong(item.payload)
        else:
            stream.close_connection(item.code, item.reason,
                                    wait_response=False)

    def drain(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) until what is queued has been
        written, so that a close sent now goes out after it. Returns at
        once on the writer thread itself."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._writer is threading.current_thread():
                return
            while self._writer is not None and (self._queue
                                                or self._in_flight):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _start(self) -> None:
        # Try non-blocking sends first where stream and transport offer
        # them (RFC 6455 over a socket; not mod_python, not draft-75/76).
        self._direct = (hasattr(self.request.ws_stream, 'send_message_nowait')
                        and hasattr(self.request.connection, 'try_write'))
        with self._cond:
            self._started = True
            if self._queue:
                self._wake_writer()

    def _finish(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            writer = self._writer
            self._cond.notify_all()
        if (timeout and writer is not None
                and writer is not threading.current_thread()):
            writer.join(timeout)

    def writer_active(self) -> bool:
        """Whether a writer thread is still sending queued messages."""
        with self._cond:
            return self._writer is not None


class EventHandlerSuite:
    """Adapts on_connect / on_message / on_disconnect to the dispatcher's
    do_extra_handshake / transfer_data."""

    def __init__(self, path: str, on_message: Callable,
                 on_connect: Optional[Callable] = None,
                 on_disconnect: Optional[Callable] = None) -> None:
        self.path = path
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.passive_closing_handshake = None

    def do_extra_handshake(self, request) -> None:
        conn = Connection(request)
        request.ws_event_connection = conn
        if self.on_connect is not None:
            if self.on_connect(conn) is False:
                raise HandshakeException('on_connect refused the connection',
                                         common.HTTP_STATUS_FORBIDDEN)

    def transfer_data(self, request) -> None:
        """Run the receive loop on this thread (Apache, or the standalone
        server without its event loop)."""
        stream = request.ws_stream
        self.start(request)
        try:
            while True:
                message = stream.receive_message()
                if message is None:
                    return
                self.on_message(request.ws_event_connection, message)
        finally:
            self.finish(request)

    def start(self, request) -> None:
        """The connection is open: let queued sends go, join the room."""
        conn: Connection = request.ws_event_connection
        request.ws_stream.before_close = conn.drain
        conn._start()
        registry.add(conn)

    def finish(self, request, wait: bool = True) -> None:
        """Leave the room, stop sending, report on_disconnect. With
        `wait`, give the writer thread a bounded time to flush."""
        conn: Connection = request.ws_event_connection
        registry.remove(conn)
        conn._finish(5.0 if wait else 0)
        if self.on_disconnect is not None:
            code = request.ws_close_code
            if code is None and not request.client_terminated:
                code = common.STATUS_ABNORMAL_CLOSURE
            try:
                self.on_disconnect(conn, code, request.ws_close_reason)
            except Exception:
                _logger.error('%s: on_disconnect raised', self.path,
                              exc_info=True)


def is_event_namespace(namespace: dict) -> bool:
    """Whether a handler's names make it event-style."""
    return callable(namespace.get('on_message')) and not callable(
        namespace.get('web_socket_transfer_data'))


def suite_from_events(namespace: dict, path: str) -> EventHandlerSuite:
    return EventHandlerSuite(path, namespace['on_message'],
                             namespace.get('on_connect'),
                             namespace.get('on_disconnect'))

