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
- `IOOwner` serialises every call into Apache for one connection under a
  lock that is never held while waiting for the client to send. A reader
  reads itself, without blocking, under the lock, and sleeps in poll() on
  the socket and a wake eventfd without it (no thread, no hand-off per
  message). An h2 stream has no socket of its own: an I/O thread reads it
  ahead into a bounded buffer, polling with a short, backing-off
  interval. Senders write themselves, in order.
- With the C extension, a connection that has a socket is owned by
  `_speedups.SocketIO` instead: the same behaviour in C, so a read or
  write runs no Python code. `open_owner` makes the right owner; once a
  process has checked the conn_rec layout, in one C call.
- A write not done after `send_timeout` seconds is cut by a watchdog
  thread: the connection is dropped (socket shut down) and logged. A
  connection's close lets the watchdog go of it; the thread sleeps while
  no open connection of the process has written.

A read (get_brigade, flatten, cleanup) or a write (brigade_write, fflush,
cleanup) is one call into the C extension (`_speedups.apache_read` /
`apache_write`, given the addresses ctypes resolved) when it is built;
otherwise, or with MOD_PYWEBSOCKET_APACHE_CTYPES=1, three ctypes calls.
`IO_PATH` says which.

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
import stat
import struct
import sys
import termios
import threading
import time
from typing import Any, Callable, Optional, Set

from mod_pywebsocket.threads import start_daemon

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

READ_CHUNK = 65536  # bytes per read call
WRITE_CHUNK = 65536  # bytes per write call (reads go in between)
INBOUND_LIMIT = 262144  # read ahead of the handler at most this much
H2_POLL_MIN = 0.001  # seconds: h2 read polling, right after data
H2_POLL_MAX = 0.02  # ... and when idle
DEFAULT_SEND_TIMEOUT = 30.0
# seconds between the watchdog's checks of stuck writes, while it has any
# to watch (an eighth of the shortest send timeout, within these bounds)
WATCHDOG_INTERVAL_MIN = 0.05
WATCHDOG_INTERVAL_MAX = 5.0


_C_NAMES = (
    'apache_read',
    'apache_write',
    'apache_open',
    'peek',
    'SocketIO',
    'socket_io_open',
)


def _c_functions() -> tuple:
    """(apache_read, apache_write, apache_open, peek, SocketIO,
    socket_io_open, why not) from the C extension: all of them or none."""
    if os.environ.get('MOD_PYWEBSOCKET_APACHE_CTYPES', '').strip() not in (
        '',
        '0',
    ):
        return (None,) * len(_C_NAMES) + (
            'MOD_PYWEBSOCKET_APACHE_CTYPES is set',
        )
    try:
        from mod_pywebsocket import _speedups
    except ImportError:
        return (None,) * len(_C_NAMES) + ('the C extension is not built',)
    found = tuple(getattr(_speedups, name, None) for name in _C_NAMES)
    if None in found:
        return (None,) * len(_C_NAMES) + ('the C extension is an older build',)
    return found + (None,)


(
    _c_read,
    _c_write,
    _c_open,
    _c_peek,
    _c_socket_io,
    _c_socket_io_open,
    _c_missing,
) = _c_functions()
# The path reads and writes take: 'C extension' or 'ctypes (why)'.
IO_PATH = 'C extension' if _c_missing is None else 'ctypes (%s)' % _c_missing


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
        self.os_sock_get = bind(
            'apr_os_sock_get', i, ctypes.POINTER(ctypes.c_int), vp
        )
        self.brigade_create = bind('apr_brigade_create', vp, vp, vp)
        self.brigade_flatten = bind(
            'apr_brigade_flatten', i, vp, ctypes.c_char_p, ctypes.POINTER(sz)
        )
        self.brigade_cleanup = bind('apr_brigade_cleanup', i, vp)
        self.brigade_write = bind(
            'apr_brigade_write', i, vp, vp, vp, ctypes.c_char_p, sz
        )
        # For the C extension, in its orders.
        self.open_addresses = function_addresses(
            self.get_conn_socket, self.os_sock_get, self.brigade_create
        )
        self.addresses = function_addresses(
            self.get_brigade,
            self.brigade_flatten,
            self.brigade_cleanup,
            self.brigade_write,
            self.fflush,
        )


def function_addresses(*functions: Any) -> tuple:
    """The addresses of ctypes functions (what the C extension calls)."""
    return tuple(
        ctypes.cast(function, ctypes.c_void_p).value for function in functions
    )


_apache: Optional[_Apache] = None
_apache_lock = threading.Lock()


def _bindings() -> _Apache:
    global _apache
    with _apache_lock:
        if _apache is None:
            _apache = _Apache()
        return _apache


def _peek(address: int, offsets: tuple) -> tuple:
    """The pointer-sized words at `address` + each offset (0 for NULL)."""
    if _c_peek is not None:
        return _c_peek(address, offsets)
    return tuple(
        ctypes.c_void_p.from_address(address + offset).value or 0
        for offset in offsets
    )


def _string(address: int) -> Optional[bytes]:
    return ctypes.c_char_p.from_address(address).value


_CONN_FIELDS = (
    _CONN_POOL,
    _CONN_INPUT_FILTERS,
    _CONN_OUTPUT_FILTERS,
    _CONN_BUCKET_ALLOC,
)
_CONN_ID_AND_FIELDS = (_CONN_ID,) + _CONN_FIELDS


class ConnectionIO:
    """Reads and writes through the filters of one `conn_rec`. Not
    thread-safe: one thread (the IOOwner's) uses it."""

    def __init__(
        self, conn_rec: int, socket: bool = True, tls: bool = False
    ) -> None:
        """`socket`: find the connection's socket (`fd`, None if it has
        none); an h2 stream has none of its own."""
        self._api = api = _bindings()
        pool, self.input_filter, self.output_filter, bucket_alloc = _peek(
            conn_rec, _CONN_FIELDS
        )
        self.fd: Optional[int] = None
        if _c_open is not None:
            self.brigade, fd = _c_open(
                api.open_addresses, conn_rec, pool, bucket_alloc, socket
            )
            if fd >= 0:
                self.fd = fd
        else:
            if socket:
                self.fd = _socket_fd(conn_rec)
            self.brigade = api.brigade_create(pool, bucket_alloc)
        self.functions = api.addresses
        if _c_read is None:
            # ctypes only. Sized by the first read (the stream reads 8 KiB
            # at a time): no 64 KiB zeroed per connection.
            self._buffer = ctypes.create_string_buffer(0)
            self._view = memoryview(self._buffer)
            self._size = ctypes.c_size_t()
            self._size_ref = ctypes.byref(self._size)
        self.tls = tls  # through mod_ssl
        # The last read left nothing in Apache: poll the socket before
        # the next (a read that would only say "nothing yet" is skipped).
        self.drained = False

    def read(self, block: bool = False, size: int = READ_CHUNK) -> tuple:
        """(status, bytes): up to `size` bytes (at most INBOUND_LIMIT).
        Non-blocking, b'' with status 0 or EAGAIN means nothing yet."""
        if size > INBOUND_LIMIT:
            size = INBOUND_LIMIT
        elif size < 1:
            size = 1
        if _c_read is not None:
            status, data = _c_read(
                self.functions, self.input_filter, self.brigade, block, size
            )
            # Fewer than asked: see below.
            self.drained = (
                status != _APR_SUCCESS or len(data) < size and not self.tls
            )
            return status, data
        api = self._api
        brigade = self.brigade
        if size > len(self._view):
            self._buffer = ctypes.create_string_buffer(size)
            self._view = memoryview(self._buffer)
        try:
            status = api.get_brigade(
                self.input_filter,
                brigade,
                _AP_MODE_READBYTES,
                _APR_BLOCK_READ if block else _APR_NONBLOCK_READ,
                size,
            )
            if status != _APR_SUCCESS:
                self.drained = True
                return status, b''
            # READBYTES returns at most `size` bytes: all of them fit.
            self._size.value = size
            status = api.brigade_flatten(brigade, self._buffer, self._size_ref)
            got = self._size.value
            # Fewer than asked: Apache's buffers are empty (the core input
            # filter reads until the socket would block); mod_ssl may
            # still hold a decrypted record, so TLS is never taken as
            # drained.
            self.drained = got < size and not self.tls
            return status, self._view[:got].tobytes() if got else b''
        finally:
            api.brigade_cleanup(brigade)

    def write(self, data: bytes) -> int:
        """Write and flush `data` (bytes; blocking, GIL released); APR
        status."""
        if _c_write is not None:
            return _c_write(
                self.functions, self.output_filter, self.brigade, data
            )
        api = self._api
        brigade = self.brigade
        try:
            status = api.brigade_write(brigade, None, None, data, len(data))
            if status == _APR_SUCCESS:
                status = api.fflush(self.output_filter, brigade)
            return status
        finally:
            api.brigade_cleanup(brigade)


def prepare() -> Optional[str]:
    """Resolve the Apache functions and start the send watchdog now (in
    an Apache process, when the host module is imported) rather than on
    a child's first connection; why not, or None. Harmless to repeat."""
    try:
        _bindings()
    except (OSError, AttributeError) as e:
        return 'Apache symbols not found: %s' % e
    _watchdog.start()
    return None


def attach(connection: Any, http2: bool = False, tls: bool = False) -> tuple:
    """(ConnectionIO, None) for a mod_python connection, or (None, why)
    when its conn_rec cannot be reached safely (then the caller keeps
    mod_python's own read/write)."""
    if type(connection).__name__ != 'mp_conn':
        return None, 'not a mod_python 3 connection object: %s' % (
            type(connection).__name__
        )
    try:
        _bindings()
    except (OSError, AttributeError) as e:
        return None, 'Apache symbols not found: %s' % e
    (conn_rec,) = _peek(id(connection), (_MPCONN_CONN,))
    if not conn_rec:
        return None, 'no conn_rec'
    if not _layout_matches(connection, conn_rec):
        return None, 'conn_rec layout not recognised'
    io = ConnectionIO(conn_rec, not http2, tls)
    if not http2 and io.fd is None:
        return None, 'no socket for the connection'
    return io, None


_layout_confirmed = False  # the full check passed once in this process


def _layout_matches(connection: Any, conn_rec: int) -> bool:
    """Whether `conn_rec` is `connection`'s: its id, client and local
    address where our offsets say. The layout is the build's, so after
    one full match a process checks the id only."""
    global _layout_confirmed
    try:
        if _peek(conn_rec, (_CONN_ID,))[0] != connection.id:
            return False
        if _layout_confirmed:
            return True
        _layout_confirmed = (
            _string(conn_rec + _CONN_CLIENT_IP)
            == str(connection.client_ip).encode()
            and _string(conn_rec + _CONN_LOCAL_IP)
            == str(connection.local_ip).encode()
        )
    except (AttributeError, ValueError, UnicodeError):
        return False
    return _layout_confirmed


def _socket_fd(conn_rec: int) -> Optional[int]:
    api = _bindings()
    apr_socket = api.get_conn_socket(conn_rec)
    if not apr_socket:
        return None
    fd = ctypes.c_int(-1)
    if api.os_sock_get(ctypes.byref(fd), apr_socket) != _APR_SUCCESS:
        return None
    # (one fstat: a socket object to check it with would cost a dup,
    # getsockopt, getsockname and close per connection)
    try:
        if not stat.S_ISSOCK(os.fstat(fd.value).st_mode):
            return None
    except OSError:
        return None
    return fd.value


def _wake_channel() -> tuple:
    """(read fd, write fd, bytes a wake-up writes), non-blocking: one
    eventfd where there is one (a single descriptor), else a pipe."""
    eventfd = getattr(os, 'eventfd', None)
    if eventfd is not None:
        fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return fd, fd, (1).to_bytes(8, sys.byteorder)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end, b'x'


def _started(
    deadline: Optional[float], timeout: Optional[float]
) -> Optional[float]:
    """`deadline`, or one `timeout` from now when none is set yet (None
    without a timeout)."""
    if deadline is None and timeout is not None:
        return time.monotonic() + timeout
    return deadline


def _remaining(deadline: Optional[float], timeout: Optional[float]) -> float:
    """Seconds to `deadline`, -1 (no limit) without one; TimeoutError (no
    data within `timeout`) once it has passed."""
    if deadline is None:
        return -1
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError('no data within %.3f s' % (timeout or 0.0))
    return remaining


def _readable_bytes(fd: int) -> int:
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, b'\0\0\0\0')
        return struct.unpack('i', raw)[0]
    except OSError:
        return 0


def open_owner(
    connection: Any,
    http2: bool = False,
    tls: bool = False,
    name: str = '-',
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    idle_timeout: Optional[float] = None,
) -> tuple:
    """(transport, None): what owns the I/O of a mod_python connection
    from now on (see attach and owner_for); (None, why) when its conn_rec
    cannot be reached safely (then the caller keeps mod_python's own
    read/write). Once a process has checked the conn_rec layout, a
    connection with a socket takes one C call."""
    if (
        _layout_confirmed
        and _c_socket_io_open is not None
        and not http2
        and type(connection).__name__ == 'mp_conn'
    ):
        api = _apache or _bindings()
        owner = _c_socket_io_open(
            id(connection) + _MPCONN_CONN,
            connection.id,
            _CONN_ID_AND_FIELDS,
            api.open_addresses,
            api.addresses,
            tls,
            name,
            send_timeout,
            idle_timeout,
            _watchdog.watch,
            _log_drop,
        )
        if owner is not None:
            return owner, None
    io, why = attach(connection, http2, tls)
    if io is None:
        return None, why
    return owner_for(io, name, send_timeout, idle_timeout), None


def owner_for(
    io: ConnectionIO,
    name: str = '-',
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    idle_timeout: Optional[float] = None,
) -> Any:
    """The transport that owns `io` from now on: for a connection with a
    socket, the C extension's SocketIO when it is built (IOOwner's socket
    path in C: no Python frames per read or write); else an IOOwner."""
    if _c_socket_io is not None and io.fd is not None:
        _watchdog.start()
        return _c_socket_io(
            io.functions,
            io.input_filter,
            io.output_filter,
            io.brigade,
            io.fd,
            io.tls,
            name,
            send_timeout,
            idle_timeout,
            _watchdog.watch,
            _log_drop,
        )
    return IOOwner(io, name, send_timeout, idle_timeout)


def _log_drop(name: str, reason: str) -> None:
    _logger.warning('%s: %s', name, reason)


class IOOwner:
    """The transport of a WebSocket stream under Apache: `read(n)`,
    `write(data)`, `set_read_timeout(t)`, `shutdown()`.

    Every call into Apache for this connection is made under one lock that
    is never held while waiting for the client to send: reads do not
    block (the reader, or for h2 the I/O thread, sleeps in poll() without
    the lock); a sender writes itself, blocking without the GIL. A write
    that has not finished after `send_timeout` is cut by the watchdog."""

    nonblocking_writes = False

    # The state every connection starts in (class defaults: fewer stores
    # per connection); guarded by _cond once it changes.
    _eof = False
    _error: Optional[str] = None  # why the connection is dead
    write_started: Optional[float] = None  # of the write under way
    _stopping = False
    closed = False  # close() has returned: the socket is Apache's again
    # Wakes a reader sleeping in poll(); made by the first reader that
    # has to wait (most short connections never do).
    _wake_r = _wake_w = -1
    _wake_bytes = b''
    _watched = False  # by the send watchdog
    # what the watchdog's watch() returned: close() lets go with it
    _release: Optional[Callable[[Any], None]] = None
    aborted = 0
    wrote = False  # a write was begun (no HTTP error response after it)
    # The reader's poll() of the socket and the wake channel, made once.
    _poll: Optional[Any] = None
    # An h2 stream has no socket to poll: a thread reads it ahead,
    # polling. A plain or TLS connection is read by whoever calls read():
    # no thread, no hand-off per message.
    _thread: Optional[threading.Thread] = None

    def __init__(
        self,
        io: ConnectionIO,
        name: str = '-',
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        idle_timeout: Optional[float] = None,
    ) -> None:
        self._io = io
        self._name = name
        self.send_timeout = send_timeout
        self._idle_timeout = idle_timeout
        self._read_timeout = idle_timeout
        self._io_lock = threading.Lock()  # held inside Apache calls
        self._cond = threading.Condition()  # guards the state
        self._inbound = bytearray()
        _watchdog.start()
        if io.fd is None:
            self._open_wake_channel()
            # The thread logs in the context of the request (client, vhost).
            self._thread = start_daemon(
                contextvars.copy_context().run, 'ws-apache-io', (self._run,)
            )

    # ---- transport API (other threads) ----------------------------------

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; b'' at EOF; TimeoutError after the read
        timeout; OSError once the connection failed."""
        if self._thread is None:
            return self._read_socket(size)
        if not self._inbound:
            # What the kernel already holds is read on this thread (no
            # hand-off through the I/O thread), unless a write is using
            # the connection.
            self._read_here(size)
        with self._cond:
            deadline = (
                None
                if self._read_timeout is None
                else time.monotonic() + self._read_timeout
            )
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
                    raise TimeoutError(
                        'no data within %.3f s' % (self._read_timeout or 0.0)
                    )
                self._cond.wait(remaining)
            was_full = len(self._inbound) >= INBOUND_LIMIT
            data = self._pop(size)
        if was_full:
            self._wake()
        return data

    def _open_wake_channel(self) -> None:
        """The wake channel, unless there is one; OSError once close()
        has begun (nothing would wake a reader that sleeps now)."""
        with self._cond:
            if self._wake_r >= 0:
                return
            if self._stopping:
                raise OSError('the WebSocket request has ended')
            self._wake_r, self._wake_w, self._wake_bytes = _wake_channel()

    def _new_poll(self, fd: int) -> Any:
        self._open_wake_channel()
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.register(self._wake_r, select.POLLIN)
        return poll

    def _wait_readable(
        self, fd: int, deadline: Optional[float], timeout: Optional[float]
    ) -> bool:
        """Sleep in poll() (no lock held) until the socket is readable,
        a wake-up or `deadline` (then TimeoutError: no data within
        `timeout`); whether the socket is readable."""
        remaining = _remaining(deadline, timeout)
        wait = None if remaining < 0 else remaining * 1000
        poll = self._poll
        if poll is None:
            poll = self._poll = self._new_poll(fd)
        try:
            events = poll.poll(wait)
        except RuntimeError:  # another thread is reading: a poll of its own
            events = self._new_poll(fd).poll(wait)
        for ready, _ in events:
            if ready == fd:
                return True
        return False

    def _pop(self, size: int) -> bytes:
        # Called with self._cond held.
        inbound = self._inbound
        if size >= len(inbound):
            data = bytes(inbound)
            inbound.clear()
        else:
            with memoryview(inbound) as view:
                data = bytes(view[:size])
            del inbound[:size]
        return data

    def _read_socket(self, size: int) -> bytes:
        """read() of a connection with a socket, on the calling thread:
        non-blocking reads under the I/O lock, poll() without it. The
        bytes go straight to the caller (only this path reads such a
        connection); the read timeout counts from the first wait."""
        io = self._io
        fd = io.fd
        assert fd is not None
        lock = self._io_lock
        timeout = self._read_timeout
        deadline: Optional[float] = None  # set before the first wait
        readable = False  # poll() said so since the last read
        while True:
            if self._eof:
                return b''
            if self._error is not None:
                raise OSError(self._error)
            if io.drained and not readable:
                # The last read emptied Apache's buffers: wait first.
                deadline = _started(deadline, timeout)
                readable = self._wait_readable(fd, deadline, timeout)
                continue
            # A write may hold the connection until its client reads.
            if not lock.acquire(False):
                deadline = _started(deadline, timeout)
                if not lock.acquire(timeout=_remaining(deadline, timeout)):
                    continue
            try:
                if self._error is not None:
                    continue
                status, data = io.read(size=size)
                if not data:
                    self._take(status, data)
            finally:
                lock.release()
            if data:
                return data
            if status not in (_APR_SUCCESS, _APR_EAGAIN):
                readable = False
            elif readable:
                # Polled readable, yet nothing came: closed?
                self._check_closed(fd)
                readable = False
            else:
                deadline = _started(deadline, timeout)
                readable = self._wait_readable(fd, deadline, timeout)

    def write(self, data: Any) -> None:
        """Write `data` (blocking, without the GIL); OSError once the
        connection failed or after `send_timeout` without the client
        taking it (the connection is then dropped)."""
        data = bytes(data)
        if not data:
            return
        if not self._io_lock.acquire(timeout=self.send_timeout):
            with self._cond:
                self._drop(self._timeout_message())
            self._check_alive()
        try:
            self._check_alive()
            if not self._watched:
                self._release = _watchdog.watch(self)
                self._watched = True
            self.wrote = True
            self.write_started = time.monotonic()
            try:
                status = self._io.write(data)
            finally:
                self.write_started = None
        finally:
            self._io_lock.release()
        if status != _APR_SUCCESS:
            with self._cond:
                if self._error is None:
                    self._error = 'write failed (APR status %d)' % status
                    self._cond.notify_all()
                self.aborted = 1
            self._check_alive()

    def _timeout_message(self) -> str:
        return (
            'the client did not read for %.1f s (send timeout): '
            'connection dropped' % self.send_timeout
        )

    def _check_alive(self) -> None:
        if self._error is not None:
            self.aborted = 1
            raise OSError(self._error)

    def set_read_timeout(self, timeout: Optional[float]) -> None:
        """Bound reads (keepalive, close wait); None: the idle timeout."""
        with self._cond:
            self._read_timeout = (
                timeout if timeout is not None else self._idle_timeout
            )

    def shutdown(self) -> None:
        """Cut the connection (unblocks a write in progress)."""
        with self._cond:
            self._drop('connection shut down')

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the I/O thread and wait for any write under way (cut after
        `timeout`). Afterwards the connection is Apache's again."""
        with self._cond:
            self._stopping = True
            self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if not self._io_lock.acquire(timeout=timeout or 0.001):
            self.shutdown()  # a write stuck: cut it
            self._io_lock.acquire()
        with self._cond:
            if self._error is None:
                self._error = 'the WebSocket request has ended'
            self.closed = True
        self._io_lock.release()
        release, self._release = self._release, None
        if release is not None:
            release(self)  # (not kept by the watchdog until its check)
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            wake_fds = {self._wake_r, self._wake_w} - {-1}
            self._wake_r = self._wake_w = -1
        for fd in wake_fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def check_send_timeout(self, now: float) -> None:
        """Drop the connection when a write has taken too long."""
        started = self.write_started
        if started is not None and now - started >= self.send_timeout:
            with self._cond:
                self._drop(self._timeout_message())

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
        if fd is not None and not self.closed:
            import socket  # (a connection dropped on the ctypes path)

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
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, self._wake_bytes)
        except (BlockingIOError, OSError):
            pass

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # never leave the reader waiting
            _logger.error('%s: I/O thread failed: %r', self._name, e)
            with self._cond:
                if self._error is None:
                    self._error = 'I/O thread failed: %r' % e
                self._cond.notify_all()

    def _loop(self) -> None:
        fd = self._io.fd
        idle = H2_POLL_MIN
        while True:
            with self._cond:
                if self._error is not None or self._stopping:
                    self._cond.notify_all()
                    return
                room = not self._eof and len(self._inbound) < INBOUND_LIMIT
            if room and self._read_available():
                idle = H2_POLL_MIN
            poll = select.poll()
            poll.register(self._wake_r, select.POLLIN)
            if fd is not None:
                if room:
                    poll.register(fd, select.POLLIN)
                events = poll.poll()
            else:  # h2: no socket to watch
                events = poll.poll(idle * 1000 if room else None)
                idle = min(idle * 2, H2_POLL_MAX)
            for ready, _ in events:
                if ready == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                if not self._read_available():
                    self._check_closed(ready)

    def _read_here(self, size: int) -> None:
        """One non-blocking read of up to `size` bytes on the calling
        thread, if the connection is free (a writer may hold it until its
        client reads)."""
        if not self._io_lock.acquire(blocking=False):
            return
        try:
            if self._error is None and not self._eof:
                self._take(*self._io.read(size=size))
        finally:
            self._io_lock.release()

    def _read_available(self) -> bool:
        """Read without blocking while there is room; whether any bytes
        came."""
        got = False
        while True:
            with self._io_lock:
                if self._error is not None:
                    return got
                status, data = self._io.read()
                # Queued under the I/O lock: bytes keep the order in
                # which they were read, whichever thread read them.
                room = self._take(status, data)
            if not data:
                return got
            got = True
            if not room:
                return got

    def _check_closed(self, fd: int) -> None:
        """The socket polled readable and a read gave nothing: another
        thread took the bytes, mod_ssl kept a partial record, or the
        client closed. Decided under the I/O lock (no read in between):
        a socket still readable with no bytes in the kernel is at its
        end."""
        with self._io_lock:
            ready = select.poll()
            ready.register(fd, select.POLLIN)
            if ready.poll(0) and _readable_bytes(fd) == 0:
                self._end_of_input('connection closed by the client')

    def _take(self, status: int, data: bytes) -> bool:
        """Queue what a read returned (its status: end of input); whether
        there is room for more."""
        if data:
            with self._cond:
                self._inbound += data
                self._cond.notify_all()
                return len(self._inbound) < INBOUND_LIMIT
        if status not in (_APR_SUCCESS, _APR_EAGAIN):
            self._end_of_input('end of input (APR status %d)' % status)
        return False

    def _end_of_input(self, reason: str) -> None:
        with self._cond:
            if not self._eof:
                _logger.debug('%s: %s', self._name, reason)
                self._eof = True
                self._cond.notify_all()


class _Watchdog:
    """One thread per process that cuts writes stuck past their owner's
    send timeout (a blocked write cannot watch itself).

    An owner's first write registers it (`watch`). While the thread holds
    owners it checks them every eighth of the shortest send timeout it
    has seen (WATCHDOG_INTERVAL_MIN to _MAX seconds) and lets go of those
    that have closed; holding none, it sleeps until the next `watch`: an
    idle child, or one between short connections, spends nothing on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # IOOwners and SocketIOs, until the thread finds them closed
        self.owners: Set[Any] = set()
        self._add = self.owners.add
        self._discard = self.owners.discard
        self.interval = WATCHDOG_INTERVAL_MAX
        self._shortest = float('inf')  # send timeout of the owners seen
        # the thread waits for an owner, without a timeout
        self.sleeping = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread (once per process; owners are made after)."""
        if self._thread is not None:
            return
        with self._cond:
            if self._thread is None:
                self._thread = start_daemon(self._run, 'ws-send-watchdog')

    def watch(self, owner: Any) -> Callable[[Any], None]:
        """Watch `owner` (on its first write); returns what its close
        calls with it, so that a closed owner is let go at once."""
        self._add(owner)
        timeout = owner.send_timeout
        # (the thread sets `sleeping` before it looks at `owners` for the
        # last time: either it sees this owner or this sees it sleeping;
        # a timeout of None or <= 0 is none)
        if self.sleeping or (
            timeout is not None and 0 < timeout < self._shortest
        ):
            self._wake(timeout)
        return self._discard

    def _wake(self, send_timeout: Optional[float]) -> None:
        """Wake the thread; from now on check as often as `send_timeout`
        needs."""
        with self._cond:
            if send_timeout is not None and 0 < send_timeout < self._shortest:
                self._shortest = send_timeout
                self.interval = min(
                    self.interval, _check_interval(send_timeout)
                )
            self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                self.sleeping = True
                if not self.owners:
                    cond.wait()
                self.sleeping = False
                cond.wait(self.interval)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """Drop the connections whose write has taken too long; forget
        owners that have closed."""
        for owner in list(self.owners):  # (atomic: a set copied in C)
            if owner.closed:
                self.owners.discard(owner)
                continue
            try:
                owner.check_send_timeout(now)
            except Exception as e:
                _logger.error('send watchdog: %r', e)


def _check_interval(send_timeout: float) -> float:
    """How often the watchdog checks writes for `send_timeout`: a stuck
    write is cut at most an eighth of its timeout late."""
    return min(
        max(send_timeout / 8, WATCHDOG_INTERVAL_MIN), WATCHDOG_INTERVAL_MAX
    )


_watchdog = _Watchdog()
