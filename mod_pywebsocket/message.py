"""Message assembly over RFC 6455 data frames (sans-I/O).

`MessageAssembler.add_frame()` takes data frames in arrival order and
returns each complete message (str for text, bytes for binary). It enforces
the rules that span frames: continuation only inside a fragmented message,
no new message inside one, UTF-8 validity checked incrementally (1007 as
soon as a bad byte arrives), the maximum message size (1009, counted after
decompression and checked while inflating) and per-message compression.
"""

from __future__ import annotations

import codecs
from typing import Callable, List, Optional, Union, cast

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    InvalidFrameException,
    InvalidUTF8Exception,
    MessageTooBigException,
)
from mod_pywebsocket.budget import BudgetExhausted
from mod_pywebsocket.frame import Frame

_Utf8Decoder = codecs.getincrementaldecoder('utf-8')

Message = Union[str, bytes]


class Inflater:
    """What the assembler needs from a decompressing extension."""

    def decompress(
        self,
        data: bytes,
        max_length: Optional[int],
        reserve: Optional[Callable[[int], int]] = None,
    ) -> bytes:
        """Inflate one fragment; raise MessageTooBigException past
        `max_length` bytes of output (None = no limit), or when
        `reserve(n)` (asked before each piece of output, returning how
        many bytes it granted) grants nothing."""
        raise NotImplementedError

    def end_message(self, max_length: Optional[int] = None) -> bytes:
        """Flush the end of a compressed message; return its last bytes;
        raise MessageTooBigException past `max_length` bytes."""
        raise NotImplementedError


class MessageAssembler:
    """Reassembles data frames into messages, validating as it goes."""

    # The opcode of the fragmented message in progress, None between
    # messages.
    opcode: Optional[int]
    _decoder: Optional[codecs.IncrementalDecoder]
    # Reserve up to n bytes of a server-wide budget, return how many (set
    # by the connection; bounds what one inflate may produce).
    reserve: Optional[Callable[[int], int]]

    def __init__(
        self,
        max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
        inflater: Optional[Inflater] = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.inflater = inflater
        self._parts: List[Union[str, bytes]] = []
        self.opcode = None
        self._compressed = False
        self._size = 0
        self._decoder = None
        self.reserve = None

    @property
    def buffered(self) -> int:
        """Bytes held for the message in progress."""
        return self._size

    @property
    def in_message(self) -> bool:
        """Whether a fragmented message is in progress."""
        return self.opcode is not None

    def add_frame(self, frame: Frame) -> Optional[Message]:
        """Add one data frame; return the message it completes, or None."""
        opcode = frame.opcode or 0
        if opcode == common.OPCODE_CONTINUATION:
            if self.opcode is None:
                raise InvalidFrameException(
                    'continuation frame without a message to continue'
                )
            if frame.rsv1:
                raise InvalidFrameException('RSV1 set on a continuation frame')
        else:
            if self.opcode is not None:
                raise InvalidFrameException(
                    'new data frame inside a fragmented message'
                )
            if frame.rsv1 and self.inflater is None:
                raise InvalidFrameException(
                    'RSV1 set but no extension claims it'
                )
            if frame.fin and not frame.rsv1:
                return self.single_frame(opcode, frame.payload)
            self.opcode = opcode
            self._compressed = bool(frame.rsv1)
            self._parts = []
            self._size = 0
            self._decoder = (
                _Utf8Decoder() if opcode == common.OPCODE_TEXT else None
            )
        data = frame.payload
        if self._compressed:
            data = self._inflate(data, frame.fin)
        else:
            self._count(len(data))
        if self._decoder is not None:
            try:
                text = self._decoder.decode(data, bool(frame.fin))
            except UnicodeDecodeError as e:
                self._reset()
                raise InvalidUTF8Exception(
                    'invalid UTF-8 in text message: %s' % e.reason
                )
            self._parts.append(text)
        else:
            self._parts.append(data)
        if not frame.fin:
            return None
        parts = self._parts
        text_message = self._decoder is not None
        self._reset()
        if text_message:
            return ''.join(cast(List[str], parts))
        return b''.join(cast(List[bytes], parts))

    def single_frame(self, opcode: int, payload: bytes) -> Message:
        """The message of one unfragmented, uncompressed data frame."""
        size = len(payload)
        if self.max_message_size and size > self.max_message_size:
            raise MessageTooBigException(
                'message of %d bytes exceeds the limit of %d'
                % (size, self.max_message_size)
            )
        if opcode == common.OPCODE_TEXT:
            try:
                return payload.decode('utf-8')
            except UnicodeDecodeError as e:
                raise InvalidUTF8Exception(
                    'invalid UTF-8 in text message: %s' % e.reason
                )
        return payload

    def _count(self, size: int) -> None:
        self._size += size
        if self.max_message_size and self._size > self.max_message_size:
            self._reset()
            raise MessageTooBigException(
                'message exceeds the limit of %d bytes' % self.max_message_size
            )

    def _inflate(self, data: bytes, fin: int) -> bytes:
        assert self.inflater is not None
        limit = self.max_message_size
        remaining = max(0, limit - self._size) if limit else None
        reserve = self.reserve
        short = False  # the budget granted less than was asked

        def reserve_piece(n: int) -> int:
            # The budget is reserved piece by piece as the output grows
            # (not the whole remaining message limit up front, which a few
            # connections inflating at once made a full budget).
            nonlocal short
            assert reserve is not None
            granted = reserve(n)
            if granted < n:
                short = True
            return granted

        try:
            out = self.inflater.decompress(
                data, remaining, reserve_piece if reserve is not None else None
            )
            if fin:
                out += self.inflater.end_message(
                    None if remaining is None else remaining - len(out)
                )
            if remaining is not None and len(out) > remaining:
                raise MessageTooBigException('decompressed too much')
        except MessageTooBigException:
            self._reset()
            if short:
                raise BudgetExhausted(
                    'the server has no room to inflate more of this message'
                )
            raise MessageTooBigException(
                'decompressed message exceeds the limit of %d bytes' % limit
            )
        self._count(len(out))
        return out

    def discard(self) -> None:
        """Drop the message in progress (the connection ended)."""
        self._reset()

    def _reset(self) -> None:
        self.opcode = None
        self._compressed = False
        self._parts = []
        self._size = 0
        self._decoder = None
