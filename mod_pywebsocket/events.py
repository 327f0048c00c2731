"""Event-style handlers (the apache-websocket plugin model) on the core.

A handler that defines `on_message(conn, message)` (and optionally
`on_connect(conn)` and `on_disconnect(conn, code, reason)`) instead of
`web_socket_transfer_data` gets a receive loop run for it. `conn.send()`
may be called from any thread at any time after `on_connect`: messages are
queued, in order, in the connection core's bounded outgoing buffer and
written by the event loop (non-blocking) or by a writer thread of the
connection (blocking writes), so a slow client never blocks the sender.
A client whose queue overflows is closed with 1008 (policy violation) and
later sends to it raise ConnectionClosedError.

Every connection has an `id` unique across nodes and may `join()` named
groups; `broadcast()` and `send_to_group()` reach the connections of every
process sharing the broker (see mod_pywebsocket.broker).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    ConnectionTerminatedException,
    HandshakeException,
)
from mod_pywebsocket.http_header_util import format_extension
from mod_pywebsocket.threads import call_later, start_daemon

_logger = logging.getLogger(__name__)

Message = Union[str, bytes]

DEFAULT_MAX_QUEUED_MESSAGES = 4096
DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024
SLOW_CLIENT_CLOSE_CODE = common.STATUS_POLICY_VIOLATION
_WRITER_LINGER = 2.0  # seconds an idle writer thread waits
_MAX_EARLY_MESSAGES = 1024  # sent in on_connect, before the 101


def _peer_address(connection: Any) -> Optional[Tuple[str, int]]:
    """(host, port) of the client: mod_python's client_addr, a socket
    transport's remote_addr, else client_ip with port 0."""
    for name in ('client_addr', 'remote_addr'):
        address = getattr(connection, name, None)
        if isinstance(address, tuple) and len(address) >= 2:
            return str(address[0]), int(address[1])
    ip = getattr(connection, 'client_ip', None)
    return (str(ip), 0) if ip else None


class ConnectionClosedError(ConnectionTerminatedException):
    """send() on a connection that is closed or closing."""


_broker_module: Any = None


def _broker() -> Any:
    """The broker module, imported on first use (a server with only
    classic handlers never loads it) and kept: broadcasts call this per
    message."""
    global _broker_module
    if _broker_module is None:
        from mod_pywebsocket import broker

        _broker_module = broker
    return _broker_module


def _get_broker() -> Any:
    """This process's broker."""
    return _broker().get_broker()


def local_members(path: str) -> List['Connection']:
    """The open event-style connections of this process whose resource
    has this path (queries aside): the broker's directory keeps them."""
    return _get_broker().directory.members((_broker().TO_RESOURCE, path))


class Connection:
    """What an event-style handler gets as `conn`.

    Messages go into the stream's core (its outgoing buffer, in order,
    closes included) under a short lock; a driver writes them out: the
    event loop (non-blocking, woken by `flusher`), else a writer thread of
    this connection (blocking writes, so a slow client never blocks the
    sender)."""

    max_queued_messages = DEFAULT_MAX_QUEUED_MESSAGES
    max_queued_bytes = DEFAULT_MAX_QUEUED_BYTES

    def __init__(
        self, request: Any, close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT
    ) -> None:
        self.request = request
        self.resource: str = request.ws_resource  # path and query
        parts = urllib.parse.urlsplit(self.resource)
        self.path: str = parts.path or '/'
        self.query: Dict[str, List[str]] = urllib.parse.parse_qs(parts.query)
        self.state: dict = {}
        self.remote_address: Optional[Tuple[str, int]] = _peer_address(
            request.connection
        )
        self.close_timeout = close_timeout
        self.id: str = _get_broker().new_id()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # Set by the event loop while it runs this connection's callback:
        # it writes what the callback queued right after, so send() need
        # not wake it.
        self.flush_deferred = False
        self._early: List[Union[Message, Tuple[int, str]]] = []
        self._started = False
        self._closed = False
        self._flusher: Optional[Callable[[], None]] = None
        self._writer: Optional[threading.Thread] = None
        self._dirty = False  # the writer has something to flush
        # The writer thread runs in the context of the thread that accepted
        # the connection (a host's log context, e.g. Apache's server).
        self._context = contextvars.copy_context()

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

    @property
    def peer(self) -> str:
        """'host:port' of the client, for log lines."""
        if self.remote_address is None:
            return '-'
        return '%s:%d' % self.remote_address

    def send(self, message: Message) -> None:
        """Send a message (str -> text, bytes -> binary) without blocking:
        it is queued in order and written as the client takes it. Raises
        ConnectionClosedError when the connection is closed, or was just
        closed because its queue overflowed (a client too slow)."""
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(
                'a message must be str or bytes, not %s'
                % type(message).__name__
            )
        lock = self._lock  # (the condition's lock; not `with`: faster)
        lock.acquire()
        try:
            if self._closed:
                raise ConnectionClosedError(
                    'connection to %s is closed' % self.peer
                )
            if not self._started:
                if len(self._early) >= _MAX_EARLY_MESSAGES:
                    raise ConnectionClosedError(
                        'more than %d messages sent before the connection '
                        'opened' % _MAX_EARLY_MESSAGES
                    )
                self._early.append(message)
                return
            stream = self.request.ws_stream
            try:
                queued = stream.queue_message_within(
                    message, self.max_queued_messages, self.max_queued_bytes
                )
            except common.BadOperationException as e:
                self._closed = True
                raise ConnectionClosedError(
                    'connection to %s is closing: %s' % (self.peer, e)
                )
            if not queued:
                self._overflow(stream)
                raise ConnectionClosedError(
                    'send queue of %s full: closed with %d'
                    % (self.peer, SLOW_CLIENT_CLOSE_CODE)
                )
            if not self.flush_deferred:
                self._kick_locked()
        finally:
            lock.release()

    def close(
        self, code: int = common.STATUS_NORMAL_CLOSURE, reason: str = ''
    ) -> None:
        """Close after the messages already queued have been sent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if not self._started:
                self._early.append((code, reason))
                return
            self.request.ws_stream.queue_close(code, reason)
        self._kick()

    def peers(self) -> List['Connection']:
        """The other open connections to this resource in this process."""
        return [c for c in local_members(self.path) if c is not self]

    def broadcast(self, message: Message, include_self: bool = True) -> int:
        """Send to every open connection of this resource (its path;
        queries aside), on every node sharing the broker (never blocks);
        returns how many connections of this process accepted it. Called
        in on_connect with include_self, it reaches this connection too,
        which has not joined the room yet."""
        sent = 0
        if include_self and not self._started and not self._closed:
            try:
                self.send(message)
                sent = 1
            except ConnectionClosedError:
                pass
        return sent + _get_broker().send_to_resource(
            self.path, message, None if include_self else self.id
        )

    def join(self, group: str) -> None:
        """Join the group `group` (shared by all nodes and resources)."""
        _get_broker().join(self, group)

    def leave(self, group: str) -> None:
        _get_broker().leave(self, group)

    @property
    def groups(self) -> List[str]:
        """The groups this connection is in."""
        return _get_broker().directory.groups_of(self.id)

    def send_to_group(
        self, group: str, message: Message, include_self: bool = True
    ) -> int:
        """Send to every member of `group` on every node (never blocks);
        returns how many connections of this process accepted it."""
        return _get_broker().send_to_group(
            group, message, None if include_self else self.id
        )

    # ---- driving ---------------------------------------------------------

    def _overflow(self, stream: Any) -> None:
        # Called with self._cond held: drop the backlog, close with 1008
        # as soon as what is being written is out, cut the connection if
        # even that does not go out within the close timeout.
        _logger.warning(
            '%s: client too slow (%d messages, %d bytes '
            'queued); closing with %d',
            self.peer,
            stream.pending_frames,
            stream.pending_bytes,
            SLOW_CLIENT_CLOSE_CODE,
        )
        self._closed = True
        stream.discard_queued()
        stream.queue_close(SLOW_CLIENT_CLOSE_CODE, 'client too slow')
        self._kick_locked()
        shutdown = getattr(self.request.connection, 'shutdown', None)
        if shutdown is not None and self._flusher is None:
            # (the event loop bounds the close wait itself)
            call_later(self.close_timeout, shutdown, 'ws-slow-close')

    def _kick(self) -> None:
        with self._cond:
            self._kick_locked()

    def _kick_locked(self) -> None:
        # Called with self._cond held: get what is queued written.
        if not self._started:
            return
        if self._flusher is not None:
            self._flusher()
            return
        stream = self.request.ws_stream
        if self._writer is None and stream.can_try_flush:
            try:
                if stream.try_flush():
                    return
            except ConnectionTerminatedException as e:
                self._failed(e)
                return
        self._dirty = True
        if self._writer is None:
            self._writer = start_daemon(
                self._context.run, 'ws-writer', (self._write_loop,)
            )
        else:
            self._cond.notify_all()

    def _failed(self, error: Exception) -> None:
        # Called with self._cond held.
        if not self._closed or self._writer is not None:
            _logger.warning(
                '%s: sending failed, connection closed: %s', self.peer, error
            )
        self._closed = True

    def _write_loop(self) -> None:
        stream = self.request.ws_stream
        while True:
            with self._cond:
                if not self._dirty:
                    self._cond.wait(_WRITER_LINGER)
                    if not self._dirty:
                        self._writer = None
                        self._cond.notify_all()
                        return
                self._dirty = False
            try:
                stream.flush()
            except Exception as e:
                with self._cond:
                    self._failed(e)
                    self._writer = None
                    self._cond.notify_all()
                return

    def begin_sending(
        self, flusher: Optional[Callable[[], None]] = None
    ) -> None:
        """For drivers: the 101 is out, send what on_connect queued.
        `flusher` (the event loop's) gets queued bytes written; without it
        a writer thread does."""
        with self._cond:
            self._flusher = flusher
            stream = self.request.ws_stream
            self.close_timeout = stream.close_timeout
            for item in self._early:
                if isinstance(item, tuple):
                    stream.queue_close(*item)
                else:
                    stream.queue_message(
                        item, binary=not isinstance(item, str)
                    )
            self._early = []
            self._started = True
            self._kick_locked()

    def end_sending(self, timeout: float = 5.0) -> None:
        """For drivers: no more sends; wait (at most `timeout`) for the
        writer thread to write what is queued."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            if self._writer is threading.current_thread():
                return
            while self._writer is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def writer_active(self) -> bool:
        """Whether a writer thread is still sending queued messages."""
        with self._cond:
            return self._writer is not None


def event_connection(request) -> Connection:
    """The event-style handler's Connection of `request`, made when its
    opening handshake ran (EventHandlerSuite.do_extra_handshake)."""
    return request._ws_event_connection


class EventHandlerSuite:
    """Adapts on_connect / on_message / on_disconnect to the dispatcher's
    do_extra_handshake / transfer_data."""

    def __init__(
        self,
        path: str,
        on_message: Callable,
        on_connect: Optional[Callable] = None,
        on_disconnect: Optional[Callable] = None,
    ) -> None:
        self.path = path
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.passive_closing_handshake: Optional[
            Callable[[Any], Tuple[Optional[int], str]]
        ] = None

    def do_extra_handshake(self, request) -> None:
        conn = Connection(request)
        request._ws_event_connection = conn
        if self.on_connect is not None:
            if self.on_connect(conn) is False:
                raise HandshakeException(
                    'on_connect refused the connection',
                    common.HTTP_STATUS_FORBIDDEN,
                )

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
                self.on_message(event_connection(request), message)
        finally:
            self.finish(request)

    def start(
        self, request, flusher: Optional[Callable[[], None]] = None
    ) -> None:
        """The connection is open: join the room, let queued sends go.
        Joining first: a broadcast that comes as the client gets its
        on_connect messages is queued behind them, never missed.
        `flusher`: see Connection.begin_sending."""
        conn = event_connection(request)
        _get_broker().register(conn)
        conn.begin_sending(flusher)

    def finish(self, request, wait: bool = True) -> None:
        """Leave the room, stop sending, report on_disconnect. With
        `wait`, give the writer thread a bounded time to flush."""
        conn = event_connection(request)
        _get_broker().unregister(conn)
        conn.end_sending(conn.close_timeout if wait else 0)
        if self.on_disconnect is not None:
            code = request.ws_close_code
            if code is None and not request.client_terminated:
                code = common.STATUS_ABNORMAL_CLOSURE
            try:
                self.on_disconnect(conn, code, request.ws_close_reason)
            except Exception:
                _logger.error(
                    '%s: on_disconnect raised', self.path, exc_info=True
                )


def is_event_namespace(namespace: dict) -> bool:
    """Whether a handler's names make it event-style."""
    return callable(namespace.get('on_message')) and not callable(
        namespace.get('web_socket_transfer_data')
    )


def suite_from_events(namespace: dict, path: str) -> EventHandlerSuite:
    return EventHandlerSuite(
        path,
        namespace['on_message'],
        namespace.get('on_connect'),
        namespace.get('on_disconnect'),
    )
