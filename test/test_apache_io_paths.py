"""apache_io.ConnectionIO's two paths (the C extension's apache_read /
apache_write, and ctypes) against a stand-in for Apache's filter and
brigade functions made of ctypes callbacks: the same bytes, statuses and
calls through either."""

from __future__ import annotations

import ctypes
import errno
import os
import socket as socket_module

import pytest

from mod_pywebsocket import apache_io

try:
    from mod_pywebsocket import _speedups
except ImportError:  # pragma: no cover - no compiler
    _speedups = None

HAS_C = _speedups is not None and hasattr(_speedups, 'apache_read')
needs_c = pytest.mark.skipif(not HAS_C, reason='C extension not built')

vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
APR_EOF = 70014
INPUT, OUTPUT, BRIGADE, POOL, ALLOC = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
SOCKET = 0x6000


class FakeApache:
    """The subset of apache_io._Apache that ConnectionIO uses: a client
    that has sent `incoming` (then EOF or EAGAIN), and what was flushed
    to it."""

    def __init__(
        self, incoming: bytes = b'', eof: bool = True, fd: int = -1
    ) -> None:
        self.incoming = bytearray(incoming)
        self.fd = fd  # what apr_os_sock_get gives (-1: it fails)
        self.eof = eof
        self.brigade = bytearray()
        self.sent: list = []
        self.calls: list = []
        self.write_status = 0
        self._keep = []

        def get_brigade(f, bb, mode, block, readbytes):
            self.calls.append(('get_brigade', f, bb, mode, block, readbytes))
            if not self.incoming:
                return APR_EOF if self.eof else errno.EAGAIN
            self.brigade += self.incoming[:readbytes]
            del self.incoming[:readbytes]
            return 0

        def flatten(bb, buf, lenp):
            self.calls.append(('flatten', bb))
            n = min(lenp[0], len(self.brigade))
            ctypes.memmove(buf, bytes(self.brigade[:n]), n)
            lenp[0] = n
            return 0

        def cleanup(bb):
            self.calls.append(('cleanup', bb))
            self.brigade.clear()
            return 0

        def brigade_write(bb, flush, ctx, data, n):
            self.calls.append(('brigade_write', bb, flush, ctx, n))
            self.brigade += ctypes.string_at(data, n)
            return 0

        def fflush(f, bb):
            self.calls.append(('fflush', f, bb))
            if self.write_status == 0:
                self.sent.append(bytes(self.brigade))
            return self.write_status

        def get_conn_socket(conn_rec):
            self.calls.append(('get_conn_socket', conn_rec))
            return SOCKET if self.fd != -2 else None

        def os_sock_get(fdp, sock):
            self.calls.append(('os_sock_get', sock))
            fdp[0] = self.fd
            return 0 if self.fd >= 0 else 22

        def brigade_create(pool, alloc):
            self.calls.append(('brigade_create', pool, alloc))
            return BRIGADE

        # Callbacks take void pointers; callers see apache_io's prototypes.
        self.get_brigade = self._bind(
            get_brigade,
            (vp, vp, i, i, ctypes.c_int64),
            (vp, vp, i, i, ctypes.c_int64),
        )
        self.brigade_flatten = self._bind(
            flatten,
            (vp, vp, ctypes.POINTER(sz)),
            (vp, ctypes.c_char_p, ctypes.POINTER(sz)),
        )
        self.brigade_cleanup = self._bind(cleanup, (vp,), (vp,))
        self.brigade_write = self._bind(
            brigade_write,
            (vp, vp, vp, vp, sz),
            (vp, vp, vp, ctypes.c_char_p, sz),
        )
        self.fflush = self._bind(fflush, (vp, vp), (vp, vp))
        self.get_conn_socket = self._bind(
            get_conn_socket, (vp,), (vp,), restype=vp
        )
        self.os_sock_get = self._bind(
            os_sock_get,
            (ctypes.POINTER(i), vp),
            (ctypes.POINTER(i), vp),
        )
        self.brigade_create = self._bind(
            brigade_create, (vp, vp), (vp, vp), restype=vp
        )

    # What the C extension calls, as apache_io._Apache gives them.
    @property
    def open_addresses(self):
        return apache_io.function_addresses(
            self.get_conn_socket, self.os_sock_get, self.brigade_create
        )

    @property
    def addresses(self):
        return apache_io.function_addresses(
            self.get_brigade,
            self.brigade_flatten,
            self.brigade_cleanup,
            self.brigade_write,
            self.fflush,
        )

    def _bind(self, function, inner, outer, restype=i):
        callback = ctypes.CFUNCTYPE(restype, *inner)(function)
        self._keep.append(callback)
        address = ctypes.cast(callback, vp).value
        return ctypes.CFUNCTYPE(restype, *outer)(address)


def use_path(monkeypatch, api, path: str) -> None:
    """apache_io calls `api` for Apache, through ctypes only or (C) the
    C extension's functions."""
    monkeypatch.setattr(apache_io, '_apache', api)
    for name, attribute in C_ATTRIBUTES.items():
        monkeypatch.setattr(
            apache_io,
            attribute,
            None if path == 'ctypes' else getattr(_speedups, name),
        )


def make_conn_rec(conn_id: int = 0):
    """A conn_rec with the stand-in's pool, filters and bucket
    allocator."""
    conn_rec = (ctypes.c_void_p * 20)()
    for offset, value in (
        (apache_io._CONN_ID, conn_id),
        (apache_io._CONN_POOL, POOL),
        (apache_io._CONN_INPUT_FILTERS, INPUT),
        (apache_io._CONN_OUTPUT_FILTERS, OUTPUT),
        (apache_io._CONN_BUCKET_ALLOC, ALLOC),
    ):
        conn_rec[offset // 8] = value or None
    return conn_rec


def _connection(
    monkeypatch, api, path: str, tls: bool = False, socket: bool = False
):
    use_path(monkeypatch, api, path)
    conn_rec = api.conn_rec = make_conn_rec()
    return apache_io.ConnectionIO(ctypes.addressof(conn_rec), socket, tls)


PATHS = ['ctypes', pytest.param('C', marks=needs_c)]
# What apache_io binds each C function to.
C_ATTRIBUTES = {
    'apache_read': '_c_read',
    'apache_write': '_c_write',
    'apache_open': '_c_open',
    'peek': '_c_peek',
    'SocketIO': '_c_socket_io',
    'socket_io_open': '_c_socket_io_open',
}


@pytest.mark.parametrize('path', PATHS)
def test_reads_bytes_status_and_drained(monkeypatch, path):
    payload = bytes(range(256)) * 2000
    api = FakeApache(payload)
    io = _connection(monkeypatch, api, path)
    got = []
    for size in (1, 2, 8192, 65536, 10**9, 10**9):
        left = len(payload) - sum(map(len, got))
        status, data = io.read(size=size)
        assert status == 0
        assert type(data) is bytes
        assert len(data) == min(size, apache_io.INBOUND_LIMIT, left)
        assert io.drained == (len(data) < min(size, apache_io.INBOUND_LIMIT))
        got.append(data)
    assert b''.join(got) == payload
    assert io.drained  # fewer than asked
    assert io.read(size=5) == (APR_EOF, b'')
    assert io.drained
    reads = [c for c in api.calls if c[0] == 'get_brigade']
    assert reads[0] == ('get_brigade', INPUT, BRIGADE, 0, 1, 1)  # NONBLOCK
    assert [c[0] for c in api.calls[-2:]] == ['get_brigade', 'cleanup']
    assert api.calls.count(('cleanup', BRIGADE)) == len(reads)


@pytest.mark.parametrize('path', PATHS)
def test_read_nothing_yet_blocking_and_tls(monkeypatch, path):
    api = FakeApache(b'', eof=False)
    io = _connection(monkeypatch, api, path, tls=True)
    assert io.read(size=10) == (errno.EAGAIN, b'')
    api.incoming += b'abc'
    assert io.read(block=True, size=10) == (0, b'abc')
    assert not io.drained  # TLS: mod_ssl may hold more
    assert api.calls[-3][4] == 0  # APR_BLOCK_READ


@pytest.mark.parametrize('path', PATHS)
def test_writes_and_their_status(monkeypatch, path):
    api = FakeApache()
    io = _connection(monkeypatch, api, path)
    assert io.write(b'hello') == 0
    assert io.write(b'\0' * 100000 + b'x') == 0
    assert api.sent == [b'hello', b'\0' * 100000 + b'x']
    assert api.calls[:4] == [
        ('brigade_create', POOL, ALLOC),
        ('brigade_write', BRIGADE, None, None, 5),
        ('fflush', OUTPUT, BRIGADE),
        ('cleanup', BRIGADE),
    ]
    api.write_status = 32  # EPIPE
    assert io.write(b'lost') == 32
    assert api.calls[-1] == ('cleanup', BRIGADE)
    assert not api.brigade


@pytest.mark.parametrize('path', PATHS)
def test_open_finds_the_socket_and_makes_one_brigade(monkeypatch, path):
    a, b = socket_module.socketpair()
    with a, b:
        api = FakeApache(fd=a.fileno())
        io = _connection(monkeypatch, api, path, socket=True)
        assert io.fd == a.fileno()
        assert api.calls == [
            ('get_conn_socket', ctypes.addressof(api.conn_rec)),
            ('os_sock_get', SOCKET),
            ('brigade_create', POOL, ALLOC),
        ]
        assert io.write(b'x') == 0  # through that brigade
        assert api.calls[-1] == ('cleanup', BRIGADE)


@pytest.mark.parametrize('path', PATHS)
def test_open_without_a_usable_socket(monkeypatch, path):
    read_end, write_end = os.pipe()
    try:
        for fd in (read_end, -1, -2):  # not a socket; no fd; no apr socket
            api = FakeApache(fd=fd)
            io = _connection(monkeypatch, api, path, socket=True)
            assert io.fd is None
            assert ('brigade_create', POOL, ALLOC) in api.calls
    finally:
        os.close(read_end)
        os.close(write_end)
    api = FakeApache(fd=0)
    io = _connection(monkeypatch, api, path, socket=False)  # h2: not asked
    assert io.fd is None
    assert api.calls == [('brigade_create', POOL, ALLOC)]


@needs_c
def test_c_open_rejects_bad_arguments():
    fns = FakeApache().open_addresses
    for args, error in (
        ((), TypeError),
        ((fns[:2], 1, POOL, ALLOC, True), TypeError),
        ((list(fns), 1, POOL, ALLOC, True), TypeError),
        ((fns[:2] + (0,), 1, POOL, ALLOC, True), ValueError),
        ((fns, 0, POOL, ALLOC, True), ValueError),
        ((fns, 1, None, ALLOC, True), TypeError),
        ((fns, 1, POOL, -5, True), ValueError),
    ):
        with pytest.raises(error):
            _speedups.apache_open(*args)


@needs_c
def test_c_functions_reject_bad_arguments():
    fns = FakeApache().addresses
    read, write = _speedups.apache_read, _speedups.apache_write
    for args, error in (
        ((), TypeError),
        ((fns[:4], INPUT, BRIGADE, False, 5), TypeError),
        ((list(fns), INPUT, BRIGADE, False, 5), TypeError),
        ((fns[:4] + (None,), INPUT, BRIGADE, False, 5), TypeError),
        ((fns[:4] + (0,), INPUT, BRIGADE, False, 5), ValueError),
        ((fns, 0, BRIGADE, False, 5), ValueError),
        ((fns, INPUT, -1, False, 5), ValueError),
        ((fns, INPUT, 'x', False, 5), TypeError),
        ((fns, INPUT, BRIGADE, False, 0), ValueError),
        ((fns, INPUT, BRIGADE, False, 1 << 30), ValueError),
    ):
        with pytest.raises(error):
            read(*args)
    for args, error in (
        ((fns, OUTPUT, BRIGADE), TypeError),
        ((fns, OUTPUT, BRIGADE, bytearray(b'x')), TypeError),
        ((fns, OUTPUT, BRIGADE, 'x'), TypeError),
        ((fns, None, BRIGADE, b'x'), TypeError),
        ((fns, OUTPUT, 0, b'x'), ValueError),
    ):
        with pytest.raises(error):
            write(*args)


def test_io_path_names_the_path_and_the_switch(monkeypatch):
    monkeypatch.setenv('MOD_PYWEBSOCKET_APACHE_CTYPES', '1')
    assert apache_io._c_functions() == (None,) * len(C_ATTRIBUTES) + (
        'MOD_PYWEBSOCKET_APACHE_CTYPES is set',
    )
    monkeypatch.setenv('MOD_PYWEBSOCKET_APACHE_CTYPES', '0')
    *found, why = apache_io._c_functions()
    assert (why is None) == HAS_C
    assert found == (
        [None] * len(C_ATTRIBUTES)
        if why
        else [getattr(_speedups, name) for name in apache_io._C_NAMES]
    )


@pytest.mark.parametrize('path', PATHS)
def test_peek_reads_the_words_at_each_offset(monkeypatch, path):
    monkeypatch.setattr(
        apache_io, '_c_peek', None if path == 'ctypes' else _speedups.peek
    )
    words = (ctypes.c_void_p * 4)(7, None, 2**64 - 1, 0x1234)
    assert apache_io._peek(ctypes.addressof(words), (0, 8, 16, 24, 0)) == (
        7,
        0,
        2**64 - 1,
        0x1234,
        7,
    )
    assert apache_io._peek(ctypes.addressof(words), ()) == ()


@needs_c
def test_c_peek_rejects_bad_arguments():
    words = (ctypes.c_void_p * 2)(1, 2)
    for args, error in (
        ((), TypeError),
        ((0, (0,)), ValueError),
        ((ctypes.addressof(words), [0]), TypeError),
        ((ctypes.addressof(words), (3,)), ValueError),  # unaligned
        ((ctypes.addressof(words), (-8,)), ValueError),
        ((ctypes.addressof(words), ('0',)), TypeError),
    ):
        with pytest.raises(error):
            _speedups.peek(*args)


def test_prepare_binds_apache_ahead_of_the_first_connection(monkeypatch):
    # Outside Apache the symbols are missing: a reason, no exception (the
    # host module calls prepare() when it is imported).
    monkeypatch.setattr(apache_io, '_apache', None)
    why = apache_io.prepare()
    assert why is not None and 'Apache symbols not found' in why
    assert apache_io._apache is None
    # Inside Apache: the bindings are made and the watchdog runs before
    # any connection.
    made = []

    class Bindings:
        def __init__(self):
            made.append(self)

    watchdog = apache_io._Watchdog()
    monkeypatch.setattr(apache_io, '_Apache', Bindings)
    monkeypatch.setattr(apache_io, '_watchdog', watchdog)
    assert apache_io.prepare() is None
    assert apache_io._apache is made[0]
    assert watchdog._thread is not None and watchdog._thread.is_alive()
    assert apache_io.prepare() is None and len(made) == 1
