"""Blocking message I/O over a transport (`request.ws_stream`): the driver
of the sans-I/O core (connection.py) behind the classic handler API.

A transport is anything with `read(n)` (up to n bytes; b'' or None at EOF)
and `write(data)`; `try_write(data)` (non-blocking, returns how many bytes
went out) and `set_read_timeout(seconds)` are used when it has them. One
thread receives; any thread may send: frames are queued in the core under
a short lock and written in order by whichever thread flushes, one write
at a time, so a frame is never split or reordered.

`request.client_terminated`, `server_terminated`, `ws_close_code` and
`ws_close_reason` are kept up to date for handlers (pywebsocket3's
surface); a handler that writes its own close frame may set
`request.server_terminated = True` and the stream sends no other.

The frame builders that handlers use to craft raw frames live here too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List, NoReturn, Optional, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    ProtocolError,
)

# Exceptions pywebsocket3 handlers and tests import from this module.
from mod_pywebsocket.common import (
    InvalidFrameException,  # noqa: F401
    InvalidUTF8Exception,  # noqa: F401
    UnsupportedFrameException,  # noqa: F401
)
from mod_pywebsocket.connection import (
    CloseReceived,
    HixieConnection,
    Message,
    Ping,
    Pong,
    State,
    WebSocketConnection,
)
from mod_pywebsocket.threads import start_daemon
from mod_pywebsocket.util import read_exactly
from mod_pywebsocket.frame import (
    Frame,
    FrameParser,
    build_close_body,
    build_frame,
    create_header,
    create_length_header,
)

__all__ = [
    'Stream',
    'StreamOptions',
    'Frame',
    'create_header',
    'create_length_header',
    'create_text_frame',
    'create_binary_frame',
    'create_ping_frame',
    'create_pong_frame',
    'create_close_frame',
    'create_closing_handshake_body',
]

_logger = logging.getLogger(__name__)

# Per-message paths take their locks with acquire() and try/finally, not
# `with`: on CPython 3.11 a with-statement costs about 100 ns more, and a
# message passes several locks.

# Reads are small while no large frame is in progress (an idle connection
# blocked in recv keeps its buffer allocated) and grow to what a large
# frame still needs, up to MAX_READ_SIZE.
READ_SIZE = 8192
MAX_READ_SIZE = 262144

Payload = Union[str, bytes]
Core = Union[WebSocketConnection, HixieConnection]


def create_text_frame(
    message: Union[str, bytes],
    opcode: int = common.OPCODE_TEXT,
    fin: int = 1,
    mask: bool = False,
    frame_filters: Any = (),
) -> bytes:
    """A text frame (str is UTF-8 encoded)."""
    if isinstance(message, str):
        message = message.encode('utf-8')
    return build_frame(opcode, message, fin, mask=mask)


def create_binary_frame(
    message: bytes,
    opcode: int = common.OPCODE_BINARY,
    fin: int = 1,
    mask: bool = False,
    frame_filters: Any = (),
) -> bytes:
    """A binary frame."""
    return build_frame(opcode, message, fin, mask=mask)


def create_ping_frame(
    body: bytes = b'', mask: bool = False, frame_filters: Any = ()
) -> bytes:
    return build_frame(common.OPCODE_PING, body, mask=mask)


def create_pong_frame(
    body: bytes = b'', mask: bool = False, frame_filters: Any = ()
) -> bytes:
    return build_frame(common.OPCODE_PONG, body, mask=mask)


def create_closing_handshake_body(code: Optional[int], reason: str) -> bytes:
    """A close frame body (empty when `code` is None)."""
    return build_close_body(code, reason)


def create_close_frame(
    body: bytes, mask: bool = False, frame_filters: Any = ()
) -> bytes:
    return build_frame(common.OPCODE_CLOSE, body, mask=mask)


class StreamOptions:
    """How a stream behaves; the defaults are a server's."""

    def __init__(self) -> None:
        self.mask_send = False  # a client masks
        self.expect_masked = True  # a server expects masked frames
        self.max_message_size = common.DEFAULT_MAX_MESSAGE_SIZE
        self.close_timeout = common.DEFAULT_CLOSE_TIMEOUT
        self.keepalive_interval: Optional[float] = None  # seconds
        self.keepalive_timeout: Optional[float] = None  # seconds
        # The close code for RSV bits no extension claims: 1002 or 1003.
        self.rsv_close_code = common.STATUS_PROTOCOL_ERROR
        self.deflater: Any = None  # extensions.Deflater
        self.inflater: Any = None  # extensions.Inflater

    # pywebsocket3's name for the other side of mask_send.
    @property
    def unmask_receive(self) -> bool:
        return self.expect_masked

    @unmask_receive.setter
    def unmask_receive(self, value: bool) -> None:
        self.expect_masked = value


class _RequestConnection:
    """The transport of a stream built as `Stream(request, options)`
    (pywebsocket3's way, also in its tests' mock requests): every call
    looks up `request.connection` anew, so the connection may be set or
    replaced after the stream is built."""

    def __init__(self, request: Any) -> None:
        self._request = request
        connection = getattr(request, 'connection', None)
        if hasattr(connection, 'set_read_timeout'):
            self.set_read_timeout = self._set_read_timeout

    def _set_read_timeout(self, timeout: Optional[float]) -> None:
        self._request.connection.set_read_timeout(timeout)

    def read(self, length: int) -> bytes:
        return self._request.connection.read(length)

    def write(self, data: bytes) -> None:
        self._request.connection.write(data)


class _NoRequest:
    """Stands in for the request of a stream that has none (the client)."""

    server_terminated = False
    client_terminated = False
    ws_close_code: Optional[int] = None
    ws_close_reason: Optional[str] = None
    on_ping_handler = None
    on_pong_handler = None


def _no_read_timeout(timeout: Optional[float]) -> None:
    """set_read_timeout of a transport whose reads cannot time out."""


class Stream:
    """Message I/O for one RFC 6455 / hybi-08 connection."""

    def __init__(
        self,
        request: Any,
        options: Optional[StreamOptions] = None,
        transport: Any = None,
        *,
        passive_closing_handler: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        options = options or StreamOptions()
        self._options = options
        self.connection: Core = WebSocketConnection(
            options.mask_send,  # (in the order of its parameters)
            options.max_message_size,
            options.deflater,
            options.inflater,
            options.close_timeout,
            options.keepalive_interval,
            options.keepalive_timeout,
            options.rsv_close_code,
        )
        self._init(request, transport, passive_closing_handler)

    def _init(
        self,
        request: Any,
        transport: Any,
        passive_closing_handler: Optional[Callable[[Any], Any]],
    ) -> None:
        # (state set per instance, not as class defaults: Python 3.11
        # specializes reads of instance attributes only)
        self._unsent_size = 0  # bytes in _unsent
        self._read_deadline = 0.0  # when the current read timeout ends
        self._read_timeout = 0.0
        self._pinged = False  # a keepalive ping is out (see _fill)
        if request is None:
            request = _NoRequest()
        else:
            # (what _sync leaves alone until the peer's close arrives)
            if not hasattr(request, 'ws_close_code'):
                request.ws_close_code = None
            if not hasattr(request, 'ws_close_reason'):
                request.ws_close_reason = None
        self._request = request
        # Without a transport (pywebsocket3's Stream(request, options)),
        # request.connection is used, looked up on each call, and read in
        # exactly the sizes the frame parser needs (header, then the rest
        # of the frame): such a connection's read(n) may wait for all n
        # bytes (mod_python's, pywebsocket3's blocking mock). Our hosts
        # pass transports whose reads return what has arrived.
        self._exact_reads = transport is None
        # Reads sized by the frame in progress (see _read_size).
        self._sized_reads = not self._exact_reads and isinstance(
            self.connection, WebSocketConnection
        )
        if transport is None:
            transport = _RequestConnection(request)
        self._transport = transport
        self._read = transport.read
        self._write = transport.write
        self._try_write = getattr(transport, 'try_write', None)
        self._passive_closing_handler = passive_closing_handler
        # The core is touched under _lock (short); transport writes happen
        # under _write_lock, bytes taken from the core in queue order.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Taken from the core, not yet written: whole byte strings and, at
        # the front, a view of the rest of one a non-blocking write began
        # (no copy of a large frame's remainder per partial write).
        self._unsent: List[Union[bytes, memoryview]] = []
        set_timeout = getattr(transport, 'set_read_timeout', None)
        self._set_read_timeout: Callable[[Optional[float]], None] = (
            set_timeout or _no_read_timeout
        )
        # Keepalive needs a transport whose reads can time out (sockets:
        # yes; mod_python: no, Apache's Timeout bounds idle time there).
        self._keepalive = bool(
            self._options.keepalive_interval and set_timeout
        )
        if self._keepalive:
            now = time.monotonic()
            self.connection.note_received(now)
            self._keepalive_timeout_from(now)
        self._sync()

    def use_transport(self, transport: Any) -> None:
        """Do all further I/O through `transport` (a host hands the
        connection to its I/O owner after the handshake). Call before any
        frame is read or written."""
        with self._write_lock:
            self._transport = transport
            self._read = transport.read
            self._write = transport.write
            self._try_write = getattr(transport, 'try_write', None)
            set_timeout = getattr(transport, 'set_read_timeout', None)
            self._set_read_timeout = set_timeout or _no_read_timeout
            keepalive = bool(self._options.keepalive_interval and set_timeout)
            if keepalive and not self._keepalive:
                self._keepalive = True
                now = time.monotonic()
                with self._lock:
                    self.connection.note_received(now)
                self._keepalive_timeout_from(now)

    def _keepalive_timeout_from(self, now: float) -> None:
        """Bound the next read by the core's next deadline."""
        deadline = self.connection.next_deadline()
        if deadline is not None:
            self._read_deadline = deadline
            self._read_timeout = max(round(deadline - now, 6), 0.001)
            self._set_read_timeout(self._read_timeout)

    # ---- what drivers share ----------------------------------------------

    @property
    def lock(self) -> threading.Lock:
        """Held by whoever touches the core (`connection`): a driver that
        feeds it or takes its events holds it for that call."""
        return self._lock

    def sync_state(self) -> None:
        """Update the request's compatibility attributes from the core
        (after a driver other than this stream changed its state)."""
        self._sync()

    def set_control_handlers(
        self,
        on_ping: Optional[Callable[[bytes], None]] = None,
        on_pong: Optional[Callable[[bytes], None]] = None,
    ) -> None:
        """Call these with each ping / pong payload (a ping handler
        replaces the automatic pong), as request.on_ping_handler /
        on_pong_handler do for handlers."""
        request = self._request
        request.on_ping_handler = (
            None
            if on_ping is None
            else lambda request, payload: on_ping(payload)
        )
        request.on_pong_handler = (
            None
            if on_pong is None
            else lambda request, payload: on_pong(payload)
        )

    def release_request(self) -> None:
        """The host has ended the request: from now on the compatibility
        state goes to a stand-in, and the stream no longer refers to the
        request. Without the cycle request -> ws_stream -> request, the
        connection's objects are freed when the host lets go of the
        request, not by a later garbage collection. (A stream that reads
        through request.connection keeps the request.)"""
        if not isinstance(self._transport, _RequestConnection):
            self._request = _NoRequest()
            self._sync()

    # ---- state seen by handlers ------------------------------------------

    @property
    def closed_by(self) -> Optional[str]:
        """'server' or 'client': who sent the first close frame (None when
        no closing handshake began)."""
        closed_by = self.connection.closed_by
        if closed_by is None:
            return None
        local = 'client' if self._options.mask_send else 'server'
        remote = 'server' if self._options.mask_send else 'client'
        return local if closed_by == 'local' else remote

    @property
    def closing_completed(self) -> bool:
        """Whether close frames went both ways."""
        conn = self.connection
        return conn.close_sent is not None and conn.close_received is not None

    def _sync(self) -> None:
        """Mirror the core's state onto the request's compatibility
        attributes (ws_close_code and ws_close_reason: once the peer's
        close arrived; until then they keep what they hold)."""
        request = self._request
        conn = self.connection
        received = conn.close_received
        error = conn.error
        request.server_terminated = conn.close_sent is not None
        request.client_terminated = received is not None or error is not None
        if (
            received is not None
            and error is None
            and isinstance(conn, WebSocketConnection)
        ):
            request.ws_close_code = (
                common.STATUS_NO_STATUS_RECEIVED
                if received.code is None
                else received.code
            )
            request.ws_close_reason = received.reason

    def _close_sent_by_handler(self) -> bool:
        """A handler wrote its own close and set server_terminated."""
        return (
            self._request.server_terminated
            and self.connection.close_sent is None
        )

    # ---- sending -----------------------------------------------------------

    def _flush_out(self) -> None:
        """Write everything queued in the core (blocking)."""
        try:
            with self._write_lock:
                with self._lock:
                    data = self.connection.data_to_send()
                if self._unsent:
                    self._write_unsent()
                if data:
                    self._write(data)
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e
            )

    def _write_unsent(self) -> None:
        """Write what try_flush() took but could not write (blocking;
        called with _write_lock held)."""
        unsent, self._unsent = self._unsent, []
        self._unsent_size = 0
        for chunk in unsent:
            self._write(chunk)

    def flush(self) -> None:
        """Write what is queued (blocking)."""
        self._flush_out()

    def try_flush(self) -> bool:
        """Write what the transport takes without blocking; True when
        nothing is left queued. Needs a transport with try_write()."""
        assert self._try_write is not None
        if not self._write_lock.acquire(False):
            return False  # another thread is writing: it flushes
        try:
            unsent = self._unsent
            while unsent:
                chunk = unsent[0]
                written = self._try_write(chunk)
                self._unsent_size -= written
                if written < len(chunk):
                    unsent[0] = memoryview(chunk)[written:]
                    return False
                del unsent[0]
            # Take more from the core only once the socket took the
            # rest: while it refuses, new bytes wait in the core, where
            # pongs coalesce and the queue bounds count them.
            lock = self._lock
            lock.acquire()  # (not `with`: see the top)
            try:
                data = self.connection.data_to_send()
            finally:
                lock.release()
            if not data:
                return True
            written = self._try_write(data)
            if written == len(data):
                return True  # (the usual case: nothing left)
            unsent.append(memoryview(data)[written:])
            self._unsent_size += len(data) - written
            return False
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e
            )
        finally:
            self._write_lock.release()

    @property
    def can_try_flush(self) -> bool:
        """Whether try_flush() can write (a plain socket transport)."""
        return self._try_write is not None and getattr(
            self._transport, 'nonblocking_writes', False
        )

    @property
    def pending_bytes(self) -> int:
        """Bytes queued or taken but not yet written."""
        return self.connection.bytes_to_send + self._unsent_size

    @property
    def pending_frames(self) -> int:
        """Frames queued and not yet taken for writing."""
        return self.connection.frames_to_send

    @property
    def close_timeout(self) -> float:
        return self._options.close_timeout

    def discard_queued(self) -> None:
        """Drop the frames not yet taken for writing (a frame being
        written is finished first, so the framing stays whole)."""
        with self._lock:
            self.connection.discard_queued()

    def queue_close(
        self,
        code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
        reason: str = '',
    ) -> bool:
        """Queue our close frame behind what is queued, without writing
        (False when one was queued already)."""
        with self._lock:
            if self._close_sent_by_handler():
                return False
            try:
                queued = self.connection.close(code, reason, time.monotonic())
            except ValueError as e:
                raise BadOperationException(str(e))
        self._sync()
        return queued

    def queue_message_within(
        self, message: Payload, max_frames: int, max_bytes: int
    ) -> bool:
        """Queue a whole message (str as text, else binary) unless the
        queue holds `max_frames` frames, or its bytes (those taken but
        not yet written included) would pass `max_bytes`: then queue
        nothing and return False. BadOperationException after the close."""
        lock = self._lock
        lock.acquire()  # (not `with`: see the top)
        try:
            conn = self.connection
            if (
                self._request.server_terminated
                and self._close_sent_by_handler()
            ):
                raise BadOperationException(
                    'cannot send a message after the close frame was sent'
                )
            if not conn.has_room(
                max_frames, max_bytes, len(message) + self._unsent_size
            ):
                return False
            conn.send_message(message, True, type(message) is not str)
        finally:
            lock.release()
        return True

    def queue_message(self, message: Payload, binary: bool = False) -> None:
        """Queue a whole message without writing it (flush() or
        try_flush() sends it); BadOperationException after the close."""
        with self._lock:
            if self._close_sent_by_handler():
                raise BadOperationException(
                    'cannot send a message after the close frame was sent'
                )
            self.connection.send_message(message, True, binary)

    def send_message(
        self,
        message: Payload,
        end: bool = True,
        binary: bool = False,
        compress: bool = True,
    ) -> None:
        """Send a message: str as text, bytes as binary (also with
        `binary=True`). `end=False` sends a fragment; continue with more
        calls and finish with `end=True`. `compress=False` sends this
        message uncompressed even when permessage-deflate is on."""
        # (_flush_out, inline: the frame is queued and written under the
        # write lock, so frames go out in queue order)
        write_lock = self._write_lock
        lock = self._lock
        try:
            write_lock.acquire()  # (not `with`: see the top)
            try:
                lock.acquire()
                try:
                    if (
                        self._request.server_terminated
                        and self._close_sent_by_handler()
                    ):
                        raise BadOperationException(
                            'cannot send a message after the close frame '
                            'was sent'
                        )
                    conn = self.connection
                    conn.send_message(message, end, binary, compress)
                    data = conn.data_to_send()
                finally:
                    lock.release()
                if self._unsent:
                    self._write_unsent()
                self._write(data)
            finally:
                write_lock.release()
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e
            )

    def send_ping(self, body: Union[bytes, str] = b'') -> None:
        """Send a ping (at most 125 bytes of body)."""
        if isinstance(body, str):
            body = body.encode('utf-8')
        with self._lock:
            if self._close_sent_by_handler():
                raise BadOperationException('cannot ping after closing')
            self.connection.send_ping(body)
        self._flush_out()

    def send_pong(self, body: bytes = b'') -> None:
        """Send a pong (the stream answers pings by itself); dropped once
        the close frame has gone out."""
        with self._lock:
            if self._close_sent_by_handler():
                return
            self.connection.send_pong(body)
        self._flush_out()

    def _send_frame(self, opcode: int, payload: bytes, fin: int = 1) -> None:
        """One raw frame (pywebsocket3's name, used by some handlers)."""
        with self._lock:
            assert isinstance(self.connection, WebSocketConnection)
            self.connection.send_frame(opcode, payload, fin)
        self._flush_out()

    # ---- receiving -------------------------------------------------------

    def _fill(self) -> None:
        """Read more bytes into the core. With keepalive, the transport's
        read timeout is the time left until the core's next deadline: a
        timeout lets the core decide (ping, or give up). No extra system
        call per read."""
        conn = self.connection
        if self._sized_reads:  # (_read_size, inline)
            parser: FrameParser = conn.parser  # type: ignore[assignment]
            incomplete = parser.incomplete_size
            size = READ_SIZE
            if incomplete:
                wanted = incomplete - parser.buffered()
                if wanted > READ_SIZE:
                    size = min(wanted, MAX_READ_SIZE)
        else:
            size = self._read_size()
        try:
            data = self._read(size)
        except TimeoutError as e:
            if not self._keepalive or self._request.server_terminated:
                raise ConnectionTerminatedException(
                    'timed out while reading: %s' % e
                )
            return self._on_read_timeout()
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while reading: %s' % e
            )
        if self._keepalive:
            now = time.monotonic()
            with self._lock:
                conn.note_received(now)
            if self._pinged:  # answered: back to the interval
                self._pinged = False
                self._keepalive_timeout_from(now)
            else:  # the same timeout, from now
                self._read_deadline = now + self._read_timeout
        conn.receive_data(data or b'')

    def _read_size(self) -> int:
        conn = self.connection
        if not isinstance(conn, WebSocketConnection):
            return 1 if self._exact_reads else READ_SIZE
        if self._exact_reads:
            return conn.parser.needed()
        wanted = conn.parser.wanted()
        return READ_SIZE if wanted <= READ_SIZE else min(wanted, MAX_READ_SIZE)

    def _on_read_timeout(self) -> None:
        # The read timed out, so its deadline has passed, whatever the
        # clock's granularity says.
        now = max(time.monotonic(), self._read_deadline)
        with self._lock:
            reason = self.connection.poll_timers(now)
        if reason is not None:
            raise ConnectionTerminatedException(reason)
        self._pinged = True
        self._flush_out()  # the keepalive ping
        self._keepalive_timeout_from(now)

    def _next_event(self) -> Any:
        """The core's next event; a protocol violation sends its close
        code (queued by the core) and re-raises."""
        try:
            if self._request.server_terminated:  # (a cheap test first)
                with self._lock:
                    if self._close_sent_by_handler():
                        self.connection.mark_close_sent()
            return self.connection.next_event()
        except ProtocolError as e:
            self._protocol_error(e)
        except ConnectionTerminatedException:
            self._sync()
            raise

    def _protocol_error(self, error: ProtocolError) -> NoReturn:
        """Send the close code the core queued for `error`; re-raise it."""
        _logger.info('closing with %d: %s', error.code, error)
        try:
            self._flush_out()
        except ConnectionTerminatedException:
            pass
        self._sync()
        raise error

    def receive_bytes(self, length: int) -> bytes:
        """Exactly `length` raw bytes from the connection, no framing
        (pywebsocket3's name, for handlers that read the wire themselves):
        bytes received but not yet parsed come first.
        ConnectionTerminatedException when the peer closes before."""
        conn = self.connection
        assert isinstance(conn, WebSocketConnection)
        buffered = conn.parser.take_buffer()
        if len(buffered) > length:
            conn.parser.feed(buffered[length:])  # (the rest stays)
            buffered = buffered[:length]
        return buffered + read_exactly(
            self._read,
            length - len(buffered),
            ConnectionTerminatedException,
            'while reading raw bytes',
        )

    def receive_filtered_frame(self) -> Frame:
        """The next frame as received (unmasked), with no processing."""
        conn = self.connection
        assert isinstance(conn, WebSocketConnection)
        while True:
            try:
                frame = conn.next_frame()
            except ProtocolError:
                self._flush_out()
                self._sync()
                raise
            if frame is not None:
                return frame
            self._fill()

    def receive_message(self) -> Optional[Payload]:
        """The next message (str for text, bytes for binary), or None once
        the peer has closed (after the closing handshake is answered).

        Pings are answered, pongs passed to request.on_pong_handler. A
        protocol violation sends the close code it calls for and raises a
        ProtocolError subclass.
        """
        conn = self.connection
        if conn.close_received is not None or conn.state is State.CLOSED:
            # (receiving_closed, inline: a failure closes the state too)
            raise BadOperationException(
                'receive after the peer closed the connection'
            )
        request = self._request
        if not conn.input_pending() and not request.server_terminated:
            self._fill()  # (nothing buffered: read before asking)
        while True:
            if request.server_terminated:  # (a cheap test first)
                event = self._next_event()
            else:  # (_next_event, inline)
                try:
                    event = conn.next_event()
                except ProtocolError as e:
                    self._protocol_error(e)
                except ConnectionTerminatedException:
                    self._sync()
                    raise
            if event is None:
                self._fill()
                continue
            kind = type(event)
            if kind is Message:
                return event.data
            if kind is CloseReceived:
                self._answer_close()
                return None
            self._control(event)

    def get_last_received_opcode(self) -> Optional[int]:
        """Opcode of the last message receive_message returned."""
        return self.connection.last_message_opcode

    def _control(self, event: Union[Ping, Pong]) -> None:
        request = self._request
        if type(event) is Ping:
            handler = getattr(request, 'on_ping_handler', None)
            if handler:
                handler(request, event.payload)
            else:
                self.send_pong(event.payload)
        else:
            handler = getattr(request, 'on_pong_handler', None)
            if handler:
                handler(request, event.payload)

    def _answer_close(self) -> None:
        """The peer's close arrived: answer it (unless ours went out)."""
        conn = self.connection
        self._sync()
        if conn.close_sent is not None or self._request.server_terminated:
            if conn.close_sent is None:  # a handler sent its own
                with self._lock:
                    conn.mark_close_sent()
            self._sync()
            return
        passive = self._passive_closing_handler
        received = conn.close_received
        assert received is not None
        if passive is not None:
            reply_code, reply_reason = passive(self._request)
        else:
            reply_code, reply_reason = received.code, ''
        if reply_code == common.STATUS_NO_STATUS_RECEIVED:
            reply_code, reply_reason = None, ''
        try:
            with self._lock:
                conn.close(reply_code, reply_reason)
        except ValueError:
            with self._lock:
                conn.close(received.code, '')
        self._request.server_terminated = True  # (_sync: only this changed)
        self._flush_out()

    # ---- closing -------------------------------------------------------

    def close_connection(
        self,
        code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
        reason: str = '',
        wait_response: bool = True,
    ) -> None:
        """Start the closing handshake; with `wait_response`, read (and
        drop) frames until the peer's close arrives or close_timeout ends.
        `code=None` sends an empty close body."""
        conn = self.connection
        with self._lock:
            if conn.close_sent is not None or self._close_sent_by_handler():
                _logger.debug('close_connection: already closing')
                return
            try:
                conn.close(code, reason, time.monotonic())
            except ValueError as e:
                raise BadOperationException(str(e))
        self._sync()
        self._flush_out()
        if not wait_response or conn.receiving_closed:
            return
        self._wait_for_close()

    def close_soon(self, code: int, reason: str = '') -> None:
        """Queue a close and write it without blocking this thread (for
        shutdown: a thread stuck writing to a peer that does not read
        must not hold up the others). What is not written now goes out
        with the next write, or from a helper thread."""
        with self._lock:
            conn = self.connection
            if conn.close_sent is not None or self._close_sent_by_handler():
                return
            conn.close(code, reason, time.monotonic())
        self._sync()
        if self._try_write is not None:
            try:
                self.try_flush()
            except ConnectionTerminatedException:
                pass
            return
        start_daemon(self._flush_quietly, 'close-flush')

    def _flush_quietly(self) -> None:
        try:
            self._flush_out()
        except ConnectionTerminatedException:
            pass

    def _wait_for_close(self) -> None:
        conn = self.connection
        self._set_read_timeout(self._options.close_timeout)
        try:
            while not conn.receiving_closed:
                event = self._next_event()
                if event is None:
                    self._fill_until_deadline()
                elif type(event) is not CloseReceived:
                    _logger.debug('dropped %r received while closing', event)
        except (ConnectionTerminatedException, ProtocolError) as e:
            _logger.debug('closing handshake not completed: %s', e)
        finally:
            self._set_read_timeout(None)
            self._sync()

    def _fill_until_deadline(self) -> None:
        try:
            data = self._read(self._read_size())
        except (TimeoutError, OSError) as e:
            raise ConnectionTerminatedException(
                'no close from the peer: %s' % e
            )
        self.connection.receive_data(data or b'')

    # pywebsocket3 name some handlers call.
    def _send_closing_handshake(self, code: int, reason: str) -> None:
        with self._lock:
            self.connection.close(code, reason, time.monotonic())
        self._sync()
        self._flush_out()
