"""apache_io.ConnectionIO's two paths (the C extension's apache_read /
apache_write, and ctypes) against a stand-in for Apache's filter and
brigade functions made of ctypes callbacks: the same bytes, statuses and
calls through either."""

from __future__ import annotations

import ctypes
import errno

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


class FakeApache:
    """The subset of apache_io._Apache that ConnectionIO uses: a client
    that has sent `incoming` (then EOF or EAGAIN), and what was flushed
    to it."""

    def __init__(self, incoming: bytes = b'', eof: bool = True) -> None:
        self.incoming = bytearray(incoming)
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
        self.brigade_create = lambda pool, alloc: BRIGADE
        self.addresses = tuple(
            ctypes.cast(f, vp).value
            for f in (
                self.get_brigade,
                self.brigade_flatten,
                self.brigade_cleanup,
                self.brigade_write,
                self.fflush,
            )
        )

    def _bind(self, function, inner, outer):
        callback = ctypes.CFUNCTYPE(i, *inner)(function)
        self._keep.append(callback)
        address = ctypes.cast(callback, vp).value
        return ctypes.CFUNCTYPE(i, *outer)(address)


def _connection(monkeypatch, api, path: str, tls: bool = False):
    monkeypatch.setattr(apache_io, '_apache', api)
    if path == 'ctypes':
        monkeypatch.setattr(apache_io, '_c_read', None)
        monkeypatch.setattr(apache_io, '_c_write', None)
    else:
        monkeypatch.setattr(apache_io, '_c_read', _speedups.apache_read)
        monkeypatch.setattr(apache_io, '_c_write', _speedups.apache_write)
    conn_rec = (ctypes.c_void_p * 20)()
    for offset, value in (
        (apache_io._CONN_POOL, POOL),
        (apache_io._CONN_INPUT_FILTERS, INPUT),
        (apache_io._CONN_OUTPUT_FILTERS, OUTPUT),
        (apache_io._CONN_BUCKET_ALLOC, ALLOC),
    ):
        conn_rec[offset // 8] = value
    return apache_io.ConnectionIO(ctypes.addressof(conn_rec), None, tls)


PATHS = ['ctypes', pytest.param('C', marks=needs_c)]


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
    assert api.calls[:3] == [
        ('brigade_write', BRIGADE, None, None, 5),
        ('fflush', OUTPUT, BRIGADE),
        ('cleanup', BRIGADE),
    ]
    api.write_status = 32  # EPIPE
    assert io.write(b'lost') == 32
    assert api.calls[-1] == ('cleanup', BRIGADE)
    assert not api.brigade


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
    assert apache_io._c_functions() == (
        None,
        None,
        'MOD_PYWEBSOCKET_APACHE_CTYPES is set',
    )
    monkeypatch.setenv('MOD_PYWEBSOCKET_APACHE_CTYPES', '0')
    read, write, why = apache_io._c_functions()
    assert (why is None) == HAS_C
