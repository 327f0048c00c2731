"""The send queue of event-style connections: empty messages on every
send path, what was queued goes out before a close, writer failures are
logged."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading

import pytest

import event_plugins
from conftest import EXAMPLE_DIR
from core_helpers import raw_websocket
from mod_pywebsocket import client, common, events
from mod_pywebsocket.frame import build_frame
from mock import MockRequest
from mod_pywebsocket.stream import Stream
from server_fixture import make_certificates, running_server

ECHO_PLUGIN = '/echo=' + os.path.join(EXAMPLE_DIR, 'echo_plugin.py')


@pytest.fixture(scope='module')
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp('certs'))


# (server flags, client keyword arguments) for each send path.
PATHS = {
    'event-loop': ((), {}),
    'threads': (('--no-event-loop',), {}),
    'draft-76': ((), {'version': 76}),
    'tls': (('--tls',), {'insecure': True}),
}


@pytest.mark.parametrize('path', sorted(PATHS))
def test_empty_messages_are_echoed_on_every_send_path(path, certificates):
    flags, kwargs = PATHS[path]
    if '--tls' in flags:
        flags = flags + (
            '-k',
            certificates['server.key'],
            '-c',
            certificates['server.pem'],
        )
    scheme = 'wss' if '--tls' in flags else 'ws'
    messages = (
        ['', 'after empty']
        if path == 'draft-76'
        else ['', b'', 'after empty', b'']
    )
    with running_server('--handler', ECHO_PLUGIN, *flags) as server:
        url = '%s://127.0.0.1:%d/echo' % (scheme, server.port)
        with client.connect(url, **kwargs) as ws:
            for message in messages:
                ws.send(message, binary=isinstance(message, bytes))
                assert ws.receive() == message
            ws.close()
            if path != 'draft-76':  # the drafts carry no close code
                assert ws.close_code == common.STATUS_NORMAL_CLOSURE


def _handshake(port: int, context=None) -> socket.socket:
    return raw_websocket(port, context=context)


def _read_frames(sock: socket.socket) -> list:
    """(opcode, payload) of every server frame up to the server's EOF."""
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = struct.unpack('!H', data[2:4])[0], 4
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


@pytest.mark.parametrize('path', ['event-loop', 'threads', 'tls'])
def test_queued_echo_goes_out_before_the_protocol_error_close(
    path, certificates
):
    # TLS connections always send through the writer thread.
    flags, context = PATHS[path][0], None
    if path == 'tls':
        flags = flags + (
            '-k',
            certificates['server.key'],
            '-c',
            certificates['server.pem'],
        )
        context = ssl.create_default_context(cafile=certificates['ca.pem'])
    bad = bytearray(build_frame(common.OPCODE_TEXT, b'bad', mask=True))
    bad[0] |= 0x20  # RSV2: not agreed
    with running_server(
        '--handler', '/echo=event_plugins:burst', *flags
    ) as server:
        for _ in range(3):
            with _handshake(server.port, context) as sock:
                sock.sendall(
                    build_frame(common.OPCODE_TEXT, b'valid', mask=True)
                    + bytes(bad)
                )
                frames = _read_frames(sock)
            assert frames[:-1] == [
                (common.OPCODE_TEXT, b'valid %d' % i)
                for i in range(event_plugins.burst.count)
            ]
            assert frames[-1][0] == common.OPCODE_CLOSE, frames[-3:]
            assert (
                struct.unpack('!H', frames[-1][1][:2])[0]
                == common.STATUS_PROTOCOL_ERROR
            )


def test_close_from_the_handler_goes_out_after_queued_messages():
    with running_server(
        '--no-event-loop', '--handler', '/rec=event_plugins:recorder'
    ) as server:
        with client.connect('ws://127.0.0.1:%d/rec' % server.port) as ws:
            assert ws.receive() == 'welcome'
            for i in range(50):
                ws.send('m%d' % i)
            ws.send('close')
            got = []
            while True:
                message = ws.receive()
                if message is None:
                    break
                got.append(message)
            assert got == ['m%d' % i for i in range(50)]
            assert ws.close_code == 4000


# ---- the writer thread's failure, without a server --------------------


class _BrokenPipe:
    """A transport whose writes fail as a vanished client's do."""

    client_ip = '10.0.0.9'

    def __init__(self) -> None:
        self.attempted = threading.Event()

    def read(self, size):
        return b''

    def write(self, data):
        self.attempted.set()
        raise BrokenPipeError(32, 'Broken pipe')


def test_writer_failure_is_logged_as_a_warning_with_its_cause(caplog):
    transport = _BrokenPipe()
    request = MockRequest('/echo?x=1', connection=transport)
    request.ws_resource = '/echo?x=1'
    conn = events.Connection(request)
    request.ws_stream = Stream(request)
    conn.begin_sending()
    with caplog.at_level(logging.WARNING, logger='mod_pywebsocket.events'):
        conn.send('')  # the writer thread takes it
        assert transport.attempted.wait(5)
        conn.end_sending(timeout=5)
    records = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(records) == 1, caplog.text
    assert '10.0.0.9' in records[0].getMessage()
    assert 'Broken pipe' in records[0].getMessage()
    with pytest.raises(events.ConnectionClosedError):
        conn.send('later')
