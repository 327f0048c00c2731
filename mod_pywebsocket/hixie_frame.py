"""draft-75 / draft-76 (hixie) frame codec, sans-I/O.

Text frames are 0x00 <UTF-8> 0xFF. A frame type with the high bit set
carries a 7-bit-group length and is read and discarded, as the drafts say;
0xFF 0x00 is draft-76's closing handshake. Other types below 0x80 run to
the next 0xFF and are discarded.
"""

from __future__ import annotations

from typing import Optional, Tuple, cast

from mod_pywebsocket.common import MessageTooBigException

CLOSING_HANDSHAKE = b'\xff\x00'

EVENT_TEXT = 'text'
EVENT_CLOSE = 'close'


def build_text_frame(message: str) -> bytes:
    """One text frame for `message`."""
    return b'\x00' + message.encode('utf-8') + b'\xff'


class HixieFrameParser:
    """Incremental parser returning ('text', str) or ('close', None)."""

    def __init__(
        self,
        max_message_size: Optional[int] = None,
        enable_closing_handshake: bool = True,
    ) -> None:
        self.max_message_size = max_message_size
        self.enable_closing_handshake = enable_closing_handshake
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self) -> Optional[Tuple[str, Optional[str]]]:
        """The next text message or close, or None until more bytes come."""
        while self._buffer:
            event = self._parse_one()
            if event is _NEED_MORE:
                return None
            if event is not None:
                return cast(Tuple[str, Optional[str]], event)
        return None

    def _parse_one(self) -> object:
        buf = self._buffer
        frame_type = buf[0]
        if frame_type & 0x80:
            length = 0
            pos = 1
            while True:
                if pos >= len(buf):
                    return _NEED_MORE
                byte = buf[pos]
                pos += 1
                length = length * 128 + (byte & 0x7F)
                if (
                    self.max_message_size is not None
                    and length > self.max_message_size
                ):
                    raise MessageTooBigException(
                        'length-prefixed frame of %d bytes over the limit'
                        % length
                    )
                if not byte & 0x80:
                    break
            if (
                frame_type == 0xFF
                and length == 0
                and pos == 2
                and self.enable_closing_handshake
            ):
                del buf[:2]
                return (EVENT_CLOSE, None)
            if len(buf) < pos + length:
                return _NEED_MORE
            del buf[: pos + length]  # discarded, as the drafts say
            return None
        end = buf.find(b'\xff', 1)
        if end < 0:
            if (
                self.max_message_size is not None
                and len(buf) - 1 > self.max_message_size
            ):
                raise MessageTooBigException('text frame over the limit')
            return _NEED_MORE
        payload = bytes(buf[1:end])
        del buf[: end + 1]
        if frame_type != 0x00:
            return None
        if (
            self.max_message_size is not None
            and len(payload) > self.max_message_size
        ):
            raise MessageTooBigException('text frame over the limit')
        return (EVENT_TEXT, payload.decode('utf-8', 'replace'))


_NEED_MORE = object()
