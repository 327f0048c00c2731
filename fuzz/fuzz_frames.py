"""Fuzz the frame parser, the message assembler and the inflater through
the sans-I/O core: bytes from a client, in pieces, with and without
permessage-deflate. Documented: ProtocolError (and its subclasses) and
ConnectionTerminatedException at the end of the input."""

from __future__ import annotations

import _common  # noqa: F401  (sys.path)
from mod_pywebsocket.common import ConnectionTerminatedException, ProtocolError
from mod_pywebsocket.connection import WebSocketConnection
from mod_pywebsocket.extensions import Inflater

LIMIT = 1 << 16


def target(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    inflater = Inflater(bool(flags & 2)) if flags & 1 else None
    conn = WebSocketConnection(max_message_size=LIMIT, inflater=inflater)
    step = (flags >> 2) + 1
    body = data[1:]
    try:
        for i in range(0, len(body), step):
            conn.receive_data(body[i : i + step])
            while True:
                event = conn.next_event()
                if event is None:
                    break
                size = len(getattr(event, 'data', b'') or b'')
                assert size <= LIMIT, size
        conn.receive_data(b'')
        while conn.next_event() is not None:
            pass
    except (ProtocolError, ConnectionTerminatedException):
        pass
    assert conn.bytes_to_send <= 4 * 1024 * 1024


if __name__ == '__main__':
    _common.run(target)
