"""The transport of a connection with a socket under Apache, as
apache_io.owner_for makes it: the C extension's SocketIO, or IOOwner on
the ctypes path. Both are driven over a real socketpair through a
stand-in for Apache's filter functions (ctypes callbacks that read and
write the socket), and must behave the same: bytes in order, waits
without busy loops, timeouts, end of input, failed and stuck writes,
close."""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import os
import socket
import threading
import time
import weakref

import pytest

from mod_pywebsocket import apache_io
from test_apache_io_paths import (
    ALLOC,
    APR_EOF,
    INPUT,
    OUTPUT,
    POOL,
    SOCKET,
    FakeApache,
    _speedups,
    make_conn_rec,
    needs_c,
    use_path,
)

PATHS = ['ctypes', pytest.param('C', marks=needs_c)]


class SocketApache(FakeApache):
    """Apache's filters over the server end of a socketpair: reads take
    what the kernel holds without blocking (EAGAIN when nothing; EOF, or
    EAGAIN like mod_ssl holding a partial record, at the end); writes
    block until the client has taken the bytes."""

    def __init__(self, sock: socket.socket, eof_status: int = APR_EOF):
        super().__init__(fd=sock.fileno())
        self.sock = sock
        self.eof_status = eof_status
        self.reads = 0
        outer = self

        def get_brigade(f, bb, mode, block, readbytes):
            outer.reads += 1
            try:
                data = sock.recv(readbytes, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return errno.EAGAIN
            except OSError as e:
                return e.errno
            if not data:
                return outer.eof_status
            outer.brigade += data
            return 0

        def fflush(f, bb):
            try:
                sock.sendall(bytes(outer.brigade))
            except OSError as e:
                return e.errno
            return 0

        vp, i = ctypes.c_void_p, ctypes.c_int
        self.get_brigade = self._bind(
            get_brigade,
            (vp, vp, i, i, ctypes.c_int64),
            (vp, vp, i, i, ctypes.c_int64),
        )
        self.fflush = self._bind(fflush, (vp, vp), (vp, vp))


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    # small buffers: a client that stops reading blocks a write soon
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield server, client
    server.close()
    client.close()


def _owner(
    monkeypatch,
    path,
    server,
    send_timeout=5.0,
    idle_timeout=None,
    eof_status=APR_EOF,
):
    api = SocketApache(server, eof_status)
    use_path(monkeypatch, api, path)
    conn_rec = make_conn_rec()
    io = apache_io.ConnectionIO(ctypes.addressof(conn_rec), True)
    assert io.fd == server.fileno()
    owner = apache_io.owner_for(io, 'peer-1', send_timeout, idle_timeout)
    expected = 'IOOwner' if path == 'ctypes' else 'SocketIO'
    assert type(owner).__name__ == expected
    return owner, api


def _in_thread(function, *args):
    result = {}

    def run():
        try:
            result['value'] = function(*args)
        except BaseException as e:  # noqa: B036 (reported to the test)
            result['error'] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize('path', PATHS)
def test_bytes_arrive_in_order_and_a_reader_sleeps_until_they_do(
    monkeypatch, pair, path
):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server)
    client.sendall(b'hello')
    assert owner.read(8192) == b'hello'
    thread, result = _in_thread(owner.read, 8192)
    time.sleep(0.3)
    reads_while_idle = api.reads
    time.sleep(0.3)
    assert api.reads == reads_while_idle  # asleep in poll(), no busy loop
    assert thread.is_alive()
    client.sendall(b'world')
    thread.join(5)
    assert result == {'value': b'world'}
    owner.write(b'answer')
    owner.write(bytearray(b'!'))
    owner.write(b'')
    client.settimeout(5)
    assert client.recv(100) == b'answer!'
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
def test_read_timeout_and_the_idle_timeout(monkeypatch, pair, path):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server, idle_timeout=0.4)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match='no data within 0.400 s'):
        owner.read(10)
    assert 0.3 < time.monotonic() - started < 5
    owner.set_read_timeout(0.1)
    with pytest.raises(TimeoutError, match='no data within 0.100 s'):
        owner.read(10)
    owner.set_read_timeout(None)  # back to the idle timeout
    with pytest.raises(TimeoutError, match='0.400 s'):
        owner.read(10)
    client.sendall(b'late')  # a timeout loses nothing
    assert owner.read(10) == b'late'
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('eof_status', [APR_EOF, errno.EAGAIN])
def test_a_client_that_closes_ends_the_input(
    monkeypatch, pair, path, eof_status
):
    """EOF from Apache, or (mod_ssl with a partial record) only "nothing
    yet" while the socket says it is at its end."""
    server, client = pair
    owner, api = _owner(monkeypatch, path, server, eof_status=eof_status)
    client.sendall(b'last words')
    client.shutdown(socket.SHUT_WR)
    assert owner.read(100) == b'last words'
    thread, result = _in_thread(owner.read, 100)
    thread.join(5)
    assert result == {'value': b''}
    assert owner.read(100) == b''
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
def test_a_failed_write_kills_the_connection(monkeypatch, pair, path):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server)
    client.close()
    with pytest.raises(OSError, match=r'write failed \(APR status 32\)'):
        for _ in range(100):  # (the first may still be buffered)
            owner.write(b'x' * 4096)
    assert owner.aborted == 1
    with pytest.raises(OSError, match='write failed'):
        owner.read(10)
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
def test_a_stuck_write_is_cut_by_the_watchdog_and_logged(
    monkeypatch, pair, path, caplog
):
    watched = []
    monkeypatch.setattr(apache_io._watchdog, 'watch', watched.append)
    owner, api = _owner(monkeypatch, path, pair[0], send_timeout=0.5)
    owner.write(b'first')
    assert watched == [owner]
    thread, result = _in_thread(owner.write, b'x' * 10**6)  # never read
    time.sleep(0.3)
    assert owner.write_started is not None
    owner.check_send_timeout(time.monotonic())  # too early: nothing
    assert thread.is_alive()
    with caplog.at_level(logging.WARNING, logger='mod_pywebsocket.apache_io'):
        owner.check_send_timeout(time.monotonic() + 1)
        thread.join(5)
    assert not thread.is_alive()
    assert isinstance(result.get('error'), OSError)
    assert 'peer-1: the client did not read for 0.5 s' in caplog.text
    assert caplog.text.count('did not read') == 1
    assert owner.aborted == 1
    assert owner.write_started is None
    assert watched == [owner]  # registered once
    with pytest.raises(OSError, match='send timeout'):
        owner.read(10)
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
def test_the_watchdog_holds_an_owner_from_its_first_write_until_it_closes(
    monkeypatch, pair, path
):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server)
    watchdog = apache_io._watchdog
    assert owner not in watchdog.owners and not owner.wrote
    owner.write(b'101')  # (a handshake's response goes through it too)
    assert owner in watchdog.owners and owner.wrote
    assert client.recv(10) == b'101'
    watchdog.check(time.monotonic())
    assert owner in watchdog.owners  # open: still watched
    owner.close(1)
    assert owner.closed
    # Let go by close itself, not at the watchdog's next check (a child
    # kept every connection of the last interval, seconds of them).
    assert owner not in watchdog.owners
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None


def _switches(thread: threading.Thread) -> int:
    """How often `thread` has gone to sleep (its voluntary context
    switches, from /proc)."""
    path = '/proc/self/task/%d/status' % thread.native_id
    with open(path) as f:
        for line in f:
            if line.startswith('voluntary_ctxt_switches'):
                return int(line.split()[1])
    raise AssertionError('no voluntary_ctxt_switches in ' + path)


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.01)


@pytest.mark.parametrize('path', PATHS)
def test_the_watchdog_sleeps_while_idle_and_wakes_for_a_stuck_write(
    monkeypatch, pair, path, caplog
):
    """An idle child's watchdog thread does not wake up at all (an
    Apache with hundreds of idle children spent CPU on their ticks); the
    first write of a connection wakes it, and it cuts a stuck write about
    when the send timeout says."""
    watchdog = apache_io._Watchdog()
    monkeypatch.setattr(apache_io, '_watchdog', watchdog)
    watchdog.start()
    _wait_for(lambda: watchdog.sleeping)
    before = _switches(watchdog._thread)
    time.sleep(1.0)
    assert _switches(watchdog._thread) == before  # no wake-up while idle
    owner, api = _owner(monkeypatch, path, pair[0], send_timeout=0.5)
    owner.write(b'first')
    assert owner in watchdog.owners
    assert watchdog.interval == pytest.approx(0.5 / 8)
    started = time.monotonic()
    thread, result = _in_thread(owner.write, b'x' * 10**6)  # never read
    with caplog.at_level(logging.WARNING, logger='mod_pywebsocket.apache_io'):
        thread.join(10)
    assert not thread.is_alive()
    assert 0.4 < time.monotonic() - started < 5  # cut by the thread
    assert isinstance(result.get('error'), OSError)
    assert caplog.text.count('did not read for 0.5 s') == 1
    owner.close(1)
    # once it has let go of the closed owner, it sleeps again
    _wait_for(lambda: not watchdog.owners and watchdog.sleeping)


def test_the_watchdog_checks_as_often_as_the_shortest_send_timeout_needs():
    watchdog = apache_io._Watchdog()  # (no thread: intervals only)

    class Owner:
        closed = False

        def __init__(self, send_timeout):
            self.send_timeout = send_timeout

    owner = Owner

    watchdog.watch(owner(30.0))
    assert watchdog.interval == pytest.approx(30.0 / 8)
    for none in (None, 0, -1.0):  # no send timeout: nothing to hurry
        watchdog.watch(owner(none))
    assert watchdog.interval == pytest.approx(30.0 / 8)
    watchdog.watch(owner(1.0))
    assert watchdog.interval == pytest.approx(1.0 / 8)
    watchdog.watch(owner(0.01))
    assert watchdog.interval == apache_io.WATCHDOG_INTERVAL_MIN
    watchdog.watch(owner(600.0))  # a longer one does not slow it down
    assert watchdog.interval == apache_io.WATCHDOG_INTERVAL_MIN
    assert len(watchdog.owners) == 7


@pytest.mark.parametrize('path', PATHS)
def test_a_writer_waiting_past_the_send_timeout_drops_the_connection(
    monkeypatch, pair, path, caplog
):
    monkeypatch.setattr(apache_io._watchdog, 'watch', lambda owner: None)
    owner, api = _owner(monkeypatch, path, pair[0], send_timeout=0.5)
    first, _ = _in_thread(owner.write, b'x' * 10**6)  # holds the connection
    time.sleep(0.2)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger='mod_pywebsocket.apache_io'):
        with pytest.raises(OSError, match='send timeout'):
            owner.write(b'second')
    assert 0.3 < time.monotonic() - started < 5
    first.join(5)
    assert not first.is_alive()  # the drop cut the stuck write too
    assert 'peer-1: the client did not read for 0.5 s' in caplog.text
    owner.close(1)


@pytest.mark.parametrize('path', PATHS)
def test_close_wakes_a_sleeping_reader_and_ends_the_connection(
    monkeypatch, pair, path
):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server)
    thread, result = _in_thread(owner.read, 100)
    time.sleep(0.3)
    assert thread.is_alive()
    owner.close(1)
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(result.get('error'), OSError)
    for call in (lambda: owner.read(1), lambda: owner.write(b'x')):
        with pytest.raises(OSError, match='request has ended'):
            call()
    owner.shutdown()  # (a late send timeout, a stray thread)
    client.settimeout(0.2)
    with pytest.raises(socket.timeout):
        client.recv(1)  # the socket is Apache's again: left alone


@pytest.mark.parametrize('path', PATHS)
def test_shutdown_cuts_the_connection_quietly(monkeypatch, pair, path, caplog):
    server, client = pair
    owner, api = _owner(monkeypatch, path, server)
    with caplog.at_level(logging.WARNING, logger='mod_pywebsocket.apache_io'):
        owner.shutdown()
    assert caplog.text == ''
    with pytest.raises(OSError, match='connection shut down'):
        owner.read(1)
    client.settimeout(5)
    assert client.recv(1) == b''  # the client sees the end
    owner.close(1)


def _is_eventfd(fd: int) -> bool:
    try:
        return os.readlink('/proc/self/fd/%d' % fd) == 'anon_inode:[eventfd]'
    except OSError:
        return False


@needs_c
def test_a_wake_descriptor_serves_the_next_connection_unless_signalled(
    monkeypatch,
):
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        # a reader waits for its data: the connection gets an eventfd
        first, _ = _owner(monkeypatch, 'C', pairs[0][0])
        assert first.wake_fd == -1  # (made only when a reader waits)
        thread, result = _in_thread(first.read, 10)
        time.sleep(0.2)
        pairs[0][1].sendall(b'late')
        thread.join(5)
        assert result.get('value') == b'late'
        kept = first.wake_fd
        assert _is_eventfd(kept)
        first.close(1)
        assert first.wake_fd == -1 and _is_eventfd(kept)  # kept open
        # the next connection's waiting reader takes it over, and nothing
        # left in it wakes that reader early
        second, _ = _owner(monkeypatch, 'C', pairs[1][0])
        second.set_read_timeout(0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            second.read(10)
        assert time.monotonic() - started >= 0.25
        assert second.wake_fd == kept
        # a signalled one (a drop woke it) is closed, not passed on
        second.shutdown()
        second.close(1)
        assert second.wake_fd == -1 and not _is_eventfd(kept)
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


@needs_c
def test_socket_io_checks_its_arguments(pair):
    server, _ = pair
    api = FakeApache()
    args = [api.addresses, INPUT, OUTPUT, 0x3000, server.fileno(), False]
    args += ['peer', 5.0, None, None, None]
    _speedups.SocketIO(*args).close()
    stdin = os.fstat(0)
    for index, bad, error in (
        (0, api.addresses[:4], TypeError),
        (1, 0, ValueError),
        (3, None, TypeError),
        (4, -1, ValueError),
        (6, b'peer', TypeError),
        (8, 'x', TypeError),
    ):
        wrong = list(args)
        wrong[index] = bad
        with pytest.raises(error):
            _speedups.SocketIO(*wrong)
    assert os.fstat(0) == stdin  # a half-made one closed nothing


@needs_c
def test_socket_io_open_makes_a_working_owner_in_one_call(pair):
    server, client = pair
    api = SocketApache(server)
    conn_rec = make_conn_rec(42)
    # where a mod_python connection keeps its conn_rec pointer
    holder = (ctypes.c_void_p * 1)(ctypes.addressof(conn_rec))

    def open_(conn_id=42, at=None):
        return _speedups.socket_io_open(
            at or ctypes.addressof(holder),
            conn_id,
            apache_io._CONN_ID_AND_FIELDS,
            api.open_addresses,
            api.addresses,
            False,
            'peer-2',
            5.0,
            None,
            None,
            None,
        )

    owner = open_()
    assert type(owner) is _speedups.SocketIO
    assert owner.fd == server.fileno()
    assert api.calls[:3] == [
        ('get_conn_socket', ctypes.addressof(conn_rec)),
        ('os_sock_get', SOCKET),
        ('brigade_create', POOL, ALLOC),
    ]
    client.sendall(b'ping')
    assert owner.read(100) == b'ping'
    owner.write(b'pong')
    client.settimeout(5)
    assert client.recv(100) == b'pong'
    owner.close(1)
    # Not ours, or not usable: None, and no brigade made.
    api.calls.clear()
    assert open_(conn_id=41) is None
    empty = (ctypes.c_void_p * 1)(None)
    assert open_(at=ctypes.addressof(empty)) is None
    conn_rec[apache_io._CONN_POOL // 8] = None  # not a usable conn_rec
    assert open_() is None
    conn_rec[apache_io._CONN_POOL // 8] = POOL
    api.fd = -1  # apr_os_sock_get fails
    assert open_() is None
    assert not [c for c in api.calls if c[0] == 'brigade_create']
    with pytest.raises(TypeError):
        _speedups.socket_io_open(1, 2, 3)
