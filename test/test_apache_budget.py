"""`PythonOption mod_pywebsocket.max_buffered` under real Apache: the
budget of buffered incoming message bytes (one per child process) closes
a connection that needs more with 1009 and one error-log line, as the
standalone server's --max-buffered does; under the event MPM the
connections of a child share it."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from apache_fixture import ApacheInstance, apache_missing, make_base_dir
from conftest import require
from hostile_helpers import (
    deflate_bomb,
    frame,
    frame_header,
    open_ws,
    read_frame,
    read_until_close,
)

pytestmark = pytest.mark.apache

BUDGET = 4 << 20
PMD = ('Sec-WebSocket-Extensions: permessage-deflate',)
ONE_CHILD = (
    'StartServers 1\nServerLimit 1\nThreadsPerChild 16\n'
    'MaxRequestWorkers 16\nMinSpareThreads 1\n'
    'MaxSpareThreads 16\nThreadLimit 16\n'
)


@pytest.fixture(scope='module', params=['prefork', 'event'])
def apache(request):
    missing = apache_missing()
    require(missing is None, 'Apache 2.4 with mod_python (%s)' % missing)
    base = make_base_dir('mpws-budget-')
    instance = ApacheInstance(
        base,
        mpm=request.param,
        mpm_conf=ONE_CHILD if request.param == 'event' else None,
        options={'mod_pywebsocket.max_buffered': str(BUDGET)},
    )
    try:
        yield instance.start()
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server closed on us: what we test


def test_half_message_past_the_budget_closes_with_1009(apache):
    offset = apache.error_log_size()
    sock = open_ws(apache.port, '/echo')
    # 16 MiB: well under max_message_size (64 MiB), over the budget
    _send_quietly(sock, frame_header(2, 16 << 20))
    chunk = b'\0' * (256 << 10)
    for _ in range(32):  # 8 MiB at most
        _send_quietly(sock, chunk)
    assert read_until_close(sock) == 1009
    sock.close()
    log = apache.wait_for_log('message buffer budget', offset)
    assert 'message buffer budget' in log and 'closing with 1009' in log
    assert 'Traceback' not in log, log
    # the child goes on serving, its budget given back
    with open_ws(apache.port, '/echo') as sock:
        sock.sendall(frame(2, b'x' * (1 << 20)))
        assert read_frame(sock) == (2, b'x' * (1 << 20))


def test_decompression_bomb_past_the_budget_closes_with_1009(apache):
    bomb = deflate_bomb(32 << 20)  # under the 64 MiB message limit
    sock = open_ws(apache.port, '/echo', PMD)
    _send_quietly(sock, frame_header(2, len(bomb), rsv1=True) + bomb)
    assert read_until_close(sock) == 1009
    sock.close()


# Under prefork each connection has a child (and a budget) of its own.
@pytest.mark.parametrize('apache', ['event'], indirect=True)
def test_connections_of_a_child_share_the_budget(apache):
    assert apache.mpm == 'event'
    size = 3 << 20
    first = open_ws(apache.port, '/echo')
    first.sendall(frame_header(2, size + 4096) + b'\1' * size)
    time.sleep(0.5)  # (the child has read it: it holds 3 MiB)
    second = open_ws(apache.port, '/echo')
    _send_quietly(second, frame_header(2, size) + b'\2' * size)
    assert read_until_close(second) == 1009
    second.close()
    first.sendall(b'\1' * 4096)  # the rest: within the budget
    assert read_frame(first) == (2, b'\1' * (size + 4096))
    first.close()


def test_max_buffered_is_a_known_option(apache):
    assert (
        'unknown PythonOption mod_pywebsocket.max_buffered'
        not in apache.error_log()
    )
