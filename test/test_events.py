"""Event-style handlers and per-location binding under the standalone
server: callbacks, refusal, errors, broadcast order, slow clients."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from conftest import EXAMPLE_DIR
from event_plugins import recorder
from mod_pywebsocket import client, common, events
from mod_pywebsocket.common import HandshakeException
from server_fixture import running_server


@pytest.fixture(scope='module')
def server():
    with running_server(
        '--handler',
        '/rec=event_plugins:recorder',
        '--handler',
        '/room=event_plugins',
        '--handler',
        '/plugin_echo=' + os.path.join(EXAMPLE_DIR, 'echo_plugin.py'),
        '--keepalive-interval',
        '0',
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def fresh_recorder():
    recorder.reset()
    yield


def url(server, path):
    return 'ws://127.0.0.1:%d%s' % (server.port, path)


def test_bound_plugin_file_echoes(server):
    with client.connect(
        url(server, '/plugin_echo'), protocols=['x', 'echo']
    ) as ws:
        assert ws.protocol == 'echo'
        for text in ('one', 'two', b'\x00bin'):
            ws.send(text)
            assert ws.receive() == text


def test_callbacks_in_order_with_close_code(server):
    ws = client.connect(url(server, '/rec'), protocols=['chosen'])
    assert ws.protocol == 'chosen'
    assert ws.receive() == 'welcome'
    ws.send('hi')
    assert ws.receive() == 'hi'
    ws.close(4100, 'bye')
    assert recorder.disconnected.wait(5)
    assert recorder.events == [
        ('connect', '/rec'),
        ('message', 'hi'),
        ('disconnect', 4100, 'bye'),
    ]


def test_conn_close_from_handler(server):
    ws = client.connect(url(server, '/rec'))
    assert ws.receive() == 'welcome'
    ws.send('close')
    assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (4000, 'asked to')
    ws.close()


@pytest.mark.parametrize('protocol', ['refuse', 'explode'])
def test_on_connect_refusal_is_403(server, protocol):
    with pytest.raises(HandshakeException) as info:
        client.connect(url(server, '/rec'), protocols=[protocol])
    assert info.value.status == 403
    with client.connect(url(server, '/rec')) as ws:  # server still fine
        assert ws.receive() == 'welcome'


def test_on_message_raising_is_1011_and_disconnect_reported(server):
    ws = client.connect(url(server, '/rec'))
    assert ws.receive() == 'welcome'
    ws.send('boom')
    assert ws.receive() is None
    assert ws.close_code == common.STATUS_INTERNAL_ENDPOINT_ERROR
    ws.close()
    # (A connection of an earlier test may report its disconnect late.)
    deadline = time.monotonic() + 5
    while True:
        after = recorder.events[recorder.events.index(('message', 'boom')) :]
        if any(e[0] == 'disconnect' for e in after):
            break
        assert time.monotonic() < deadline, recorder.events
        time.sleep(0.02)


def test_send_after_peer_vanished_raises_quickly(server):
    ws = client.connect(url(server, '/rec'))
    assert ws.receive() == 'welcome'
    conn = recorder.connections[0]
    ws.transport.sock.close()  # vanish without closing
    assert recorder.disconnected.wait(5)
    assert recorder.events[-1] == (
        'disconnect',
        common.STATUS_ABNORMAL_CLOSURE,
        None,
    )
    start = time.monotonic()
    errors = []

    def background_send():
        try:
            conn.send('anyone there?')
        except events.ConnectionClosedError as e:
            errors.append(e)

    thread = threading.Thread(target=background_send)
    thread.start()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    assert time.monotonic() - start < 1


def _reader(ws, count, out, errors):
    try:
        for _ in range(count):
            out.append(ws.receive())
    except Exception as e:  # reported by the test
        errors.append(e)


def test_200_clients_get_every_message_once_in_order(server):
    clients = [
        client.connect(url(server, '/room'), timeout=30) for _ in range(200)
    ]
    deadline = time.monotonic() + 10
    while len(events.local_members('/room')) < 200:
        assert time.monotonic() < deadline, 'not everyone joined'
        time.sleep(0.02)
    senders, per_sender = 4, 10
    received = [[] for _ in clients]
    errors = []
    readers = [
        threading.Thread(
            target=_reader, args=(ws, senders * per_sender, out, errors)
        )
        for ws, out in zip(clients, received)
    ]
    for r in readers:
        r.start()
    for i in range(per_sender):
        for s in range(senders):
            clients[s].send('%d:%d' % (s, i))
    for r in readers:
        r.join(60)
    assert not errors
    for messages in received:
        assert len(messages) == senders * per_sender
        assert len(set(messages)) == len(messages)  # exactly once
        for s in range(senders):
            mine = [m for m in messages if m.startswith('%d:' % s)]
            assert mine == ['%d:%d' % (s, i) for i in range(per_sender)]
    for ws in clients:
        ws.close()


def _stalled_client(port, path):
    """A client that completes the handshake and then never reads."""
    sock = socket.create_connection(('127.0.0.1', port), 5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        (
            'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket'
            '\r\nConnection: Upgrade\r\nSec-WebSocket-Key: '
            'dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13'
            '\r\n\r\n' % path
        ).encode()
    )
    head = b''
    while b'\r\n\r\n' not in head:
        head += sock.recv(1)
    assert head.startswith(b'HTTP/1.1 101')
    return sock


def test_stalled_client_does_not_slow_the_others(server, monkeypatch):
    monkeypatch.setattr(events.Connection, 'max_queued_bytes', 2 << 20)
    monkeypatch.setattr(common, 'DEFAULT_CLOSE_TIMEOUT', 1.0)
    fast = [client.connect(url(server, '/room')) for _ in range(3)]
    stalled = _stalled_client(server.port, '/room')
    deadline = time.monotonic() + 10
    while len(events.local_members('/room')) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    room = events.local_members('/room')
    payload = 'x' * 16384
    count = 800  # 13 MB: far more than the stalled
    received = [[] for _ in fast]  # client's socket buffers hold
    errors = []
    readers = [
        threading.Thread(target=_reader, args=(ws, count, out, errors))
        for ws, out in zip(fast, received)
    ]
    for r in readers:
        r.start()
    start = time.monotonic()
    for i in range(count):
        fast[0].send(payload)
        # Pace like a real sender (the test's readers share one process and
        # its GIL with the server): stay within 64 messages of the fast.
        while i - min(len(r) for r in received) > 64 and not errors:
            assert time.monotonic() - start < 30, 'fast clients stalled'
            time.sleep(0.001)
    for r in readers:
        r.join(30)  # bounded wait, not a benchmark
    assert not errors
    assert [len(r) for r in received] == [count] * 3
    assert time.monotonic() - start < 30
    # The stalled client could not even take the 1008 close frame, so it
    # was cut after the close timeout and left the room; sending to it
    # raises at once.
    deadline = time.monotonic() + 15
    while len(events.local_members('/room')) > 3:
        assert time.monotonic() < deadline, 'stalled client never closed'
        time.sleep(0.05)
    (stalled_conn,) = set(room) - set(events.local_members('/room'))
    with pytest.raises(events.ConnectionClosedError):
        stalled_conn.send('too late')
    stalled.close()
    for ws in fast:
        ws.close()


def test_event_loop_keepalive_drops_a_silent_peer():
    with running_server(
        '--handler',
        '/rec=event_plugins:recorder',
        '--keepalive-interval',
        '0.2',
        '--keepalive-timeout',
        '0.3',
    ) as srv:
        ws = client.connect(url(srv, '/rec'))  # never reads: no pongs
        deadline = time.monotonic() + 5
        while not recorder.disconnected.is_set():
            assert time.monotonic() < deadline, 'silent peer kept'
            time.sleep(0.05)
        assert recorder.events[-1] == (
            'disconnect',
            common.STATUS_ABNORMAL_CLOSURE,
            None,
        )
        ws.transport.close()


def test_event_loop_answers_pings_and_keeps_busy_peers():
    with running_server(
        '--handler',
        '/rec=event_plugins:recorder',
        '--keepalive-interval',
        '0.2',
        '--keepalive-timeout',
        '0.3',
    ) as srv:
        with client.connect(url(srv, '/rec')) as ws:
            pongs = []
            ws.on_pong(pongs.append)
            assert ws.receive() == 'welcome'
            ws.ping(b'hello?')
            for i in range(8):  # 1.6 s, past the interval
                ws.send('tick %d' % i)
                assert ws.receive() == 'tick %d' % i
                time.sleep(0.2)
            assert pongs == [b'hello?']
            assert not recorder.disconnected.is_set()


def test_without_event_loop_plugins_run_on_threads():
    with running_server(
        '--no-event-loop',
        '--handler',
        '/plugin_echo=' + os.path.join(EXAMPLE_DIR, 'echo_plugin.py'),
    ) as srv:
        assert srv.event_loop is None
        with client.connect(url(srv, '/plugin_echo')) as ws:
            ws.send('threaded')
            assert ws.receive() == 'threaded'


def test_event_loop_keeps_frames_sent_behind_the_handshake(server):
    from mod_pywebsocket.frame import build_frame

    with socket.create_connection(('127.0.0.1', server.port), 5) as sock:
        sock.sendall(
            b'GET /plugin_echo HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Upgrade: websocket\r\nConnection: Upgrade\r\n'
            b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
            b'Sec-WebSocket-Version: 13\r\n\r\n'
            + build_frame(common.OPCODE_TEXT, b'pipelined', mask=True)
        )
        data = b''
        while not data.endswith(b'pipelined'):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b'HTTP/1.1 101 ')
        assert data.endswith(b'\x81\x09pipelined')


@pytest.mark.parametrize('version', [76, 8])
def test_plugins_serve_every_protocol_version(server, version):
    # draft-76 streams cannot be read by the event loop: they keep a
    # thread of their own; hybi-08 goes on the loop like RFC 6455.
    with client.connect(url(server, '/plugin_echo'), version=version) as ws:
        ws.send('v%d' % version)
        assert ws.receive() == 'v%d' % version
    with client.connect(url(server, '/plugin_echo')) as ws:  # loop alive
        ws.send('after')
        assert ws.receive() == 'after'


WELCOME_HANDLER = '''
def on_connect(conn):
    conn.send('welcome')


def on_message(conn, message):
    conn.send(message)
'''


@pytest.mark.parametrize(
    'flags', [(), ('--no-event-loop',)], ids=['event-loop', 'threads']
)
def test_a_broadcast_right_after_the_welcome_is_not_lost(
    tmp_path, monkeypatch, flags
):
    # Another client's broadcast can come the moment this client has its
    # on_connect messages: by then the connection must be in the room.
    from mod_pywebsocket import broker

    (tmp_path / 'room_wsh.py').write_text(WELCOME_HANDLER)
    original = events.Connection.begin_sending

    def begin_then_broadcast(self, flusher=None):
        original(self, flusher)
        broker.get_broker().send_to_resource(self.path, 'news', None)

    monkeypatch.setattr(
        events.Connection, 'begin_sending', begin_then_broadcast
    )
    with running_server(*flags, '-d', str(tmp_path)) as srv:
        with client.connect('ws://127.0.0.1:%d/room' % srv.port) as ws:
            ws.sock.settimeout(5)
            assert ws.receive() == 'welcome'
            assert ws.receive() == 'news'
