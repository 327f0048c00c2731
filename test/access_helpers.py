"""Raw WebSocket handshakes for the access-policy tests of both hosts:
any Host and Origin header, any source address (127.0.0.2 is another
client), the whole refusal response."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from typing import Dict, Optional, Tuple

from mod_pywebsocket import client
from mod_pywebsocket.common import HandshakeException


class Handshake:
    """One raw RFC 6455 / hybi-08 handshake; `sock` stays open on 101."""

    def __init__(
        self,
        port: int,
        path: str = '/echo',
        version: int = 13,
        origin: Optional[str] = None,
        host: Optional[str] = None,
        source: Optional[str] = None,
        timeout: float = 30.0,
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect(('127.0.0.1', port))
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            'GET %s HTTP/1.1' % path,
            'Host: %s' % (host or '127.0.0.1:%d' % port),
            'Upgrade: websocket',
            'Connection: Upgrade',
            'Sec-WebSocket-Key: ' + key,
            'Sec-WebSocket-Version: %d' % version,
        ]
        if origin is not None:
            lines.append(
                '%s: %s'
                % (
                    'Origin' if version == 13 else 'Sec-WebSocket-Origin',
                    origin,
                )
            )
        sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1'))
        buffer = b''
        while b'\r\n\r\n' not in buffer:
            data = sock.recv(65536)
            if not data:
                raise EOFError('EOF in the response head: %r' % buffer)
            buffer += data
        head, self.rest = buffer.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        self.status = int(lines[0].split()[1])
        self.headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            self.headers[name.strip().lower()] = value.strip()
        self.body = b''
        if self.status != 101:
            length = int(self.headers.get('content-length', '0'))
            self.body = self.rest
            while len(self.body) < length:
                data = sock.recv(65536)
                if not data:
                    break
                self.body += data
            self.close()

    def echo(self, text: str) -> str:
        """Send a masked text frame, return the text frame that comes
        back (short messages only)."""
        payload = text.encode()
        mask = os.urandom(4)
        self.sock.sendall(
            struct.pack('!BB', 0x81, 0x80 | len(payload))
            + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )
        data = self.rest
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('EOF before the echo')
            data += chunk
        self.rest = data[2 + (data[1] & 0x7F) :]
        return data[2 : 2 + (data[1] & 0x7F)].decode()

    def close_cleanly(self) -> None:
        """Closing handshake: send close 1000, wait for the answer."""
        mask = os.urandom(4)
        body = struct.pack('!H', 1000)
        self.sock.sendall(
            b'\x88\x82'
            + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        )
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.close()

    def close_abruptly(self) -> None:
        """No close frame: a TCP reset."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)
        )
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def client_status(url: str, version: int, origin: Optional[str]) -> int:
    """101 after an echo through our client, else the refusal status."""
    try:
        ws = client.connect(url, version=version, origin=origin, timeout=30)
    except HandshakeException as e:
        return e.status
    with ws:
        ws.send('hi')
        assert ws.receive() == 'hi'
    return 101


def wait_until(condition, timeout: float = 20.0, what: str = '') -> None:
    """Poll `condition` until it holds (AssertionError at the deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(0.02)


def open_with_retry(
    port: int, path: str, source: Optional[str] = None, timeout: float = 20.0
) -> Handshake:
    """A 101, retrying while the server still counts closed connections
    (it notices a vanished client a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        handshake = Handshake(port, path, source=source)
        if handshake.status == 101 or time.monotonic() > deadline:
            return handshake
        time.sleep(0.02)


def count_statuses(results) -> Tuple[int, int, int]:
    """(how many 101, how many 503, others) of Handshakes."""
    ok = sum(1 for h in results if h.status == 101)
    busy = sum(1 for h in results if h.status == 503)
    return ok, busy, len(results) - ok - busy
