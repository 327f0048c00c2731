"""A transport over a socket (plain or TLS) for the standalone server and
the client: the read/write surface of mod_python's connection, plus the
read timeout and readiness wait that closing and keepalive use."""

from __future__ import annotations

import re
import select
import socket
import ssl
import struct
import time
from typing import List, Optional


class SocketTransport:
    """`read(n)`, `write(data)` over a connected socket. Bytes read past an
    HTTP head (pipelined frames, draft-76 key3) are handed back first.
    `head` is the HTTP head that was read (get_memorized_lines())."""

    def __init__(
        self,
        sock: socket.socket,
        pending: bytes = b'',
        head: bytes = b'',
        remote_addr: Optional[tuple] = None,
    ) -> None:
        """`remote_addr`: the peer's address as accept() gave it (saves a
        getpeername() call); asked of the socket when not given."""
        self.sock = sock
        self._pending = pending
        self._head = head
        self._recv = sock.recv
        self._sendall = sock.sendall
        if remote_addr is None:
            try:
                remote_addr = sock.getpeername()
            except OSError:
                remote_addr = ('', 0)
        self.remote_addr = remote_addr
        self._local_addr: Optional[tuple] = None
        self.client_ip = str(remote_addr[0])
        self.aborted = 0
        # try_write() can write part of a buffer (not through TLS).
        self.nonblocking_writes = not isinstance(sock, ssl.SSLSocket)
        self._deadline: Optional[float] = None
        self._timed = sock.gettimeout() is not None

    def set_deadline(self, deadline: Optional[float]) -> None:
        """Bound every blocking read and write by `deadline` (a
        time.monotonic() value: the handshake's total bound) until called
        with None. A plain socket stays in blocking mode meanwhile: what
        is ready to read or write costs one system call, and only a call
        that has to wait sets a socket timeout first."""
        self._deadline = deadline
        if deadline is None and self._timed:
            self.sock.settimeout(None)
            self._timed = False

    def _until_deadline(self) -> None:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout('handshake deadline passed')
            self.sock.settimeout(left)
            self._timed = True

    @property
    def local_addr(self) -> tuple:
        """This socket's own address, asked of the socket on first use
        (most connections never need it: one system call saved)."""
        if self._local_addr is None:
            try:
                self._local_addr = self.sock.getsockname()
            except OSError:
                self._local_addr = ('', 0)
        return self._local_addr

    @local_addr.setter
    def local_addr(self, value: tuple) -> None:
        self._local_addr = value

    # pywebsocket3's getters on its standalone connection object.
    def get_remote_addr(self):
        """The peer's address, (host, port) (as `remote_addr`)."""
        return self.remote_addr

    def get_local_addr(self):
        """This socket's own address, (host, port) (as `local_addr`)."""
        return self.local_addr

    def get_memorized_lines(self) -> List[bytes]:
        """The lines of the HTTP request head, each with its line ending,
        the blank line that ends the head last (what pywebsocket3's
        standalone server memorized while reading the request)."""
        return re.findall(b'[^\n]*\n', self._head)

    def read(self, n: int) -> bytes:
        """Up to n bytes; b'' at EOF; TimeoutError when a read timeout
        set by set_read_timeout() expires."""
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        try:
            if self._deadline is not None:
                if self.nonblocking_writes and not self._timed:
                    try:
                        return self._recv(n, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        pass
                self._until_deadline()
            return self._recv(n)
        except (BlockingIOError, ssl.SSLWantReadError, socket.timeout):
            raise TimeoutError('no data within the read timeout')

    def take_pending(self) -> bytes:
        """Remove and return bytes read past the HTTP head and not yet
        handed out (an event loop reads the socket itself)."""
        data, self._pending = self._pending, b''
        return data

    def write(self, data) -> None:
        try:
            if self._deadline is not None:
                if self.nonblocking_writes and not self._timed:
                    try:
                        sent = self.sock.send(data, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    if sent == len(data):
                        return
                    data = memoryview(data)[sent:]
                self._until_deadline()
            self._sendall(data)
        except OSError:
            self.aborted = 1
            raise

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes without blocking; how many bytes
        went out (0 on TLS, where partial non-blocking writes are not
        offered)."""
        if isinstance(self.sock, ssl.SSLSocket):
            return 0
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self.aborted = 1
            raise

    def set_read_timeout(self, timeout: Optional[float]) -> None:
        """Bound blocking reads (keepalive, waiting for a close reply)
        with SO_RCVTIMEO: writes from other threads are not affected and
        reads cost no extra system call. None = no bound."""
        seconds = timeout or 0.0
        whole = int(seconds)
        micro = int((seconds - whole) * 1e6)
        if timeout and not whole and not micro:
            micro = 1
        try:
            self.sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_RCVTIMEO,
                struct.pack('ll', whole, micro),
            )
        except OSError:
            pass

    def shutdown(self) -> None:
        """Unblock any read or write on this socket (both directions)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def read_http_head(
    sock: socket.socket,
    max_size: int,
    deadline: Optional[float] = None,
    buffer: bytes = b'',
) -> tuple:
    """Read up to the blank line that ends an HTTP head; return (head,
    bytes read past it). ValueError when the head exceeds `max_size`;
    OSError / EOFError when the peer stops first or `deadline` (a
    time.monotonic() value) passes: a total bound, not one per read.
    `buffer`: what was already read of the head."""
    # A plain socket in blocking mode stays so: it is read without waiting
    # (MSG_DONTWAIT) and waited for with poll(), never given a timeout,
    # which would cost a system call to set and, for the 101 and the
    # hand-over that follow, more to clear.
    plain = not isinstance(sock, ssl.SSLSocket) and sock.gettimeout() is None
    poller = None
    while True:
        end = buffer.find(b'\r\n\r\n')
        if end >= 0:
            if end + 4 > max_size:
                raise ValueError('HTTP head over %d bytes' % max_size)
            return buffer[: end + 4], buffer[end + 4 :]
        if len(buffer) > max_size:
            raise ValueError('HTTP head over %d bytes' % max_size)
        if plain:
            try:
                data = sock.recv(8192, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                if poller is None:
                    poller = select.poll()
                    poller.register(sock, select.POLLIN)
                if deadline is None:
                    poller.poll()
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000.0 + 1.0):
                    raise OSError('timed out reading the HTTP head')
                continue
            if not data:
                raise EOFError('connection closed before the end of the head')
            buffer += data
            continue
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError('timed out reading the HTTP head')
            sock.settimeout(left)
        try:
            data = sock.recv(8192)
        except socket.timeout:
            raise OSError('timed out reading the HTTP head')
        if not data:
            raise EOFError('connection closed before the end of the head')
        buffer += data
