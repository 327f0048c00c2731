"""Fuzz the inflater directly: fragments of one or more messages with a
size limit. Documented: InvalidFrameException (bad compressed data),
MessageTooBigException (past the limit); output never exceeds it."""

from __future__ import annotations

import _common  # noqa: F401  (sys.path)
from mod_pywebsocket.common import (
    InvalidFrameException,
    MessageTooBigException,
)
from mod_pywebsocket.extensions import Inflater


def target(data: bytes) -> None:
    if len(data) < 2:
        return
    limit = data[0] * 64
    inflater = Inflater(bool(data[1] & 1))
    pieces = data[2:].split(b'\xff\xfe')
    try:
        total = 0
        for i, piece in enumerate(pieces):
            out = inflater.decompress(piece, limit - total)
            total += len(out)
            assert total <= limit, (total, limit)
            if i % 2:
                total += len(inflater.end_message(limit - total))
                assert total <= limit, (total, limit)
                total = 0
    except (InvalidFrameException, MessageTooBigException):
        pass


if __name__ == '__main__':
    _common.run(target)
