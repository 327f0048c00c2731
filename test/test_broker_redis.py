"""The Redis broker end to end: standalone servers in their own processes
on one real redis-server (chat across nodes, durable and pub/sub delivery
through a Redis kill, presence of a SIGKILLed node, start-up failures)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from chat_clients import ChatClient, send_all, wait_received, wait_until
from conftest import ROOT_DIR, free_port
from redis_fixture import RedisServer, ServerProcess

redis = pytest.importorskip('redis')

from mod_pywebsocket import broker as broker_module  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _nodes(tmp_path, url, count=2, *args):
    nodes = [
        ServerProcess(tmp_path, url, *args, name='node%d' % i).start()
        for i in range(count)
    ]
    return nodes


def _wait_members(node, resource, expected, timeout=10.0):
    ok = wait_until(
        lambda: len(node.resource_members(resource)) == expected, timeout
    )
    return ok, node.resource_members(resource)


def _assert_everything_in_order(clients, senders, count):
    for client in clients:
        got = client.by_sender()
        assert sorted(got) == sorted(senders), client.name
        for sender in senders:
            assert got[sender] == list(range(count)), (client.name, sender)


def test_chat_across_two_standalone_servers(tmp_path, redis_server):
    nodes = _nodes(tmp_path, redis_server.url)
    watcher = broker_module.create(redis_server.url)
    clients = []
    try:
        clients = [
            ChatClient(nodes[i % 2].url(), 'c%d' % i) for i in range(20)
        ]
        ok, members = _wait_members(watcher, '/chat', 20)
        assert ok, members
        assert len({m.split('.')[0] for m in members}) == 2
        send_all(clients, 100)
        assert wait_received(clients, 2000, 30), [
            len(c.received) for c in clients
        ]
        time.sleep(0.2)
        assert [len(c.received) for c in clients] == [2000] * 20
        _assert_everything_in_order(clients, [c.name for c in clients], 100)
    finally:
        for c in clients:
            c.close()
        watcher.close()
        for n in nodes:
            n.stop()


def test_durable_mode_survives_a_redis_kill(tmp_path):
    server = RedisServer(tmp_path, aof=True).start()
    url = server.url + '?mode=durable'
    nodes = _nodes(tmp_path, url)
    clients = []
    try:
        clients = [ChatClient(nodes[i % 2].url(), 'd%d' % i) for i in range(6)]
        watcher = broker_module.create(server.url)
        ok, members = _wait_members(watcher, '/chat', 6)
        watcher.close()
        assert ok, members
        # 6 clients x 100 messages over ~1.5 s; Redis dies for ~1 s inside
        senders = [c.name for c in clients]
        chat = threading.Thread(target=send_all, args=(clients, 100, 0.015))
        chat.start()
        time.sleep(0.4)
        server.stop(signal.SIGKILL)
        assert all(n.wait_for_log('lost:') for n in nodes)
        time.sleep(1.0)
        server.start()
        chat.join(30)
        assert wait_received(clients, 600, 20), [
            len(c.received) for c in clients
        ]
        time.sleep(0.5)
        assert [len(c.received) for c in clients] == [600] * 6
        _assert_everything_in_order(clients, senders, 100)
        for n in nodes:
            assert 'lost:' in n.log() and n.log().count('connected') >= 2, (
                n.log()
            )
    finally:
        for c in clients:
            c.close()
        for n in nodes:
            n.stop()
        server.stop()


def test_pubsub_mode_loses_what_is_sent_while_redis_is_away(tmp_path):
    server = RedisServer(tmp_path).start()
    a, b = _nodes(tmp_path, server.url)
    alice = ChatClient(a.url(), 'alice')
    bob = ChatClient(b.url(), 'bob')
    try:
        watcher = broker_module.create(server.url)
        ok, members = _wait_members(watcher, '/chat', 2)
        watcher.close()
        assert ok, members
        alice.send_numbered(0, 10)
        assert wait_received([alice, bob], 10, 10)
        server.stop(signal.SIGKILL)
        assert a.wait_for_log('lost:') and b.wait_for_log('lost:')
        alice.send_numbered(10, 10)  # Redis is down
        assert wait_received([alice], 20, 10)
        server.start()
        assert a.wait_for_log('connected', 2) and b.wait_for_log(
            'connected', 2
        )
        probe = redis.Redis.from_url(server.url)
        assert wait_until(
            lambda: probe.pubsub_numsub('mpws:messages')[0][1] == 2, 10
        )  # both readers subscribed again
        probe.close()
        alice.send_numbered(20, 10)
        assert wait_received([alice], 30, 10)
        assert wait_received([bob], 20, 10)
        time.sleep(0.3)
        # local delivery went on; the other node missed exactly the 10
        # sent while Redis was away, and its log says so
        assert alice.by_sender()['alice'] == list(range(30))
        assert bob.by_sender()['alice'] == list(range(10)) + list(
            range(20, 30)
        )
        assert b.wait_for_log('10 messages from node'), b.log()
    finally:
        alice.close()
        bob.close()
        a.stop()
        b.stop()
        server.stop()


def test_presence_drops_a_killed_node_within_the_ttl(tmp_path, redis_server):
    url = redis_server.url + '?ttl=2&heartbeat=0.5'
    a, b = _nodes(tmp_path, url)
    watcher = broker_module.create(url)
    clients = []
    try:
        clients = [
            ChatClient(n.url(), 'p%d' % i) for i, n in enumerate([a, a, b, b])
        ]
        ok, members = _wait_members(watcher, '/chat', 4)
        assert ok, members
        killed = time.monotonic()
        a.stop(signal.SIGKILL)
        ok, members = _wait_members(watcher, '/chat', 2, timeout=5)
        gone_after = time.monotonic() - killed
        assert ok, members
        assert gone_after <= 2.5
        # the survivors are still served and still present
        clients[2].send_numbered(0, 1)
        assert wait_received(clients[2:], 1, 5)
    finally:
        for c in clients[2:]:
            c.close()
        watcher.close()
        a.stop()
        b.stop()


def _run_standalone(*args, timeout=15):
    return subprocess.run(
        [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(free_port()),
            '-d',
            'example',
            *args,
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_unreachable_broker_at_start_names_the_url():
    port = free_port()
    result = _run_standalone('--broker', 'redis://127.0.0.1:%d/0' % port)
    assert result.returncode == 1
    assert 'redis://127.0.0.1:%d/0' % port in result.stderr
    assert 'cannot reach the broker' in result.stderr


def test_retry_starts_without_redis_and_connects_later(tmp_path):
    server = RedisServer(tmp_path)
    node = ServerProcess(tmp_path, server.url + '?retry=on').start()
    try:
        assert node.wait_for_log('unreachable')
        client = ChatClient(node.url(), 'solo')  # local delivery works
        client.send_numbered(0, 3)
        assert wait_received([client], 3, 5)
        client.close()
        server.start()
        assert node.wait_for_log('connected', 1, timeout=15), node.log()
    finally:
        node.stop()
        server.stop()


def _stalled_client(port: int):
    """A /chat client that completes the handshake and never reads."""
    import base64
    import os
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(('127.0.0.1', port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            'GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Upgrade: websocket\r\nConnection: Upgrade\r\n'
            'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n'
            '\r\n' % key
        ).encode()
    )
    head = b''
    while b'\r\n\r\n' not in head:
        head += sock.recv(1)
    assert head.startswith(b'HTTP/1.1 101')
    return sock


def test_a_slow_client_on_another_node_does_not_hold_up_the_others(
    tmp_path, redis_server
):
    a, b = _nodes(tmp_path, redis_server.url)
    watcher = broker_module.create(redis_server.url)
    sender = ChatClient(a.url(), 's')
    readers = [ChatClient(b.url(), 'r%d' % i) for i in range(2)]
    stalled = _stalled_client(b.port)
    try:
        ok, members = _wait_members(watcher, '/chat', 4)
        assert ok, members
        pad = 'x' * 4000
        for n in range(5000):  # ~20 MB: past the 16 MiB queue
            sender.ws.send('s%s:%d' % (pad, n))
        assert wait_received(readers, 5000, 30), [
            len(r.received) for r in readers
        ]
        for r in readers:
            assert r.by_sender()['s' + pad] == list(range(5000))
        assert b.wait_for_log('client too slow'), b.log()[-2000:]
    finally:
        stalled.close()
        sender.close()
        for r in readers:
            r.close()
        watcher.close()
        a.stop()
        b.stop()


def test_durable_mode_beyond_the_window_logs_what_it_dropped(tmp_path):
    server = RedisServer(tmp_path, aof=True).start()
    a, b = _nodes(tmp_path, server.url + '?mode=durable&window=1')
    alice = ChatClient(a.url(), 'alice')
    bob = ChatClient(b.url(), 'bob')
    try:
        watcher = broker_module.create(server.url)
        ok, members = _wait_members(watcher, '/chat', 2)
        watcher.close()
        assert ok, members
        server.stop(signal.SIGKILL)
        assert a.wait_for_log('lost:')
        alice.send_numbered(0, 5)  # held for 1 s, then dropped
        assert a.wait_for_log(
            '5 unsent messages older than 1 s dropped', timeout=10
        ), a.log()
        server.start()
        assert a.wait_for_log('connected', 2, timeout=10)
        assert b.wait_for_log('connected', 2, timeout=10)
        alice.send_numbered(5, 5)
        assert wait_received([bob], 5, 10)
        time.sleep(0.3)
        assert alice.by_sender()['alice'] == list(range(10))
        assert bob.by_sender()['alice'] == list(range(5, 10))
    finally:
        alice.close()
        bob.close()
        a.stop()
        b.stop()
        server.stop()
