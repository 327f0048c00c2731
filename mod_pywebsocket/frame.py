"""RFC 6455 frame codec (sans-I/O): an incremental parser and builders.

The parser takes bytes in any split and yields the same frames; it checks
every rule that a single frame can break and raises a ProtocolError whose
`code` is the close code to send. Rules that span frames (fragmentation,
UTF-8, message size) live in message.py.
"""

from __future__ import annotations

import os
import struct
from typing import Dict, List, Optional, Tuple, Type, Union

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    InvalidFrameException,  # noqa: F401
    MessageTooBigException,
    ProtocolError,
    UnsupportedFrameException,
    is_control_opcode,  # noqa: F401
)
from mod_pywebsocket.masking import mask as _mask
from mod_pywebsocket.masking import mask_range as _mask_range

_KNOWN_OPCODES = frozenset(
    (
        common.OPCODE_CONTINUATION,
        common.OPCODE_TEXT,
        common.OPCODE_BINARY,
        common.OPCODE_CLOSE,
        common.OPCODE_PING,
        common.OPCODE_PONG,
    )
)

_pack_H = struct.Struct('!H').pack
_pack_Q = struct.Struct('!Q').pack
_unpack_H = struct.Struct('!H').unpack_from
_unpack_Q = struct.Struct('!Q').unpack_from

RSV1 = 4
RSV2 = 2
RSV3 = 1


# The exception (and so the close code) for RSV bits nothing claims.
_RSV_ERRORS: Dict[int, Type[ProtocolError]] = {
    common.STATUS_PROTOCOL_ERROR: InvalidFrameException,
    common.STATUS_UNSUPPORTED_DATA: UnsupportedFrameException,
}


class Frame:
    """One frame, payload already unmasked."""

    __slots__ = ('fin', 'rsv1', 'rsv2', 'rsv3', 'opcode', 'payload')

    def __init__(
        self,
        fin: int = 1,
        rsv1: int = 0,
        rsv2: int = 0,
        rsv3: int = 0,
        opcode: Optional[int] = None,
        payload: bytes = b'',
    ) -> None:
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.payload = payload

    def __repr__(self) -> str:
        return 'Frame(fin=%d, rsv=%d%d%d, opcode=%#x, %d bytes)' % (
            self.fin,
            self.rsv1,
            self.rsv2,
            self.rsv3,
            self.opcode or 0,
            len(self.payload),
        )


class FrameParser:
    """Incremental RFC 6455 frame parser.

    `expect_masked`: True on a server (client frames must be masked),
    False on a client (server frames must not be). `allowed_rsv` is a bit
    set of RSV1/RSV2/RSV3 that a negotiated extension claims on data frames.
    `max_payload` rejects a longer frame as soon as its header arrives.
    `rsv_close_code` is the close code for RSV bits nothing claims (on any
    frame): 1002 raises InvalidFrameException (a protocol error), 1003
    UnsupportedFrameException (pywebsocket3's choice).
    """

    def __init__(
        self,
        expect_masked: bool = True,
        allowed_rsv: int = 0,
        max_payload: Optional[int] = None,
        rsv_close_code: int = common.STATUS_PROTOCOL_ERROR,
    ) -> None:
        if rsv_close_code not in _RSV_ERRORS:
            raise ValueError(
                'rsv_close_code is 1002 or 1003, not %r' % (rsv_close_code,)
            )
        self.expect_masked = expect_masked
        self.allowed_rsv = allowed_rsv
        self.max_payload = max_payload
        self.rsv_close_code = rsv_close_code
        # Unparsed bytes are _data[_pos:] followed by the _pending chunks.
        # Chunks are joined once, when a frame needs them, so a large
        # frame arriving in many reads is copied once, not once per read.
        self._pending: List[bytes] = []
        self._data = b''
        self._pos = 0
        self._pending_size = 0
        # The size of the next frame once it is known to be incomplete,
        # else 0 (a driver sizes its reads by it).
        self.incomplete_size = 0
        # True while no unparsed byte is buffered (read by drivers once
        # per message: an attribute, not a call).
        self.drained = True

    def wanted(self) -> int:
        """How many more bytes the frame in progress needs (0 when no
        frame is known to be incomplete): a hint for the read size."""
        return (
            self.incomplete_size - self.buffered()
            if self.incomplete_size
            else 0
        )

    def needed(self) -> int:
        """The fewest more bytes that can complete the next frame: the
        rest of its header until that is known, then the rest of the
        frame (for transports whose read(n) waits for all n bytes)."""
        if self.incomplete_size:
            return max(self.incomplete_size - self.buffered(), 1)
        if self._pending:
            self._join()
        available = len(self._data) - self._pos
        if available < 2:
            return 2 - available
        length = self._data[self._pos + 1] & 0x7F
        header = 4 if length == 126 else 10 if length == 127 else 2
        return max(header - available, 1)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.drained = False
        if self._pos >= len(self._data) and not self._pending:
            self._data = bytes(data)
            self._pos = 0
        else:
            self._pending.append(bytes(data))
            self._pending_size += len(data)

    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._data) - self._pos + self._pending_size

    def _join(self) -> None:
        self._pending.insert(0, self._data[self._pos :])
        self._data = b''.join(self._pending)
        self._pos = 0
        self._pending = []
        self._pending_size = 0

    def discard(self) -> None:
        """Drop every unparsed byte (the connection ended)."""
        self._data = b''
        self._pos = 0
        self._pending = []
        self._pending_size = 0
        self.incomplete_size = 0
        self.drained = True

    def take_buffer(self) -> bytes:
        """Remove and return the unparsed bytes (for a protocol switch)."""
        self._join()
        data = self._data
        self._data = b''
        self.drained = True
        return data

    def next_frame(self) -> Optional[Frame]:
        """The next complete frame, or None until more bytes are fed."""
        raw = self.next_raw()
        if raw is None:
            return None
        b0, payload = raw
        return Frame(
            b0 >> 7,
            (b0 >> 6) & 1,
            (b0 >> 5) & 1,
            (b0 >> 4) & 1,
            b0 & 0x0F,
            payload,
        )

    def next_raw(self) -> Optional[Tuple[int, bytes]]:
        """As next_frame(), as (first header byte, unmasked payload): FIN,
        RSV and opcode are bits of the first byte (a lighter tuple for
        the connection's hot path)."""
        data = self._data
        pos = self._pos
        available = len(data) - pos
        if available < 14:
            if self._pending:
                self._join()  # a header may span chunks
                data = self._data
                pos = 0
                available = len(data)
            if available < 2:
                return None
        b0 = data[pos]
        b1 = data[pos + 1]
        opcode = b0 & 0x0F
        rsv = (b0 >> 4) & 0x07
        length = b1 & 0x7F
        header = 2
        if length == 126:
            if available < 4:
                return None
            length = _unpack_H(data, pos + 2)[0]
            if length < 126:
                raise InvalidFrameException(
                    'payload length %d not in its minimal encoding' % length
                )
            header = 4
        elif length == 127:
            if available < 10:
                return None
            length = _unpack_Q(data, pos + 2)[0]
            if length >> 63:
                raise InvalidFrameException(
                    'most significant bit of a 64-bit length is set'
                )
            if length < 0x10000:
                raise InvalidFrameException(
                    'payload length %d not in its minimal encoding' % length
                )
            header = 10
        if rsv or not 0 < opcode < 3:
            self._check_header(b0, opcode, rsv, length)
        masked = b1 & 0x80
        if bool(masked) != self.expect_masked:
            raise InvalidFrameException(
                'received an unmasked frame from a client'
                if masked == 0
                else 'received a masked frame from a server'
            )
        if self.max_payload is not None and length > self.max_payload:
            raise MessageTooBigException(
                'frame of %d bytes exceeds the limit of %d'
                % (length, self.max_payload)
            )
        size = header + (4 if masked else 0) + length
        if available < size:
            if available + self._pending_size < size:
                self.incomplete_size = size
                return None
            self._join()
            data = self._data
            pos = 0
        start = pos + header
        end = pos + size
        self._pos = end
        self.incomplete_size = 0
        if end == len(data) and not self._pending:
            self.drained = True
        if masked:
            if length:
                payload = _mask_range(
                    data, start + 4, end, data[start : start + 4]
                )
            else:
                payload = b''
        else:
            payload = data[start:end]
        return b0, payload

    def _check_header(
        self, b0: int, opcode: int, rsv: int, length: int
    ) -> None:
        if opcode not in _KNOWN_OPCODES:
            raise InvalidFrameException('unknown opcode %#x' % opcode)
        if opcode >= 0x8:
            if not b0 & 0x80:
                raise InvalidFrameException('fragmented control frame')
            if length > 125:
                raise InvalidFrameException(
                    'control frame with a %d-byte payload (limit 125)' % length
                )
            if rsv:
                raise _RSV_ERRORS[self.rsv_close_code](
                    'RSV bits %s set on a control frame' % format(rsv, '03b')
                )
        elif rsv & ~self.allowed_rsv:
            raise _RSV_ERRORS[self.rsv_close_code](
                'RSV bits %s set but no extension claims them'
                % format(rsv, '03b')
            )


BytesLike = Union[bytes, bytearray, memoryview]


def create_length_header(length: int, mask: bool) -> bytes:
    """The second byte (mask bit + length) and extended length, if any."""
    mask_bit = 0x80 if mask else 0
    if length < 126:
        return bytes((mask_bit | length,))
    if length < 0x10000:
        return bytes((mask_bit | 126,)) + _pack_H(length)
    if length < 1 << 63:
        return bytes((mask_bit | 127,)) + _pack_Q(length)
    raise ValueError('payload length %d is too large' % length)


def create_header(
    opcode: int,
    payload_length: int,
    fin: int,
    rsv1: int,
    rsv2: int,
    rsv3: int,
    mask: bool,
) -> bytes:
    """A frame header without the masking key (pywebsocket3's signature)."""
    if not 0 <= opcode <= 0xF:
        raise ValueError('opcode out of range: %r' % opcode)
    for bit in (fin, rsv1, rsv2, rsv3):
        if bit not in (0, 1, False, True):
            raise ValueError('fin and rsv bits must be 0 or 1, not %r' % bit)
    first = (
        (bool(fin) << 7)
        | (bool(rsv1) << 6)
        | (bool(rsv2) << 5)
        | (bool(rsv3) << 4)
        | opcode
    )
    return bytes((first,)) + create_length_header(payload_length, mask)


def build_frame(
    opcode: int,
    payload: BytesLike,
    fin: int = 1,
    rsv1: int = 0,
    mask: bool = False,
    rsv2: int = 0,
    rsv3: int = 0,
) -> bytes:
    """A whole frame, header and payload in one bytes object. With `mask`,
    a fresh random key is used, as a client must."""
    length = len(payload)
    if length < 126 and not (rsv2 or rsv3):
        head = bytes(
            ((fin << 7) | (rsv1 << 6) | opcode, (0x80 if mask else 0) | length)
        )
    else:
        head = create_header(opcode, length, fin, rsv1, rsv2, rsv3, mask)
    if mask:
        key = os.urandom(4)
        return head + key + _mask(payload, key)
    return (
        head + payload if isinstance(payload, bytes) else head + bytes(payload)
    )


def build_close_body(
    code: Optional[int], reason: Union[str, bytes] = ''
) -> bytes:
    """A close frame body: nothing when `code` is None, else the 2-byte
    code and the UTF-8 reason."""
    if isinstance(reason, str):
        reason = reason.encode('utf-8')
    if code is None:
        if reason:
            raise ValueError('a close reason needs a close code')
        return b''
    if not 0 <= code <= 0xFFFF:
        raise ValueError('close code out of range: %r' % code)
    if len(reason) > 123:
        raise ValueError('close reason longer than 123 bytes')
    return _pack_H(code) + reason


def parse_close_body(body: bytes) -> Tuple[Optional[int], str]:
    """(code, reason) from a received close body; (None, '') when empty.

    Raises InvalidFrameException (1002) for a 1-byte body, a code that may
    not be sent, or a reason that is not UTF-8.
    """
    if not body:
        return None, ''
    if len(body) == 1:
        raise InvalidFrameException('close frame with a 1-byte body')
    code = _unpack_H(body, 0)[0]
    if not common.is_sendable_close_code(code):
        raise InvalidFrameException('invalid close code %d' % code)
    try:
        reason = body[2:].decode('utf-8')
    except UnicodeDecodeError:
        raise InvalidFrameException('close reason is not valid UTF-8')
    return code, reason
