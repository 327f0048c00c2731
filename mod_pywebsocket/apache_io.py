"""One owner of each WebSocket connection's I/O under Apache.

mod_python's `connection.read()` and `write()` must never run at the same
time on one connection (they share the connection's pool and bucket
allocator), `write()` holds the GIL while a client does not read, and each
call allocates from the connection's pool for the connection's lifetime.
So after the 101 a WebSocket's bytes do not go through mod_python at all:

- `ConnectionIO` calls Apache's own filter API through ctypes on the
  `conn_rec` behind the mod_python connection (`ap_get_brigade`,
  `ap_fflush`), with one brigade reused for every call. Reads can be
  non-blocking; calls release the GIL. Through the connection's filters,
  mod_ssl (wss) and mod_http2 (h2 streams) work unchanged, and bytes
  Apache already buffered after the handshake come out first.
- `IOOwner` runs one thread per connection, the only one that touches the
  connection after the handshake: it writes what senders hand it, reads
  (non-blocking) into a bounded buffer while the handler has room, and
  sleeps in poll() on the socket and a wake pipe. An h2 stream has no
  socket of its own: its owner polls with a short, backing-off interval.
- Senders wait for their bytes to go out at most `send_timeout` seconds;
  then the connection is dropped (socket shut down) and logged.

Nothing here imports mod_python.
"""

from __future__ import annotations

import contextvars
import ctypes
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import termios
import threading
import time
from typing import Any, Optional

_logger = logging.getLogger(__name__)

# httpd 2.4 include/httpd.h, struct conn_rec (LP64): field offsets.
_CONN_ID = 80
_CONN_CLIENT_IP = 40
_CONN_LOCAL_IP = 64
_CONN_POOL = 0
_CONN_INPUT_FILTERS = 104
_CONN_OUTPUT_FILTERS = 112
_CONN_BUCKET_ALLOC = 128
# mod_python 3.5 connobject: PyObject_HEAD, then conn_rec *conn.
_MPCONN_CONN = 2 * ctypes.sizeof(ctypes.c_void_p)

_AP_MODE_READBYTES = 0
_APR_BLOCK_READ = 0
_APR_NONBLOCK_READ = 1
_APR_SUCCESS = 0
_APR_EAGAIN = errno.EAGAIN

READ_CHUNK = 65536           # bytes per read call
WRITE_CHUNK = 65536          # bytes per write call (reads go in between)
INBOUND_LIMIT = 262144       # read ahead of the handler at most this much
H2_POLL_MIN = 0.001          # seconds: h2 read polling, right after data
H2_POLL_MAX = 0.02           # ... and when idle
DEFAULT_SEND_TIMEOUT = 30.0


class _Apache:
    """ctypes prototypes of the httpd / APR functions used (resolved in
    the Apache process's global symbols)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None)
        vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        off = ctypes.c_int64

        def bind(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
            return function

        self.get_brigade = bind('ap_get_brigade', i, vp, vp, i, i, off)
        self.fflush = bind('ap_fflush', i, vp, vp)
        self.get_conn_socket = bind('ap_get_conn_socket', vp, vp)
        self.os_sock_get = bind('apr_os_sock_get', i,
                                ctypes.POINTER(ctypes.c_int), vp)
        self.brigade_create = bind('apr_brigade_create', vp, vp, vp)
        self.brigade_length = bind('apr_brigade_length', i, vp, i,
                                   ctypes.POINTER(off))
        self.brigade_flatten = bind('apr_brigade_flatten', i, vp,
                                    ctypes.c_char_p, ctypes.POINTER(sz))
        self.brigade_cleanup = bind('apr_brigade_cleanup', i, vp)
        self.brigade_write = bind('apr_brigade_write', i, vp, vp, vp,
                                  ctypes.c_char_p, sz)


_apache: Optional[_Apache] = None
_apache_lock = threading.Lock()


def _bindings() -> _Apache:
    global _apache
    with _apache_lock:
        if _apache is None:
            _apache = _Apache()
        return _apache


def _pointer(address: int) -> int:
    return ctypes.c_void_p.from_address(address).value or 0


def _string(address: int) -> Optional[bytes]:
    return ctypes.c_char_p.from_address(address).value


class ConnectionIO:
    """Reads and writes through the filters of one `conn_rec`. Not
    thread-safe: one thread (the IOOwner's) uses it."""

    def __init__(self, conn_rec: int, fd: Optional[int]) -> None:
        self._api = api = _bindings()
        self._input = _pointer(conn_rec + _CONN_INPUT_FILTERS)
        self._output = _pointer(conn_rec + _CONN_OUTPUT_FILTERS)
        self._brigade = api.brigade_create(
            _pointer(conn_rec + _CONN_POOL),
            _pointer(conn_rec + _CONN_BUCKET_ALLOC))
        self._buffer = ctypes.create_string_buffer(READ_CHUNK)
        self._length = ctypes.c_int64()
        self._size = ctypes.c_size_t()
        self.fd = fd

    def read(self, block: bool = False) -> tuple:
        """(status, bytes): up to READ_CHUNK bytes. Non-blocking, b'' with
        status 0 or EAGAIN means nothing yet."""
        api = self._api
        brigade = self._brigade
        try:
            status = api.get_brigade(
                self._input, brigade, _AP_MODE_READBYTES,
                _APR_BLOCK_READ if block else _APR_NONBLOCK_READ,
                READ_CHUNK)
            if status != _APR_SUCCESS:
                return status, b''
            api.brigade_length(brigade, 1, ctypes.byref(self._length))
            if self._length.value <= 0:
                return status, b''
            self._size.value = min(self._length.value, READ_CHUNK)
            status = api.brigade_flatten(brigade, self._buffer,
                                         ctypes.byref(self._size))
            return status, self._buffer.raw[:self._size.value]
        finally:
            api.brigade_cleanup(brigade)

    def write(self, data: bytes) -> int:
        """Write and flush `data` (blocking, GIL released); APR status."""
        api = self._api
        brigade = self._brigade
        try:
            status = api.brigade_write(brigade, None, None, data, len(data))
            if status == _APR_SUCCESS:
                status = api.fflush(self._output, brigade)
            return status
        finally:
            api.brigade_cleanup(brigade)


def attach(connection: Any, http2: bool = False) -> tuple:
    """(ConnectionIO, None) for a mod_python connection, or (None, why)
    when its conn_rec cannot be reached safely (then the caller keeps
    mod_python's own read/write)."""
    if type(connection).__name__ != 'mp_conn':
        return None, 'not a mod_python 3 connection object: %s' % (
            type(connection).__name__)
    try:
        _bindings()
    except (OSError, AttributeError) as e:
        return None, 'Apache symbols not found: %s' % e
    conn_rec = _pointer(id(connection) + _MPCONN_CONN)
    if not conn_rec:
        return None, 'no conn_rec'
    try:
        ok = (ctypes.c_long.from_address(conn_rec + _CONN_ID).value
              == connection.id
              and _string(conn_rec + _CONN_CLIENT_IP)
              == str(connection.client_ip).encode()
              and _string(conn_rec + _CONN_LOCAL_IP)
              == str(connection.local_ip).encode())
    except (AttributeError, ValueError, UnicodeError):
        ok = False
    if not ok:
        return None, 'conn_rec layout not recognised'
    fd = None if http2 else _socket_fd(conn_rec)
    if not http2 and fd is None:
        return None, 'no socket for the connection'
    return ConnectionIO(conn_rec, fd), None


def _socket_fd(conn_rec: int) -> Optional[int]:
    api = _bindings()
    apr_socket = api.get_conn_socket(conn_rec)
    if not apr_socket:
        return None
    fd = ctypes.c_int(-1)
    if api.os_sock_get(ctypes.byref(fd), apr_socket) != _APR_SUCCESS:
        return None
    try:
        sock = socket.socket(fileno=os.dup(fd.value))
    except OSError:
        return None
    try:
        sock.getpeername()
    except OSError:
        return None
    finally:
        sock.close()
    return fd.value


def _readable_bytes(fd: int) -> int:
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, b'\0\0\0\0')
        return struct.unpack('i', raw)[0]
    except OSError:
        return 0


class IOOwner:
    """The transport of a WebSocket stream under Apache: `read(n)`,
    `write(data)`, `set_read_timeout(t)`, `shutdown()`, served by one I/O
    thread per connection. Writes from any thread are taken one at a time,
    in order; `read` is for the one receiving thread."""

    nonblocking_writes = False

    def __init__(self, io: ConnectionIO, name: str = '-',
                 send_timeout: float = DEFAULT_SEND_TIMEOUT,
                 idle_timeout: Optional[float] = None) -> None:
        self._io = io
        self._name = name
        self.send_timeout = send_timeout
        self._idle_timeout = idle_timeout
        self._read_timeout = idle_timeout
        self._cond = threading.Condition()
        self._inbound = bytearray()
        self._eof = False
        self._error: Optional[str] = None     # why the connection is dead
        self._out: Optional[memoryview] = None
        self._out_done = 0                    # writes completed
        self._out_started = 0                 # writes handed over
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.aborted = 0
        # The thread logs in the context of the request (client, vhost).
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,),
            daemon=True, name='ws-apache-io')
        self._thread.start()

    # ---- transport API (other threads) ----------------------------------

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; b'' at EOF; TimeoutError after the read
        timeout; OSError once the connection failed."""
        with self._cond:
            deadline = (None if self._read_timeout is None
                        else time.monotonic() + self._read_timeout)
            while not self._inbound:
                if self._eof:
                    return b''
                if self._error is not None:
                    raise OSError(self._error)
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError('no data within %.3f s'
                                       % self._read_timeout)
                self._cond.wait(remaining)
            was_full = len(self._inbound) >= INBOUND_LIMIT
            data = bytes(self._inbound[:size])
            del self._inbound[:size]
        if was_full:
            self._wake()
        return data

    def write(self, data: Any) -> None:
        """Hand `data` to the I/O thread and wait until it is written;
        after `send_timeout` the client is taken as not reading: the
        connection is dropped and OSError raised."""
        data = memoryview(bytes(data))
        if not data:
            return
        with self._cond:
            deadline = time.monotonic() + self.send_timeout
            while self._out is not None and self._error is None:
                if not self._wait_until(deadline):
                    self._drop('the client did not read for %.1f s (send '
                               'timeout): connection dropped'
                               % self.send_timeout)
            self._check_alive()
            self._out = data
            self._out_started += 1
            ticket = self._out_started
            self._wake()
            while self._out_done < ticket and self._error is None:
                if not self._wait_until(deadline):
                    self._drop('the client did not read for %.1f s (send '
                               'timeout): connection dropped'
                               % self.send_timeout)
                    break
            if self._out_done < ticket:
                self._check_alive()

    def _wait_until(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._cond.wait(remaining)
        return True

    def _check_alive(self) -> None:
        if self._error is not None:
            self.aborted = 1
            raise OSError(self._error)

    def set_read_timeout(self, timeout: Optional[float]) -> None:
        """Bound reads (keepalive, close wait); None: the idle timeout."""
        with self._cond:
            self._read_timeout = (timeout if timeout is not None
                                  else self._idle_timeout)

    def shutdown(self) -> None:
        """Cut the connection (unblocks a write in progress)."""
        with self._cond:
            self._drop('connection shut down')

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the I/O thread once what is handed over is written; wait
        for it. Afterwards the connection is Apache's again."""
        with self._cond:
            self._stopping = True
            self._wake()
        self._thread.join(timeout)
        if self._thread.is_alive():        # a write stuck: cut it
            self.shutdown()
            self._thread.join()
        with self._cond:
            if self._error is None:
                self._error = 'the WebSocket request has ended'
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- the I/O thread ------------------------------------------------

    def _drop(self, reason: str) -> None:
        # Called with self._cond held.
        if self._error is None:
            self._error = reason
            if reason != 'connection shut down':
                _logger.warning('%s: %s', self._name, reason)
            self._cond.notify_all()
        self.aborted = 1
        fd = self._io.fd
        if fd is not None:
            try:
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.close()
            except OSError:
                pass
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b'x')
        except (BlockingIOError, OSError):
            pass

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:            # never leave senders waiting
            _logger.error('%s: I/O thread failed: %r', self._name, e)
            with self._cond:
                if self._error is None:
                    self._error = 'I/O thread failed: %r' % e
                self._cond.notify_all()

    def _loop(self) -> None:
        io = self._io
        idle = H2_POLL_MIN
        while True:
            with self._cond:
                out = self._out
                if self._error is not None or (self._stopping
                                               and out is None):
                    self._cond.notify_all()
                    return
                room = (not self._eof
                        and len(self._inbound) < INBOUND_LIMIT)
            if out is not None:
                self._write_chunk(out)
            got = self._read_available() if room else False
            if out is not None:
                continue
            if got:
                idle = H2_POLL_MIN
            poll = select.poll()
            poll.register(self._wake_r, select.POLLIN)
            if io.fd is not None:
                if room:
                    poll.register(io.fd, select.POLLIN)
                events = poll.poll()
            else:                              # h2: no socket to watch
                events = poll.poll(idle * 1000 if room else None)
                idle = min(idle * 2, H2_POLL_MAX)
            for fd, _ in events:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                # Readable with nothing in the kernel: EOF or an error
                # (asked first: mod_ssl may take a partial record).
                waiting = _readable_bytes(fd)
                if not self._read_available() and waiting == 0:
                    self._end_of_input('connection closed by the client')

    def _write_chunk(self, out: memoryview) -> None:
        chunk = out[:WRITE_CHUNK]
        status = self._io.write(chunk.tobytes())
        with self._cond:
            if status != _APR_SUCCESS:
                self._drop_quietly('write failed (APR status %d)' % status)
                return
            rest = out[WRITE_CHUNK:]
            if rest:
                self._out = rest
            else:
                self._out = None
                self._out_done += 1
                self._cond.notify_all()

    def _drop_quietly(self, reason: str) -> None:
        # A failed write: the client went away; the stream logs it.
        if self._error is None:
            self._error = reason
            self._cond.notify_all()
        self.aborted = 1

    def _read_available(self) -> bool:
        """Read without blocking while there is room; whether any bytes
        came."""
        got = False
        while True:
            status, data = self._io.read()
            if data:
                got = True
                with self._cond:
                    self._inbound += data
                    self._cond.notify_all()
                    if len(self._inbound) >= INBOUND_LIMIT:
                        return got
                continue
            if status not in (_APR_SUCCESS, _APR_EAGAIN):
                self._end_of_input('end of input (APR status %d)' % status)
            return got

    def _end_of_input(self, reason: str) -> None:
        with self._cond:
            if not self._eof:
                _logger.debug('%s: %s', self._name, reason)
                self._eof = True
                self._cond.notify_all()
