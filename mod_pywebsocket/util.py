"""Small helpers that handlers written for pywebsocket3 (for example those
of web-platform-tests) import from `mod_pywebsocket.util`."""

from __future__ import annotations

import logging
import traceback
import zlib
from typing import Callable, List

from mod_pywebsocket.masking import RepeatedXorMasker  # noqa: F401


def read_exactly(
    read: Callable[[int], bytes],
    length: int,
    error: Callable[[str], Exception],
    during: str,
) -> bytes:
    """`length` bytes from calls of `read(n)`, which may return fewer;
    raises `error(message)` when a read fails or the peer stops first
    (`during` names the step in the message)."""
    chunks: List[bytes] = []
    remaining = length
    while remaining > 0:
        try:
            data = read(remaining)
        except OSError as e:
            raise error('connection failed %s: %s' % (during, e))
        if not data:
            raise error(
                'the peer closed the connection %s, %d of %d bytes short'
                % (during, remaining, length)
            )
        chunks.append(data)
        remaining -= len(data)
    return b''.join(chunks)


def pack_byte(value: int) -> bytes:
    """One byte from an int 0-255."""
    return bytes((value,))


def unpack_byte(data: bytes) -> int:
    """The int value of a 1-byte bytes object."""
    return data[0]


def hexify(data: bytes) -> str:
    """Space-separated hex of `data` (for logs)."""
    return ' '.join('%02x' % b for b in data)


def get_stack_trace() -> str:
    """The traceback of the exception being handled, as text."""
    return traceback.format_exc()


def prepend_message_to_exception(message: str, exc: BaseException) -> None:
    """Put `message` in front of an exception's text, in place."""
    exc.args = ((message + str(exc)),) + tuple(exc.args[1:])


def get_class_logger(obj: object) -> logging.Logger:
    """A logger named after the module and class of `obj`."""
    cls = type(obj)
    return logging.getLogger('%s.%s' % (cls.__module__, cls.__name__))


class NoopMasker:
    """A masker that leaves data as it is."""

    def mask(self, data: bytes) -> bytes:
        return bytes(data)


# pywebsocket3's raw DEFLATE helpers (its tests and clients use them);
# the server's permessage-deflate is extensions.Deflater / Inflater.


class _Deflater:
    """Raw DEFLATE with a `window_bits` window (zlib uses 9 for 8)."""

    def __init__(self, window_bits: int) -> None:
        self._window_bits = window_bits
        self._compress = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -max(window_bits, 9)
        )

    def compress(self, data: bytes) -> bytes:
        return self._compress.compress(data)

    def compress_and_flush(self, data: bytes) -> bytes:
        return self._compress.compress(data) + self._compress.flush(
            zlib.Z_SYNC_FLUSH
        )

    def compress_and_finish(self, data: bytes) -> bytes:
        out = self._compress.compress(data) + self._compress.flush(
            zlib.Z_FINISH
        )
        self._compress = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION,
            zlib.DEFLATED,
            -max(self._window_bits, 9),
        )
        return out


class _Inflater:
    """Raw INFLATE of appended bytes; decompress(size) returns up to
    `size` bytes (-1: all there is); a finished DEFLATE stream followed
    by more data starts a new one."""

    def __init__(self, window_bits: int) -> None:
        self._window_bits = window_bits
        self._unconsumed = b''
        self.reset()

    def reset(self) -> None:
        self._decompress = zlib.decompressobj(-max(self._window_bits, 9))

    def append(self, data: bytes) -> None:
        self._unconsumed += data

    def decompress(self, size: int) -> bytes:
        out = b''
        while size < 0 or len(out) < size:
            if not self._unconsumed:
                break
            limit = 0 if size < 0 else size - len(out)
            out += self._decompress.decompress(self._unconsumed, limit)
            if self._decompress.eof:
                self._unconsumed = self._decompress.unused_data
                self.reset()
            else:
                self._unconsumed = self._decompress.unconsumed_tail
        return out
