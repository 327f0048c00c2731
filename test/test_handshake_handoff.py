"""The standalone server's way from an accepted socket to the event loop:
reading the HTTP head, the transport's addresses, the handshake run on the
accepting thread when the whole head is there, the hand-over."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from conftest import EXAMPLE_DIR
from core_helpers import RFC6455_KEY, read_101
from mod_pywebsocket import common
from mod_pywebsocket.frame import build_frame
from mod_pywebsocket.socket_transport import SocketTransport, read_http_head
from mod_pywebsocket.standalone_connection import Connection
from server_fixture import running_server

PLUGIN = os.path.join(EXAMPLE_DIR, 'echo_plugin.py')
HEAD = (
    'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
    'Upgrade: websocket\r\nConnection: Upgrade\r\n'
    'Sec-WebSocket-Key: ' + RFC6455_KEY + '\r\nSec-WebSocket-Version: 13\r\n'
    '\r\n'
)


@pytest.fixture
def tcp_pair():
    """A connected (client, accepted server socket, client address)."""
    with socket.create_server(('127.0.0.1', 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, address = listener.accept()
    yield client, server, address
    client.close()
    server.close()


def test_read_http_head_waits_for_the_rest():
    a, b = socket.socketpair()
    with a, b:

        def later():
            time.sleep(0.05)
            b.sendall(b'Host: x\r\n\r\nextra')

        b.sendall(b'GET / HTTP/1.1\r\n')
        thread = threading.Thread(target=later)
        thread.start()
        head, rest = read_http_head(a, 4096, time.monotonic() + 10)
        thread.join()
        assert head == b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
        assert rest == b'extra'
        # (waited for with poll(): the socket keeps no timeout)
        assert a.gettimeout() is None


def test_read_http_head_starts_from_what_was_read():
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'Host: x\r\n\r\n')
        head, rest = read_http_head(a, 4096, None, b'GET / HTTP/1.1\r\n')
        assert head == b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
        assert rest == b''


def test_read_http_head_deadline_and_end_of_stream():
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'GET / HTTP/1.1\r\n')
        with pytest.raises(OSError, match='timed out'):
            read_http_head(a, 4096, time.monotonic() + 0.05)
        b.close()
        with pytest.raises(EOFError):
            read_http_head(a, 4096, time.monotonic() + 10)


class _Socket:
    """What SocketTransport asks of a socket, counting address queries."""

    def __init__(self) -> None:
        self.queries = 0

    def getpeername(self):
        raise AssertionError('the peer address was given')

    def getsockname(self):
        self.queries += 1
        return ('127.0.0.1', 80)

    def gettimeout(self):
        return None

    recv = sendall = None


def test_transport_takes_the_accepted_address_and_asks_its_own_once():
    sock = _Socket()
    transport = SocketTransport(sock, remote_addr=('10.0.0.1', 5))  # type: ignore[arg-type]
    assert transport.remote_addr == ('10.0.0.1', 5)
    assert transport.client_ip == '10.0.0.1'
    assert sock.queries == 0
    assert transport.get_local_addr() == ('127.0.0.1', 80)
    assert transport.local_addr == ('127.0.0.1', 80)
    assert sock.queries == 1
    transport.local_addr = ('::1', 8)
    assert transport.get_local_addr() == ('::1', 8)


def _echo_once(sock: socket.socket) -> None:
    read_101(sock)
    sock.sendall(build_frame(common.OPCODE_TEXT, b'hi', mask=True))
    assert sock.recv(4) == b'\x81\x02hi'


def test_handshake_for_the_event_loop_runs_on_the_accepting_thread(tcp_pair):
    client, accepted, address = tcp_pair
    with running_server('--handler', '/events=' + PLUGIN) as srv:
        client.sendall((HEAD % '/events').encode('ascii'))
        time.sleep(0.05)  # the whole head is there
        connection = Connection(srv, accepted, address)
        assert connection.try_inline()
        assert connection.handed_over
        _echo_once(client)


@pytest.mark.parametrize(
    'head',
    [
        HEAD % '/echo',  # a classic handler: it needs a thread
        HEAD.replace('\r\n\r\n', '\r\n')  # the head has not all come
        % '/events',
        'GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',  # not an upgrade
    ],
)
def test_other_requests_keep_what_was_read_for_a_thread(tcp_pair, head):
    client, accepted, address = tcp_pair
    with running_server('--handler', '/events=' + PLUGIN) as srv:
        client.sendall(head.encode('ascii'))
        time.sleep(0.05)
        connection = Connection(srv, accepted, address)
        assert not connection.try_inline()
        assert connection.received == head.encode('ascii')
        if head.endswith('\r\n\r\n'):
            thread = threading.Thread(target=connection.run)
            thread.start()
            if 'Upgrade' in head:
                _echo_once(client)
                client.close()
            else:
                assert client.recv(12).startswith(b'HTTP/1.1 ')
            thread.join(10)
            assert not thread.is_alive()


def test_nothing_read_yet_leaves_it_to_a_thread(tcp_pair):
    client, accepted, address = tcp_pair
    with running_server('--handler', '/events=' + PLUGIN) as srv:
        connection = Connection(srv, accepted, address)
        assert not connection.try_inline()
        assert connection.received == b''
        thread = threading.Thread(target=connection.run)
        thread.start()
        client.sendall((HEAD % '/events').encode('ascii'))
        _echo_once(client)
        client.close()
        thread.join(10)
        assert not thread.is_alive()


def test_sys_exit_in_on_connect_on_the_accepting_thread(tcp_pair, tmp_path):
    client, accepted, address = tcp_pair
    handler = tmp_path / 'leave.py'
    handler.write_text(
        'import sys\n\n\ndef on_connect(conn):\n    sys.exit(3)\n\n\n'
        'def on_message(conn, message):\n    pass\n'
    )
    with running_server(
        '--handler', '/leave=%s' % handler, '--handler', '/events=' + PLUGIN
    ) as srv:
        client.sendall((HEAD % '/leave').encode('ascii'))
        time.sleep(0.05)
        srv.process_request(accepted, address)  # (on this thread)
        client.settimeout(10)
        assert not client.recv(100).startswith(b'HTTP/1.1 101')
        # The server still serves.
        _echo_once_on(srv.port)


def _echo_once_on(port: int) -> None:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall((HEAD % '/events').encode('ascii'))
        _echo_once(sock)


@pytest.mark.parametrize('from_any_thread', [True, False])
def test_loop_takes_connections_registered_by_either_thread(
    monkeypatch, from_any_thread
):
    # (False: a selector that sees only what its own thread registered,
    # so the loop registers each connection after a wake-up byte)
    from mod_pywebsocket import event_loop

    if not from_any_thread:
        monkeypatch.setattr(
            event_loop, '_new_poller', event_loop._SelectorPoller
        )
    with running_server('--handler', '/events=' + PLUGIN) as srv:
        assert srv.event_loop._register_from_any_thread is from_any_thread
        for _ in range(3):
            _echo_once_on(srv.port)
