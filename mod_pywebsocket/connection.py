"""The sans-I/O core of one open WebSocket connection.

`receive_data(bytes)` feeds what the peer sent; `next_event()` returns the
events it makes (a message, a ping, a pong, the peer's close); `send_*()`
and `close()` queue frames whose bytes the driver takes with
`data_to_send()` and writes when its transport accepts them. The object
keeps the state (open, closing, closed; who sent which close frame), the
limits, UTF-8 validation, permessage-deflate, the pong policy (at most one
pending pong, RFC 6455 section 5.5.3) and the keepalive and close-wait
decisions, for a clock reading the driver passes in. It does no I/O, starts
no thread and reads no clock: drivers (the blocking `Stream`, the event
loop, the client, the Apache host) do.

`WebSocketConnection` speaks RFC 6455 and hybi-08; `HixieConnection` offers
the same interface for draft-75 / draft-76 (text only, no control frames).
Neither is thread-safe: a driver serialises calls on one connection.
"""

from __future__ import annotations

import enum
from typing import List, NamedTuple, Optional, Protocol, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    MessageTooBigException,
    ProtocolError,
)
from mod_pywebsocket.budget import (
    BudgetExhausted,
    MessageBudget,
    forget_tracebacks,
)
from mod_pywebsocket.frame import (
    Frame,
    FrameParser,
    build_close_body,
    build_frame,
    parse_close_body,
)
from mod_pywebsocket.hixie_frame import (
    CLOSING_HANDSHAKE,
    EVENT_CLOSE,
    HixieFrameParser,
    build_text_frame,
)
from mod_pywebsocket.message import Inflater, MessageAssembler

__all__ = [
    'State',
    'Message',
    'Ping',
    'Pong',
    'CloseReceived',
    'Event',
    'WebSocketConnection',
    'HixieConnection',
]

Payload = Union[str, bytes]


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 section 4 and 7)."""

    CONNECTING = 'connecting'  # opening handshake not yet done
    OPEN = 'open'
    CLOSING = 'closing'  # one close frame sent or received
    CLOSED = 'closed'  # both, or the transport is gone


class Message(NamedTuple):
    """A complete data message: str for text, bytes for binary."""

    data: Payload


class Ping(NamedTuple):
    payload: bytes


class Pong(NamedTuple):
    payload: bytes


class CloseReceived(NamedTuple):
    """The peer's close frame; `code` is None when it carried no code."""

    code: Optional[int]
    reason: str


Event = Union[Message, Ping, Pong, CloseReceived]

# (hot path: event tuples made without the namedtuple's Python __new__)
_new_message = _new_event = tuple.__new__
_CLOSED = State.CLOSED
_TEXT = common.OPCODE_TEXT
_BINARY = common.OPCODE_BINARY


class Deflater(Protocol):
    """What sending needs from a compressing extension."""

    enabled: bool

    def compress(self, data: bytes, end: bool = True) -> bytes: ...


class _Core:
    """What both connection kinds share: state, close bookkeeping, the
    outgoing buffer, the keepalive and close-wait timers."""

    close_sent: Optional[CloseReceived]
    close_received: Optional[CloseReceived]
    closed_by: Optional[str]  # 'local' or 'remote'
    error: Optional[ProtocolError]  # what we failed with
    _pending_pong: Optional[bytes]  # (RFC 6455 only)
    # (the timers: the driver's clock readings)
    _last_received: Optional[float]
    _ping_sent_at: Optional[float]
    _close_sent_at: Optional[float]

    def __init__(
        self,
        client: bool,
        close_timeout: float,
        keepalive_interval: Optional[float],
        keepalive_timeout: Optional[float],
    ) -> None:
        self.client = client
        self._out: List[bytes] = []
        # Where every connection starts (set per instance, not as class
        # defaults: Python 3.11 specializes reads of instance attributes
        # only).
        self.state = State.OPEN
        self.close_sent = self.close_received = None
        self.closed_by = None
        self.error = None
        self._receive_stopped = False
        self._out_size = 0
        self._pending_pong = None
        self.close_timeout = close_timeout
        self.keepalive_interval = keepalive_interval or None
        self.keepalive_timeout = (
            keepalive_timeout or keepalive_interval or None
        )
        self._last_received = self._ping_sent_at = None
        self._close_sent_at = None

    # ---- outgoing bytes --------------------------------------------------

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def data_to_send(self) -> bytes:
        """Take every byte queued for the peer, in order (a pending pong
        goes first: control frames may come between any two frames)."""
        if self._pending_pong is not None:
            self._pong_first()
        out = self._out
        if not out:
            return b''
        data = out[0] if len(out) == 1 else b''.join(out)
        self._out = []
        self._out_size = 0
        return data

    @property
    def bytes_to_send(self) -> int:
        """How many bytes data_to_send() would return."""
        return self._out_size

    @property
    def frames_to_send(self) -> int:
        """How many frames are queued (a bound on per-frame overhead)."""
        return len(self._out)

    def has_room(self, max_frames: int, max_bytes: int, more: int) -> bool:
        """Whether `more` bytes fit in a queue bounded by `max_frames`
        frames and `max_bytes` bytes (a bound a driver sets)."""
        return len(self._out) < max_frames and (
            self._out_size + more <= max_bytes
        )

    def discard_queued(self) -> int:
        """Drop every queued frame (a peer too slow to take them); returns
        how many bytes were dropped."""
        dropped = self._out_size
        self._out = []
        self._out_size = 0
        return dropped

    # ---- state -----------------------------------------------------------

    @property
    def sending_closed(self) -> bool:
        """Whether our close frame is queued (nothing may follow it)."""
        return self.close_sent is not None

    def input_pending(self) -> bool:
        """Whether next_event() may have more to return from what was
        fed (True unless a subclass knows better)."""
        return True

    @property
    def receiving_closed(self) -> bool:
        """Whether the peer's close arrived, or receiving ended otherwise
        (a protocol error, the end of the transport)."""
        return (
            self.close_received is not None
            or self._receive_stopped
            or self.state is State.CLOSED
        )

    def _after_close_sent(
        self, code: Optional[int], reason: str, now: Optional[float]
    ) -> None:
        self.close_sent = _new_event(CloseReceived, (code, reason))
        self._close_sent_at = now
        if self.close_received is None:
            self.closed_by = self.closed_by or 'local'
            self.state = State.CLOSING
        else:
            self.state = State.CLOSED

    def _after_close_received(
        self, code: Optional[int], reason: str
    ) -> CloseReceived:
        event = _new_event(CloseReceived, (code, reason))
        self.close_received = event
        if self.close_sent is None:
            self.closed_by = 'remote'
            self.state = State.CLOSING
        else:
            self.state = State.CLOSED
        return event

    def mark_close_sent(self) -> None:
        """Our close frame went out by other means (a handler wrote its
        own): nothing more may be sent."""
        if self.close_sent is None:
            self._after_close_sent(None, '', None)

    def connection_lost(self) -> None:
        """The transport ended (EOF or error): nothing more comes or goes."""
        self.state = State.CLOSED

    def _eof(self) -> None:
        was_open = self.close_received is None
        self.connection_lost()
        if was_open:
            raise ConnectionTerminatedException(
                'connection closed by the peer without a closing handshake'
            )

    # ---- timers ----------------------------------------------------------

    def note_received(self, now: float) -> None:
        """Bytes arrived at `now`: the peer is alive."""
        self._last_received = now
        self._ping_sent_at = None

    def poll_timers(self, now: float) -> Optional[str]:
        """Apply the keepalive and close-wait policies at `now`: queues a
        keepalive ping when the peer has been silent for the interval;
        returns why the connection should be dropped (a ping unanswered
        for the keepalive timeout, our close unanswered for the close
        timeout), else None."""
        if self.state is State.CLOSED:
            return None
        if self.close_sent is not None:
            if self._close_sent_at is None:
                self._close_sent_at = now
            elif now - self._close_sent_at >= self.close_timeout:
                return (
                    'no close frame from the peer within %.1f s of ours'
                    % self.close_timeout
                )
            return None
        interval = self.keepalive_interval
        if interval is None or self.close_received is not None:
            return None
        if self._last_received is None:
            self._last_received = now
        if self._ping_sent_at is not None:
            assert self.keepalive_timeout is not None
            if now - self._ping_sent_at >= self.keepalive_timeout:
                return 'no answer within %.1f s of a keepalive ping' % (
                    now - self._ping_sent_at
                )
        elif now - self._last_received >= interval:
            if self._keepalive_ping():
                self._ping_sent_at = now
        return None

    def next_deadline(self) -> Optional[float]:
        """When poll_timers() next has something to decide (a clock
        reading), or None while no timer runs. Before the first
        note_received() or poll_timers() the keepalive counts from 0."""
        if self.state is State.CLOSED:
            return None
        if self.close_sent is not None:
            if self._close_sent_at is None:
                return 0.0
            return self._close_sent_at + self.close_timeout
        if self.keepalive_interval is None or self.close_received:
            return None
        if self._ping_sent_at is not None:
            assert self.keepalive_timeout is not None
            return self._ping_sent_at + self.keepalive_timeout
        return (self._last_received or 0.0) + self.keepalive_interval

    def _keepalive_ping(self) -> bool:
        return False

    def _pong_first(self) -> None:
        """Queue the pending pong ahead of everything (RFC 6455 only)."""
        raise NotImplementedError


class WebSocketConnection(_Core):
    """One RFC 6455 / hybi-08 connection after its opening handshake.

    `client`: True on the client side (frames sent masked, frames received
    must be unmasked); a server expects masked frames. `deflater` and
    `inflater` come from the negotiated permessage-deflate.
    `rsv_close_code`: the close code for RSV bits no extension claims,
    1002 (protocol error) or 1003 (pywebsocket3's).
    """

    _send_opcode: Optional[int]  # fragmented send going on
    last_message_opcode: Optional[int]
    budget: Optional[MessageBudget]  # set by the host

    def __init__(
        self,
        client: bool = False,
        max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
        deflater: Optional[Deflater] = None,
        inflater: Optional[Inflater] = None,
        close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT,
        keepalive_interval: Optional[float] = None,
        keepalive_timeout: Optional[float] = None,
        rsv_close_code: int = common.STATUS_PROTOCOL_ERROR,
    ) -> None:
        _Core.__init__(
            self, client, close_timeout, keepalive_interval, keepalive_timeout
        )
        self._mask = client
        self.deflater = deflater
        self._send_opcode = None
        self._send_compressed = False
        self.last_message_opcode = None
        self.budget = None
        self.peer = ''  # for its log line
        self._held = 0  # bytes reserved in the budget
        self._at_eof = False
        self.parser = FrameParser(
            not client,  # expect_masked
            4 if inflater is not None else 0,  # allowed_rsv
            max_message_size or None,  # max_payload
            rsv_close_code,
        )
        self._assembler = MessageAssembler(max_message_size, inflater)

    def use_budget(
        self, budget: Optional[MessageBudget], peer: str = ''
    ) -> None:
        """Count what this connection buffers for incomplete messages
        in the server-wide `budget` (release_budget() when it ends)."""
        self.budget = budget
        self.peer = peer
        self._assembler.reserve = self._reserve_up_to if budget else None

    def _reserve_up_to(self, n: int) -> int:
        assert self.budget is not None
        granted = self.budget.reserve_up_to(n)
        self._held += granted
        return granted

    def _hold(self) -> None:
        """Reserve (or give back) what is buffered now; 1009 when the
        budget cannot take it."""
        budget = self.budget
        if budget is None:
            return
        held = self.parser.buffered() + self._assembler.buffered
        delta = held - self._held
        if delta > 0 and not budget.reserve(delta):
            budget.refused(self.peer, self._held, delta)
            self.release_budget()
            self.fail(
                MessageTooBigException(
                    'the server has no room to buffer more of this message'
                )
            )
        if delta < 0:
            budget.release(-delta)
        self._held = held

    def release_budget(self) -> None:
        """Give back everything reserved and drop what is buffered for
        incomplete messages (the connection ended, or the budget refused
        it): now, not when the garbage collector reaches the reference
        cycles the connection sits in. The assembler stops reserving
        (its `reserve` was this core's bound method: a cycle)."""
        self._assembler.reserve = None
        if (
            not self._held
            and self.parser.drained
            and self._assembler.opcode is None
            and self.error is None
        ):
            return  # (a clean end: nothing held, buffered or kept)
        held, self._held = self._held, 0
        if self.budget is not None and held:
            self.budget.release(held)
        # (in place: frames of a traceback may still refer to them; a
        # connection that ended cleanly has nothing to drop)
        if self.parser.buffered():
            self.parser.discard()
        assembler = self._assembler
        if assembler.buffered or assembler.in_message:
            assembler.discard()
        if self.error is not None:
            forget_tracebacks(self.error)

    # ---- receiving -------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; b'' means the transport ended (the
        next next_event() then raises ConnectionTerminatedException
        unless the peer's close had arrived)."""
        if data:
            self.parser.feed(data)
        else:
            self._at_eof = True

    def next_event(self) -> Optional[Event]:
        """The next event from the bytes fed so far, or None until more
        arrive. A protocol violation queues the close frame its code calls
        for (1002, 1007, 1009) and raises the ProtocolError. Once the
        peer's close arrived, later bytes are dropped."""
        if (
            self.close_received is not None
            or self._receive_stopped
            or self.state is _CLOSED
        ):  # (receiving_closed, inline: this runs once per message)
            return None
        next_raw = self.parser.next_raw
        assembler = self._assembler
        while True:
            try:
                raw = next_raw()
            except ProtocolError as e:
                self.fail(e)
            if raw is None:
                self._hold()
                if self._at_eof:
                    self._eof()
                return None
            b0, payload = raw
            opcode = b0 & 0x0F
            if opcode & 0x8:
                return self._control(opcode, payload)
            if b0 & 0xC0 == 0x80 and opcode and assembler.opcode is None:
                # The common case, inline: a whole uncompressed message in
                # one frame (FIN set, RSV1 clear; the parser has checked
                # its size already).
                if opcode == _TEXT:
                    try:
                        data: Optional[Payload] = payload.decode('utf-8')
                    except UnicodeDecodeError:
                        self._single_frame_failed(opcode, payload)
                else:
                    data = payload
                self.last_message_opcode = opcode
                if self._held:
                    self._hold()  # (gives back what the parts held)
                return _new_message(Message, (data,))
            try:
                data = assembler.add_frame(
                    Frame(
                        b0 >> 7,
                        (b0 >> 6) & 1,
                        (b0 >> 5) & 1,
                        (b0 >> 4) & 1,
                        opcode,
                        payload,
                    )
                )
            except ProtocolError as e:
                if isinstance(e, BudgetExhausted) and self.budget:
                    self.budget.refused(self.peer, self._held, 0)
                    self.release_budget()
                self.fail(e)
            if data is not None:
                self._hold()
                self.last_message_opcode = (
                    _TEXT if isinstance(data, str) else _BINARY
                )
                return _new_message(Message, (data,))

    def _single_frame_failed(self, opcode: int, payload: bytes) -> None:
        """Fail with the error the assembler finds in a one-frame message
        (invalid UTF-8)."""
        try:
            self._assembler.single_frame(opcode, payload)
        except ProtocolError as e:
            self.fail(e)
        raise AssertionError('no error in a message that failed')

    def input_pending(self) -> bool:
        """Whether next_event() may have more to return from what was
        fed: unparsed bytes, or the end of the transport."""
        return self._at_eof or not self.parser.drained

    def next_frame(self) -> Optional[Frame]:
        """The next raw frame (unmasked, nothing else done to it), or None
        until more bytes arrive; for handlers that read frames."""
        if self._at_eof and not self.parser.buffered():
            self._eof()
        try:
            return self.parser.next_frame()
        except ProtocolError as e:
            self.fail(e)
            raise  # not reached: fail() raises

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == common.OPCODE_PING:
            return Ping(payload)
        if opcode == common.OPCODE_PONG:
            return Pong(payload)
        try:
            code, reason = parse_close_body(payload)
        except ProtocolError as e:
            self.fail(e)
        return self._after_close_received(code, reason)

    def fail(self, error: ProtocolError) -> None:
        """Fail the connection for a protocol violation: queue the close
        `error.code` calls for (unless ours went out already), stop
        receiving, raise `error`."""
        self.error = error
        if self.close_sent is None:
            self._queue_close(error.code, '', None)
        self._receive_stopped = True
        self.state = State.CLOSED  # the driver ends the transport
        raise error

    # ---- sending ---------------------------------------------------------

    def _check_open(self) -> None:
        if self.close_sent is not None:
            raise BadOperationException(
                'cannot send a message after the close frame was sent'
            )

    def send_message(
        self,
        message: Payload,
        end: bool = True,
        binary: bool = False,
        compress: bool = True,
    ) -> None:
        """Queue a message (str as text, bytes as binary); `end=False`
        queues a fragment of one, finished by a later call with
        `end=True`; `compress=False` skips permessage-deflate for it."""
        if self.close_sent is not None:  # (_check_open, inline)
            self._check_open()
        if end and self._send_opcode is None and self.deflater is None:
            # The common case, inline: a whole message, no compression.
            kind = type(message)
            if kind is str and not binary:
                first = 0x81
                payload = message.encode('utf-8')  # type: ignore[union-attr]
            elif kind is bytes:
                first = 0x82
                payload = message
            else:
                first = 0
            if first:
                length = len(payload)
                if length < 126 and not self._mask:
                    frame = bytes((first, length)) + payload
                else:
                    frame = build_frame(first & 0xF, payload, 1, 0, self._mask)
                self._out.append(frame)
                self._out_size += len(frame)
                return
        self._queue(self._message_frame(message, end, binary, compress))

    def _message_frame(
        self, message: Payload, end: bool, binary: bool, compress: bool
    ) -> bytes:
        if isinstance(message, str):
            if binary:
                raise BadOperationException(
                    'a binary message must be bytes, not str'
                )
            opcode = common.OPCODE_TEXT
            payload = message.encode('utf-8')
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode = common.OPCODE_BINARY
            payload = bytes(message)
        else:
            raise BadOperationException(
                'a message must be str or bytes, not %s'
                % type(message).__name__
            )
        if self._send_opcode is not None:
            if opcode != self._send_opcode:
                raise BadOperationException(
                    'message type changed in the middle of a fragmented '
                    'message'
                )
            first = False
            wire_opcode = common.OPCODE_CONTINUATION
        else:
            first = True
            wire_opcode = opcode
            self._send_compressed = bool(
                compress
                and self.deflater is not None
                and self.deflater.enabled
            )
        rsv1 = 0
        if self._send_compressed:
            assert self.deflater is not None
            payload = self.deflater.compress(payload, end)
            rsv1 = int(first)
        self._send_opcode = None if end else opcode
        return build_frame(wire_opcode, payload, int(end), rsv1, self._mask)

    def send_frame(self, opcode: int, payload: bytes, fin: int = 1) -> None:
        """Queue one raw frame (for handlers that craft frames)."""
        self._check_open()
        self._queue(build_frame(opcode, payload, fin, mask=self._mask))

    def send_ping(self, payload: bytes = b'') -> None:
        """Queue a ping (at most 125 bytes of payload)."""
        if len(payload) > 125:
            raise BadOperationException('ping body over 125 bytes')
        if self.close_sent is not None:
            raise BadOperationException('cannot ping after closing')
        self._queue(build_frame(common.OPCODE_PING, payload, mask=self._mask))

    def send_pong(self, payload: bytes = b'') -> None:
        """Answer a ping. At most one pong waits: a newer one replaces a
        pong the driver has not taken yet (RFC 6455 section 5.5.3), so a
        peer flooding pings while not reading costs no memory. Dropped
        once our close frame is queued."""
        if self.close_sent is None:
            self._pending_pong = payload[:125]

    def _keepalive_ping(self) -> bool:
        if self.close_sent is not None:
            return False
        self.send_ping(b'keepalive')
        return True

    def close(
        self,
        code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
        reason: str = '',
        now: Optional[float] = None,
    ) -> bool:
        """Queue our close frame (`code=None`: an empty body); False when
        one was queued already. `now` starts the close-wait timer.
        ValueError for a code or reason that cannot be sent."""
        if self.close_sent is not None:
            return False
        self._queue_close(code, reason, now)
        return True

    def _queue_close(
        self, code: Optional[int], reason: str, now: Optional[float]
    ) -> None:
        body = build_close_body(code, reason)
        if self._pending_pong is not None:
            self._take_pong()
        frame = build_frame(common.OPCODE_CLOSE, body, mask=self._mask)
        self._out.append(frame)  # (_queue, inline)
        self._out_size += len(frame)
        self._after_close_sent(code, reason, now)

    def reply_to_close(self) -> bool:
        """Queue the usual answer to the peer's close: its code echoed
        (an empty close when it had none). False when ours went out."""
        received = self.close_received
        code = received.code if received is not None else None
        return self.close(code, '')

    def _take_pong(self) -> None:
        pong = self._pending_pong
        if pong is not None:
            self._pending_pong = None
            self._queue(build_frame(common.OPCODE_PONG, pong, mask=self._mask))

    def _pong_first(self) -> None:
        pong = self._pending_pong
        assert pong is not None
        self._pending_pong = None
        self._out.insert(
            0, build_frame(common.OPCODE_PONG, pong, mask=self._mask)
        )

    @property
    def bytes_to_send(self) -> int:
        pong = self._pending_pong
        return self._out_size + (0 if pong is None else len(pong) + 6)


class HixieConnection(_Core):
    """One draft-75 or draft-76 connection, with WebSocketConnection's
    interface: text messages only, no control frames; draft-76 closes
    with 0xFF 0x00, draft-75 by closing the transport."""

    def __init__(
        self,
        draft76: bool = True,
        max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
        close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT,
        client: bool = False,
    ) -> None:
        super().__init__(client, close_timeout, None, None)
        self.draft76 = draft76
        self.parser = HixieFrameParser(max_message_size or None, draft76)
        self._at_eof = False
        self.last_message_opcode: Optional[int] = None

    def receive_data(self, data: bytes) -> None:
        if data:
            self.parser.feed(data)
        else:
            self._at_eof = True

    def next_event(self) -> Optional[Event]:
        """As WebSocketConnection.next_event(); a draft-75 peer that ends
        the transport has closed normally."""
        if self.receiving_closed:
            return None
        try:
            event = self.parser.next_event()
        except ProtocolError as e:
            self.fail(e)
        if event is None:
            if self._at_eof:
                if not self.draft76:
                    self.connection_lost()
                    self.closed_by = self.closed_by or 'remote'
                    self.close_received = CloseReceived(None, '')
                    return self.close_received
                self._eof()
            return None
        kind, text = event
        if kind == EVENT_CLOSE:
            return self._after_close_received(None, '')
        self.last_message_opcode = common.OPCODE_TEXT
        return Message(text or '')

    def send_message(
        self,
        message: Payload,
        end: bool = True,
        binary: bool = False,
        compress: bool = True,
    ) -> None:
        """Queue a text message (the drafts have no binary, no fragments)."""
        if binary or not isinstance(message, str):
            raise BadOperationException(
                'draft-75/76 connections carry text (str) only'
            )
        if not end:
            raise BadOperationException('draft-75/76 have no fragments')
        if self.close_sent is not None:
            raise BadOperationException('cannot send after closing')
        self._queue(build_text_frame(message))

    def send_ping(self, payload: bytes = b'') -> None:
        raise BadOperationException('draft-75/76 have no ping')

    def send_pong(self, payload: bytes = b'') -> None:
        raise BadOperationException('draft-75/76 have no pong')

    def close(
        self,
        code: Optional[int] = None,
        reason: str = '',
        now: Optional[float] = None,
    ) -> bool:
        """Queue 0xFF 0x00 (draft-76; draft-75 has nothing to send: the
        driver ends the transport). Code and reason do not exist here."""
        if self.close_sent is not None:
            return False
        self._queue_close(now)
        return True

    def _queue_close(self, now: Optional[float]) -> None:
        if self.draft76:
            self._queue(CLOSING_HANDSHAKE)
            self._after_close_sent(None, '', now)
        else:
            self._after_close_sent(None, '', now)
            self.state = State.CLOSED  # nothing to wait for

    def reply_to_close(self) -> bool:
        return self.close()

    def fail(self, error: ProtocolError) -> None:
        """As WebSocketConnection.fail(): draft-76 sends 0xFF 0x00."""
        self.error = error
        if self.close_sent is None:
            self._queue_close(None)
        self._receive_stopped = True
        self.state = State.CLOSED
        raise error
