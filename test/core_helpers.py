"""Helpers shared by the protocol-core unit tests: client-side frames with a
fixed masking key, parsing what a server wrote, and streams over MockConn."""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

from mock import MockConn, MockRequest

from mod_pywebsocket import common
from mod_pywebsocket.frame import Frame, FrameParser, create_header
from mod_pywebsocket.masking import mask_pure
from mod_pywebsocket.stream import Stream, StreamOptions

KEY = b'\x37\xfa\x21\x3d'  # the masking key of RFC 6455 section 5.7


def client_frame(
    opcode: int,
    payload: bytes = b'',
    fin: int = 1,
    rsv1: int = 0,
    rsv2: int = 0,
    rsv3: int = 0,
    key: bytes = KEY,
) -> bytes:
    """A masked frame as a client sends it, with a fixed key."""
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    return (
        create_header(opcode, len(payload), fin, rsv1, rsv2, rsv3, True)
        + key
        + mask_pure(payload, key)
    )


def client_text(text, fin: int = 1) -> bytes:
    return client_frame(common.OPCODE_TEXT, text, fin)


def client_close(code: Optional[int] = 1000, reason: bytes = b'') -> bytes:
    body = b'' if code is None else struct.pack('!H', code) + reason
    return client_frame(common.OPCODE_CLOSE, body)


def server_frames(data: bytes, allowed_rsv: int = 0) -> List[Frame]:
    """Every frame in what a server wrote (unmasked frames)."""
    parser = FrameParser(expect_masked=False, allowed_rsv=allowed_rsv)
    parser.feed(data)
    frames = []
    while True:
        frame = parser.next_frame()
        if frame is None:
            break
        frames.append(frame)
    assert parser.buffered() == 0, 'trailing bytes after the frames'
    return frames


def close_code_of(frame: Frame) -> Optional[int]:
    assert frame.opcode == common.OPCODE_CLOSE
    if not frame.payload:
        return None
    return struct.unpack('!H', frame.payload[:2])[0]


def written_close_codes(
    conn: MockConn, allowed_rsv: int = 0
) -> List[Optional[int]]:
    return [
        close_code_of(f)
        for f in server_frames(conn.written_data(), allowed_rsv)
        if f.opcode == common.OPCODE_CLOSE
    ]


def make_stream(
    data: bytes = b'',
    options: Optional[StreamOptions] = None,
    block_at_end: bool = False,
    chunk: Optional[int] = None,
    passive_closing_handler=None,
    **option_values,
) -> Tuple[MockRequest, MockConn, Stream]:
    """A server-side Stream over a MockConn that reads `data`; the
    StreamOptions fields given by name."""
    conn = MockConn(data, block_at_end=block_at_end, chunk=chunk)
    request = MockRequest(connection=conn)
    options = options or StreamOptions()
    for name, value in option_values.items():
        assert hasattr(options, name), name
        setattr(options, name, value)
    stream = Stream(
        request, options, passive_closing_handler=passive_closing_handler
    )
    request.ws_stream = stream
    return request, conn, stream


RFC6455_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
RFC6455_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='


def hybi_headers(**overrides) -> List[Tuple[str, str]]:
    """The headers of a valid RFC 6455 request; a value of None in
    `overrides` (underscores for dashes) removes the header."""
    headers = {
        'Host': 'server.example.com',
        'Upgrade': 'websocket',
        'Connection': 'Upgrade',
        'Sec-WebSocket-Key': RFC6455_KEY,
        'Origin': 'http://example.com',
        'Sec-WebSocket-Version': '13',
    }
    for name, value in overrides.items():
        name = name.replace('_', '-')
        match = [k for k in headers if k.lower() == name.lower()]
        for k in match:
            del headers[k]
        if value is not None:
            headers[match[0] if match else name] = value
    return list(headers.items())


def parse_response(data: bytes):
    """(status line, [(name, value)], body) of an HTTP response."""
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(': ')
        headers.append((name, value))
    return lines[0], headers, body


# draft-hixie-thewebsocketprotocol-76 section 1.3.
DRAFT76_KEY1 = '4 @1  46546xW%0l 1 5'
DRAFT76_KEY2 = '12998 5 Y3 1  .P00'
DRAFT76_KEY3 = b'^n:ds[4U'
DRAFT76_RESPONSE = b"8jKS'y:G*Co,Wxa-"


def draft76_headers(**overrides) -> List[Tuple[str, str]]:
    """The headers of the draft-76 example request; overrides as in
    hybi_headers."""
    headers = {
        'Host': 'example.com',
        'Connection': 'Upgrade',
        'Sec-WebSocket-Key2': DRAFT76_KEY2,
        'Sec-WebSocket-Protocol': 'sample',
        'Upgrade': 'WebSocket',
        'Sec-WebSocket-Key1': DRAFT76_KEY1,
        'Origin': 'http://example.com',
    }
    for name, value in overrides.items():
        name = name.replace('_', '-')
        match = [k for k in headers if k.lower() == name.lower()]
        for k in match:
            del headers[k]
        if value is not None:
            headers[match[0] if match else name] = value
    return list(headers.items())


def raw_websocket(
    port: int,
    path: str = '/echo',
    context=None,
    receive_buffer: Optional[int] = None,
):
    """A socket that completed an RFC 6455 handshake with a server on
    127.0.0.1 (byte by byte, so no frame is read past the 101)."""
    import socket

    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname='127.0.0.1')
    sock.sendall(
        (
            'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Upgrade: websocket\r\nConnection: Upgrade\r\n'
            'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
            '\r\n' % (path, RFC6455_KEY)
        ).encode('ascii')
    )
    read_101(sock)
    return sock


def read_101(sock) -> None:
    """Read a 101 response head byte by byte (no frame past it)."""
    head = b''
    while b'\r\n\r\n' not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b'HTTP/1.1 101 '), head
