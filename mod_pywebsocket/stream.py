"""Blocking RFC 6455 message I/O over a transport (`request.ws_stream`).

A transport is anything with `read(n)` (up to n bytes; b'' or None at EOF)
and `write(data)`. The stream runs the sans-I/O codecs of frame.py and
message.py over it: one thread receives, any thread may send (a lock keeps
frames whole), and every frame goes out in one `write` call.

The frame builders that handlers use to craft raw frames live here too.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (BadOperationException,
                                    ConnectionTerminatedException,
                                    ProtocolError)
# Exceptions pywebsocket3 handlers and tests import from this module.
from mod_pywebsocket.common import (InvalidFrameException,  # noqa: F401
                                    InvalidUTF8Exception,
                                    UnsupportedFrameException)
from mod_pywebsocket.frame import (Frame, FrameParser, build_close_body,
                                   build_frame, create_header,
                                   create_length_header, parse_close_body)
from mod_pywebsocket.message import MessageAssembler

__all__ = [
    'Stream', 'StreamOptions', 'Frame', 'create_header',
    'create_length_header', 'create_text_frame', 'create_binary_frame',
    'create_ping_frame', 'create_pong_frame', 'create_close_frame',
    'create_closing_handshake_body',
]

_logger = logging.getLogger(__name__)

# Reads are small while no large frame is in progress (an idle connection
# blocked in recv keeps its buffer allocated) and grow to what a large
# frame still needs, up to MAX_READ_SIZE.
READ_SIZE = 8192
MAX_READ_SIZE = 262144

Message = Union[str, bytes]

NEED_DATA = object()     # poll_message(): feed more bytes first


def create_text_frame(message: Union[str, bytes],
                      opcode: int = common.OPCODE_TEXT, fin: int = 1,
                      mask: bool = False, frame_filters=()) -> bytes:
    """A text frame (str is UTF-8 encoded)."""
    if isinstance(message, str):
        message = message.encode('utf-8')
    return build_frame(opcode, message, fin, mask=mask)


def create_binary_frame(message: bytes, opcode: int = common.OPCODE_BINARY,
                        fin: int = 1, mask: bool = False,
                        frame_filters=()) -> bytes:
    """A binary frame."""
    return build_frame(opcode, message, fin, mask=mask)


def create_ping_frame(body: bytes = b'', mask: bool = False,
                      frame_filters=()) -> bytes:
    return build_frame(common.OPCODE_PING, body, mask=mask)


def create_pong_frame(body: bytes = b'', mask: bool = False,
                      frame_filters=()) -> bytes:
    return build_frame(common.OPCODE_PONG, body, mask=mask)


def create_closing_handshake_body(code: Optional[int], reason: str) -> bytes:
    """A close frame body (empty when `code` is None)."""
    return build_close_body(code, reason)


def create_close_frame(body: bytes, mask: bool = False,
                       frame_filters=()) -> bytes:
    return build_frame(common.OPCODE_CLOSE, body, mask=mask)


class StreamOptions:
    """How a stream behaves; the defaults are a server's."""

    def __init__(self) -> None:
        self.mask_send = False               # a client masks
        self.expect_masked = True            # a server expects masked frames
        self.max_message_size = common.DEFAULT_MAX_MESSAGE_SIZE
        self.close_timeout = common.DEFAULT_CLOSE_TIMEOUT
        self.keepalive_interval: Optional[float] = None   # seconds
        self.keepalive_timeout: Optional[float] = None    # seconds
        self.deflater = None                 # extensions.Deflater
        self.inflater = None                 # extensions.Inflater

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

    def __init__(self, request) -> None:
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


class Stream:
    """Message I/O for one RFC 6455 / hybi-08 connection."""

    def __init__(self, request, options: Optional[StreamOptions] = None,
                 transport=None) -> None:
        self._request = request
        options = options or StreamOptions()
        self._options = options
        # Without a transport (pywebsocket3's Stream(request, options)),
        # request.connection is used, looked up on each call, and read in
        # exactly the sizes the frame parser needs (header, then the rest
        # of the frame): such a connection's read(n) may wait for all n
        # bytes (mod_python's, pywebsocket3's blocking mock). Our hosts
        # pass transports whose reads return what has arrived.
        self._exact_reads = transport is None
        if transport is None:
            transport = _RequestConnection(request)
        self._transport = transport
        self._read = transport.read
        self._write = transport.write
        self._mask_send = options.mask_send
        self._deflater = options.deflater
        self._parser = FrameParser(
            expect_masked=options.expect_masked,
            allowed_rsv=4 if options.inflater is not None else 0,
            max_payload=options.max_message_size or None)
        self._assembler = MessageAssembler(options.max_message_size,
                                           options.inflater)
        self._send_lock = threading.Lock()
        self._unsent = b''      # the rest of a frame send_message_nowait began
        self._send_opcode: Optional[int] = None   # fragmented send in progress
        self._send_compressed = False
        self._last_opcode: Optional[int] = None
        self._ping_sent_at: Optional[float] = None
        set_timeout = getattr(transport, 'set_read_timeout', None)
        self._set_read_timeout = set_timeout or (lambda timeout: None)
        # Keepalive needs a transport whose reads can time out (sockets:
        # yes; mod_python: no, Apache's Timeout bounds idle time there).
        self._keepalive = bool(options.keepalive_interval and set_timeout)
        if self._keepalive:
            set_timeout(options.keepalive_interval)
        request.client_terminated = False
        request.server_terminated = False
        request.ws_closed_by = None
        request.ws_close_code = getattr(request, 'ws_close_code', None)
        request.ws_close_reason = getattr(request, 'ws_close_reason', None)

    # ---- sending -------------------------------------------------------

    def _write_frame(self, frame: bytes, closing: bool = False) -> bool:
        """Write one whole frame. Nothing follows a close frame: the check
        is made under the send lock, so a frame another thread was about
        to send when the close went out is refused (False), not written
        after it. `closing` marks the close frame itself."""
        request = self._request
        try:
            with self._send_lock:
                if request.server_terminated:
                    return False
                if closing:
                    if not request.client_terminated:
                        request.ws_closed_by = 'server'
                    request.server_terminated = True
                if self._unsent:
                    self._write(self._unsent)
                    self._unsent = b''
                self._write(frame)
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e)
        return True

    def send_message(self, message: Message, end: bool = True,
                     binary: bool = False, compress: bool = True) -> None:
        """Send a message: str as text, bytes as binary (also with
        `binary=True`). `end=False` sends a fragment; continue with more
        calls and finish with `end=True`. `compress=False` sends this
        message uncompressed even when permessage-deflate is on."""
        if (end and self._send_opcode is None and self._deflater is None
                and type(message) is str and not binary):
            # The common case: one uncompressed text frame.
            if not self._write_frame(build_frame(
                    common.OPCODE_TEXT, message.encode('utf-8'), 1, 0,
                    self._mask_send)):
                raise BadOperationException(
                    'cannot send a message after the close frame was sent')
            return
        if not self._write_frame(self._message_frame(message, end, binary,
                                                     compress)):
            raise BadOperationException(
                'cannot send a message after the close frame was sent')

    def send_message_nowait(self, message: Message) -> bool:
        """Send a whole message without blocking, for event loops: needs a
        transport with try_write(). Returns True when all of it was
        written; otherwise the rest is kept and goes out first on the next
        write or flush() (call that from a thread that may block)."""
        frame = self._message_frame(message, True, False, True)
        try:
            with self._send_lock:
                if self._request.server_terminated:
                    raise BadOperationException(
                        'cannot send a message after the close frame was '
                        'sent')
                if self._unsent:
                    self._unsent += frame
                    return False
                written = self._transport.try_write(frame)
                if written < len(frame):
                    self._unsent = frame[written:]
                    return False
                return True
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e)

    def flush(self) -> None:
        """Write what send_message_nowait could not (blocking)."""
        try:
            with self._send_lock:
                if self._unsent:
                    self._write(self._unsent)
                    self._unsent = b''
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e)

    def _message_frame(self, message: Message, end: bool, binary: bool,
                       compress: bool) -> bytes:
        """The wire bytes of one message or fragment (compressed when
        agreed); raises BadOperationException for what may not be sent."""
        request = self._request
        if request.server_terminated:
            raise BadOperationException(
                'cannot send a message after the close frame was sent')
        if isinstance(message, str):
            if binary:
                raise BadOperationException(
                    'a binary message must be bytes, not str')
            opcode = common.OPCODE_TEXT
            payload: bytes = message.encode('utf-8')
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode = common.OPCODE_BINARY
            payload = bytes(message)
        else:
            raise BadOperationException(
                'a message must be str or bytes, not %s'
                % type(message).__name__)
        if self._send_opcode is not None:
            if opcode != self._send_opcode:
                raise BadOperationException(
                    'message type changed in the middle of a fragmented '
                    'message')
            first = False
            wire_opcode = common.OPCODE_CONTINUATION
        else:
            first = True
            wire_opcode = opcode
            self._send_compressed = bool(
                compress and self._deflater is not None
                and self._deflater.enabled)
        rsv1 = 0
        if self._send_compressed:
            payload = self._deflater.compress(payload, end)
            rsv1 = first
        self._send_opcode = None if end else opcode
        return build_frame(wire_opcode, payload, end, rsv1, self._mask_send)

    def send_ping(self, body: Union[bytes, str] = b'') -> None:
        """Send a ping (at most 125 bytes of body)."""
        if isinstance(body, str):
            body = body.encode('utf-8')
        if len(body) > 125:
            raise BadOperationException('ping body over 125 bytes')
        if not self._write_frame(build_frame(common.OPCODE_PING, body,
                                             mask=self._mask_send)):
            raise BadOperationException('cannot ping after closing')

    def send_pong(self, body: bytes = b'') -> None:
        """Send a pong (the stream answers pings by itself); dropped once
        the close frame has gone out."""
        self._write_frame(build_frame(common.OPCODE_PONG, body,
                                      mask=self._mask_send))

    # ---- receiving -----------------------------------------------------

    def _fill(self) -> None:
        """Read more bytes into the parser. With keepalive, the transport's
        read timeout is the ping interval: a timeout sends a ping, a second
        one (no pong, no data within keepalive_timeout) ends the
        connection. No extra system call per read."""
        if self._exact_reads:
            size = self._parser.needed()
        else:
            wanted = self._parser.wanted()
            size = (READ_SIZE if wanted <= READ_SIZE
                    else min(wanted, MAX_READ_SIZE))
        try:
            data = self._read(size)
        except TimeoutError as e:
            if self._keepalive and not self._request.server_terminated:
                return self._keepalive_timeout()
            raise ConnectionTerminatedException(
                'timed out while reading: %s' % e)
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while reading: %s' % e)
        if not data:
            raise ConnectionTerminatedException(
                'connection closed by the peer without a closing handshake')
        if self._ping_sent_at is not None:
            self._ping_sent_at = None
            self._set_read_timeout(self._options.keepalive_interval)
        self._parser.feed(data)

    def _keepalive_timeout(self) -> None:
        if self._ping_sent_at is not None:
            raise ConnectionTerminatedException(
                'no answer within %.1f s of a keepalive ping'
                % (time.monotonic() - self._ping_sent_at))
        self.send_ping(b'keepalive')
        self._ping_sent_at = time.monotonic()
        self._set_read_timeout(self._options.keepalive_timeout
                               or self._options.keepalive_interval)

    def _next_frame(self) -> Frame:
        parser = self._parser
        while True:
            try:
                frame = parser.next_frame()
            except ProtocolError as e:
                self._fail(e)
            if frame is not None:
                return frame
            self._fill()

    def receive_filtered_frame(self) -> Frame:
        """The next frame as received (unmasked), with no processing."""
        return self._next_frame()

    def receive_message(self) -> Optional[Message]:
        """The next message (str for text, bytes for binary), or None once
        the peer has closed (after the closing handshake is answered).

        Pings are answered, pongs passed to request.on_pong_handler. A
        protocol violation sends the close code it calls for and raises a
        ProtocolError subclass.
        """
        poll = self.poll_message
        while True:
            message = poll()
            if message is not NEED_DATA:
                return message
            self._fill()

    def feed(self, data: bytes) -> None:
        """Hand the stream bytes an event loop read from the transport."""
        self._parser.feed(data)

    def poll_message(self):
        """Non-blocking receive for event loops: the next message from the
        bytes fed so far, NEED_DATA until more arrive, or None once the
        peer has closed. Control frames are handled as in
        receive_message()."""
        request = self._request
        if request.client_terminated:
            raise BadOperationException(
                'receive after the peer closed the connection')
        next_frame = self._parser.next_frame
        assembler = self._assembler
        while True:
            try:
                frame = next_frame()
            except ProtocolError as e:
                self._fail(e)
            if frame is None:
                return NEED_DATA
            opcode = frame.opcode
            if opcode & 0x8:
                if opcode == common.OPCODE_CLOSE:
                    self._process_close(frame.payload)
                    return None
                self._process_control(opcode, frame.payload)
                continue
            try:
                if (frame.fin and not frame.rsv1 and opcode
                        and assembler._opcode is None):
                    message = assembler._single_frame(opcode, frame.payload)
                    self._last_opcode = opcode
                    return message
                message = assembler.add_frame(frame)
            except ProtocolError as e:
                self._fail(e)
            if message is not None:
                self._last_opcode = (opcode if opcode else
                                     common.OPCODE_TEXT
                                     if isinstance(message, str)
                                     else common.OPCODE_BINARY)
                return message

    def get_last_received_opcode(self) -> Optional[int]:
        """Opcode of the last message receive_message returned."""
        return self._last_opcode

    def _process_control(self, opcode: int, payload: bytes) -> None:
        request = self._request
        if opcode == common.OPCODE_PING:
            handler = getattr(request, 'on_ping_handler', None)
            if handler:
                handler(request, payload)
            else:
                self.send_pong(payload)
        else:
            handler = getattr(request, 'on_pong_handler', None)
            if handler:
                handler(request, payload)

    def _process_close(self, payload: bytes) -> None:
        request = self._request
        try:
            code, reason = parse_close_body(payload)
        except ProtocolError as e:
            self._fail(e)
        if not request.server_terminated:
            request.ws_closed_by = 'client'
        request.ws_close_code = (common.STATUS_NO_STATUS_RECEIVED
                                 if code is None else code)
        request.ws_close_reason = reason
        request.client_terminated = True
        if request.server_terminated:
            return
        passive = getattr(request, 'ws_passive_closing_handler', None)
        if passive is not None:
            reply_code, reply_reason = passive(request)
        elif code is None:
            reply_code, reply_reason = None, ''
        else:
            reply_code, reply_reason = code, ''
        if reply_code == common.STATUS_NO_STATUS_RECEIVED:
            reply_code, reply_reason = None, ''
        self._send_close(reply_code, reply_reason)

    def _fail(self, error: ProtocolError):
        """Fail the connection: send the close code, then raise."""
        request = self._request
        if not request.server_terminated:
            _logger.info('closing with %d: %s', error.code, error)
            try:
                self._send_close(error.code, '')
            except ConnectionTerminatedException:
                pass
        request.client_terminated = True
        raise error

    # ---- closing -------------------------------------------------------

    def _send_close(self, code: Optional[int], reason: str) -> bool:
        """Send the close frame unless one went out already (from another
        thread); ValueError for an invalid code or reason."""
        body = build_close_body(code, reason)
        return self._write_frame(build_frame(common.OPCODE_CLOSE, body,
                                             mask=self._mask_send),
                                 closing=True)

    def close_connection(self, code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
                         reason: str = '', wait_response: bool = True
                         ) -> None:
        """Start the closing handshake; with `wait_response`, read (and
        drop) frames until the peer's close arrives or close_timeout ends.
        `code=None` sends an empty close body."""
        request = self._request
        if request.server_terminated:
            _logger.debug('close_connection: already closing')
            return
        try:
            self._send_close(code, reason)
        except ValueError as e:
            raise BadOperationException(str(e))
        if not wait_response or request.client_terminated:
            return
        self._wait_for_close()

    def _wait_for_close(self) -> None:
        request = self._request
        self._set_read_timeout(self._options.close_timeout)
        try:
            while not request.client_terminated:
                frame = self._next_frame()
                if frame.opcode == common.OPCODE_CLOSE:
                    self._process_close(frame.payload)
                else:
                    _logger.debug('dropped %r received while closing', frame)
        except (ConnectionTerminatedException, ProtocolError) as e:
            _logger.debug('closing handshake not completed: %s', e)
        finally:
            self._set_read_timeout(None)

    # pywebsocket3 names some handlers call.
    def _send_closing_handshake(self, code: int, reason: str) -> None:
        self._send_close(code, reason)

    def _send_frame(self, opcode: int, payload: bytes, fin: int = 1) -> None:
        self._write_frame(build_frame(opcode, payload, fin,
                                      mask=self._mask_send))

