"""Helpers of the hostile-client suite (test/hostile/): the standalone
server as a subprocess (so its RSS and CPU time can be read from /proc),
and a raw WebSocket client that sends what a hostile client sends."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Iterator, List, Optional, Tuple

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port

_PAGE = 4096


class ServerProcess:
    """`python -m mod_pywebsocket.standalone` on a free loopback port;
    its log goes to a file (`log()`), its memory and CPU time are read
    from /proc."""

    def __init__(
        self,
        *args: str,
        document_root: str = EXAMPLE_DIR,
        preexec=None,
        start_timeout: float = 20.0,
    ) -> None:
        self.port = free_port()
        self._log = tempfile.NamedTemporaryFile(
            'w+b', prefix='hostile-', suffix='.log', delete=False
        )
        argv = [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(self.port),
            '-d',
            document_root,
            '--log-level',
            'info',
            *args,
        ]
        # (HOSTILE_SERVER_ROOT: run another tree's server, e.g. the code
        # before a fix, to see a test fail there)
        root = os.environ.get('HOSTILE_SERVER_ROOT', ROOT_DIR)
        env = dict(os.environ, PYTHONPATH=root, PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=root,
            preexec_fn=preexec,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + start_timeout
        line = b''
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if b'serving' in line or not line:
                break
        if b'serving' not in line:
            self.stop()
            raise AssertionError(
                'server did not start: %r %s' % (line, self.log())
            )
        self.pid = self.proc.pid

    def rss_mib(self) -> float:
        """Resident set size now (VmRSS), MiB."""
        with open('/proc/%d/status' % self.pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
        raise AssertionError('no VmRSS for %d' % self.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        with open('/proc/%d/stat' % self.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def log(self) -> str:
        with open(self._log.name, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def terminate(self) -> None:
        self.proc.terminate()

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        os.unlink(self._log.name)

    def __enter__(self) -> 'ServerProcess':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    return sock


def request_head(path: str = '/echo', extra: Tuple[str, ...] = ()) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode('ascii')
    lines = [
        'GET %s HTTP/1.1' % path,
        'Host: 127.0.0.1',
        'Upgrade: websocket',
        'Connection: Upgrade',
        'Sec-WebSocket-Key: ' + key,
        'Sec-WebSocket-Version: 13',
        *extra,
    ]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')


def read_head(sock: socket.socket) -> bytes:
    """The response head (through the blank line), nothing more."""
    data = b''
    while b'\r\n\r\n' not in data:
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
    return data


def open_ws(
    port: int,
    path: str = '/echo',
    extra: Tuple[str, ...] = (),
    timeout: float = 10.0,
) -> socket.socket:
    """A socket past a successful RFC 6455 handshake."""
    sock = connect(port, timeout)
    sock.sendall(request_head(path, extra))
    head = read_head(sock)
    assert head.startswith(b'HTTP/1.1 101'), head
    return sock


def frame(
    opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False
) -> bytes:
    """A masked client frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack('!BB', first, 0x80 | n)
    elif n < 65536:
        header = struct.pack('!BBH', first, 0x80 | 126, n)
    else:
        header = struct.pack('!BBQ', first, 0x80 | 127, n)
    mask = os.urandom(4)
    if payload:
        body = (
            int.from_bytes(payload, 'big')
            ^ int.from_bytes((mask * (n // 4 + 1))[:n], 'big')
        ).to_bytes(n, 'big')
    else:
        body = b''
    return header + mask + body


def frame_header(
    opcode: int, length: int, fin: bool = True, rsv1: bool = False
) -> bytes:
    """The header of a masked client frame with an all-zero mask (the
    payload then goes as is): for payloads streamed in pieces."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return struct.pack('!BB', first, 0x80 | length) + b'\0' * 4
    if length < 65536:
        return struct.pack('!BBH', first, 0x80 | 126, length) + b'\0' * 4
    return struct.pack('!BBQ', first, 0x80 | 127, length) + b'\0' * 4


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError('closed after %d of %d bytes' % (len(data), n))
        data += chunk
    return data


def read_frame(sock: socket.socket) -> Tuple[int, bytes]:
    """(opcode, payload) of the next server frame (unmasked)."""
    first, second = _recv_exactly(sock, 2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack('!H', _recv_exactly(sock, 2))[0]
    elif n == 127:
        n = struct.unpack('!Q', _recv_exactly(sock, 8))[0]
    return first & 0x0F, _recv_exactly(sock, n)


def close_code(payload: bytes) -> Optional[int]:
    return struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else None


def read_until_close(sock: socket.socket, limit: int = 10000) -> Optional[int]:
    """Read frames until a close; its code (None: the socket ended)."""
    try:
        for _ in range(limit):
            opcode, payload = read_frame(sock)
            if opcode == 8:
                return close_code(payload)
    except (EOFError, OSError):
        return None
    raise AssertionError('no close within %d frames' % limit)


def echo_round_trip(sock: socket.socket, text: bytes = b'ping?') -> float:
    """Seconds for one text message to come back (pongs skipped)."""
    start = time.monotonic()
    sock.sendall(frame(1, text))
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 1:
            assert payload == text
            return time.monotonic() - start


def deflate_bomb(size: int) -> bytes:
    """permessage-deflate payload of `size` zero bytes (tail removed)."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b'\0' * 65536
    parts: List[bytes] = []
    left = size
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    data = b''.join(parts)
    assert data.endswith(b'\0\0\xff\xff')
    return data[:-4]


def sockets(n: int, *args, **kwargs) -> Iterator[socket.socket]:
    for _ in range(n):
        yield open_ws(*args, **kwargs)
