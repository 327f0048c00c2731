"""The standalone event loop never blocks on a peer: clients that stop
reading and then close or send garbage cost the others nothing."""

from __future__ import annotations

import os
import socket
import statistics
import time

import pytest

from conftest import EXAMPLE_DIR
from core_helpers import raw_websocket
from mod_pywebsocket import client, common, events
from mod_pywebsocket.frame import build_close_body, build_frame
from server_fixture import running_server

ECHO = '/echo=' + os.path.join(EXAMPLE_DIR, 'echo_plugin.py')
MEBIBYTE = 1 << 20


def _non_reading_client(port: int) -> socket.socket:
    """Handshake, then echo 6 MiB it never reads: the server's socket
    buffers fill and the rest waits in the server's send queue."""
    sock = raw_websocket(port, receive_buffer=4096)
    # Stuffing the buffers is setup, not what is measured: a generous
    # bound (the in-process server shares the GIL with the test and, in
    # make test, with coverage's tracing).
    sock.settimeout(60)
    frame = build_frame(common.OPCODE_BINARY, b'x' * MEBIBYTE, mask=True)
    for _ in range(6):
        sock.sendall(frame)
    return sock


def _round_trips(ws, count: int) -> list:
    times = []
    for i in range(count):
        start = time.monotonic()
        ws.send('ping %d' % i)
        assert ws.receive() == 'ping %d' % i
        times.append(time.monotonic() - start)
        time.sleep(0.02)
    return times


@pytest.mark.parametrize('last_words', ['close', 'bad frame'])
def test_clients_that_stop_reading_do_not_freeze_the_loop(last_words):
    with running_server('--handler', ECHO, '--close-timeout', '20') as srv:
        assert srv.event_loop is not None
        others = [
            client.connect('ws://127.0.0.1:%d/echo' % srv.port)
            for _ in range(3)
        ]
        stuck = [_non_reading_client(srv.port) for _ in range(3)]
        # Wait until the server holds echoes it cannot write to them.
        deadline = time.monotonic() + 20
        while (
            sum(
                c.request.ws_stream.pending_bytes > 0
                for c in events.local_members('/echo')
            )
            < 3
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for sock in stuck:
            if last_words == 'close':
                sock.sendall(
                    build_frame(
                        common.OPCODE_CLOSE, build_close_body(1000), mask=True
                    )
                )
            else:
                bad = bytearray(
                    build_frame(common.OPCODE_TEXT, b'?', mask=True)
                )
                bad[0] |= 0x40  # RSV1, nothing agreed
                sock.sendall(bytes(bad))
        times = []
        for ws in others:
            times += _round_trips(ws, 20)
        # Before the sans-I/O core, each stuck client held the loop for up
        # to the close timeout (here 20 s) while the reply blocked.
        assert max(times) < 1.0, times
        assert statistics.median(times) < 0.1, times
        assert sorted(times)[int(len(times) * 0.9)] < 0.1, times
        for ws in others:
            ws.close()
        for sock in stuck:
            sock.close()


def test_the_loop_runs_where_epoll_is_missing(monkeypatch):
    """Without select.epoll (macOS, BSD) the loop polls through the
    selectors module: messages, a reply too large for the socket buffers
    (the loop waits for writability) and the close all work."""
    from mod_pywebsocket import event_loop

    monkeypatch.setattr(event_loop, '_new_poller', event_loop._SelectorPoller)
    with running_server('--handler', ECHO) as srv:
        assert isinstance(srv.event_loop._poller, event_loop._SelectorPoller)
        ws = client.connect('ws://127.0.0.1:%d/echo' % srv.port)
        large = os.urandom(6 * MEBIBYTE)
        ws.send(large)
        assert ws.receive() == large
        for i in range(20):
            ws.send('message %d' % i)
            assert ws.receive() == 'message %d' % i
        ws.close()
        assert ws.close_code == common.STATUS_NORMAL_CLOSURE
