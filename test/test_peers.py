"""Independent peers against the standalone server: the `websockets`
library (RFC 6455, permessage-deflate), Perl Protocol::WebSocket
(draft-75/76) and real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from browser import chromium, run_page
from conftest import EXAMPLE_DIR, TEST_DIR, require
from server_fixture import running_server

websockets = pytest.importorskip('websockets')
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
)
from websockets.sync.client import connect as ws_connect  # noqa: E402

PAGES_DIR = os.path.join(TEST_DIR, 'pages')
PERL_CLIENT = os.path.join(TEST_DIR, 'peers', 'perl_client.pl')


@pytest.fixture(scope='module')
def server():
    with running_server(
        '--allow-draft75', '-w', EXAMPLE_DIR, document_root=PAGES_DIR
    ) as s:
        yield s


def ws_url(server, path='/echo'):
    return 'ws://127.0.0.1:%d%s' % (server.port, path)


# ---- websockets library -----------------------------------------------


def test_websockets_text_binary_and_large(server):
    with ws_connect(ws_url(server), compression=None, max_size=None) as ws:
        ws.send('héllo')
        assert ws.recv() == 'héllo'
        ws.send(b'\x00\xff')
        assert ws.recv() == b'\x00\xff'
        big = os.urandom(1 << 20)
        ws.send(big)
        assert ws.recv() == big


def test_websockets_fragmented_message(server):
    with ws_connect(ws_url(server), compression=None) as ws:
        ws.send(['frag', 'mented ', 'message'])  # three frames
        assert ws.recv() == 'fragmented message'


def test_websockets_ping(server):
    with ws_connect(ws_url(server)) as ws:
        assert ws.ping(b'p1').wait(5)


def test_websockets_close_code_echoed(server):
    with ws_connect(ws_url(server)) as ws:
        ws.close(4100, 'see you')
    assert ws.protocol.close_rcvd.code == 4100
    assert ws.protocol.close_rcvd.reason == 'see you'


def test_websockets_handler_error_is_1011(server):
    with ws_connect(ws_url(server, '/internal_error')) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        assert info.value.rcvd.code == 1011


def test_websockets_subprotocol(server):
    with ws_connect(
        ws_url(server, '/subprotocol'), subprotocols=['x-other', 'chat']
    ) as ws:
        assert ws.subprotocol == 'chat'
        assert ws.recv() == 'chat'


def test_websockets_invalid_utf8_gets_1007(server):
    with ws_connect(ws_url(server), compression=None) as ws:
        # Send a text frame with invalid UTF-8 through the raw protocol.
        with ws.send_context():
            ws.protocol.send_text(b'ok \xff\xfe')
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        assert info.value.rcvd.code == 1007


@pytest.mark.parametrize(
    'params',
    [
        {},
        {'server_no_context_takeover': True},
        {'client_no_context_takeover': True},
        {'server_max_window_bits': 10},
        {'client_max_window_bits': 9},
        {'server_max_window_bits': 8},  # zlib cannot: sent uncompressed
        {
            'server_no_context_takeover': True,
            'client_no_context_takeover': True,
            'server_max_window_bits': 12,
            'client_max_window_bits': 12,
        },
    ],
    ids=lambda p: ','.join('%s=%s' % kv for kv in p.items()) or 'defaults',
)
def test_websockets_permessage_deflate(server, params):
    factory = ClientPerMessageDeflateFactory(**params)
    with ws_connect(
        ws_url(server), extensions=[factory], compression=None, max_size=None
    ) as ws:
        negotiated = ws.protocol.extensions
        assert [e.name for e in negotiated] == ['permessage-deflate']
        text = 'compress me please ' * 5000
        for _ in range(3):  # context takeover
            ws.send(text)
            assert ws.recv() == text
        blob = os.urandom(300000)
        ws.send(blob)
        assert ws.recv() == blob
        ws.send(['frag ' * 100, 'mented ' * 100])
        assert ws.recv() == 'frag ' * 100 + 'mented ' * 100


# ---- Perl Protocol::WebSocket (draft-75 / draft-76) ----------------------


def run_perl(server, version, *messages):
    require(
        shutil.which('perl') is not None
        and subprocess.run(
            ['perl', '-MProtocol::WebSocket', '-e', '1'], capture_output=True
        ).returncode
        == 0,
        'Debian package libprotocol-websocket-perl',
    )
    result = subprocess.run(
        ['perl', PERL_CLIENT, ws_url(server), version, *messages],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode('utf-8').splitlines()


def test_perl_draft76_echo_and_closing_handshake(server):
    lines = run_perl(server, 'draft-ietf-hybi-00', 'hello', 'wörld ✓')
    assert lines == ['OPEN', 'RECV hello', 'RECV wörld ✓', 'CLOSED handshake']


def test_perl_draft75_echo(server):
    lines = run_perl(server, 'draft-hixie-75', 'hello 75')
    assert lines == ['OPEN', 'RECV hello 75', 'CLOSED eof']


# ---- Chromium --------------------------------------------------------------


@pytest.mark.browser
def test_chromium_runs_every_case(server):
    with chromium() as driver:
        results = run_page(
            driver, 'http://127.0.0.1:%d/browser_test.html' % server.port
        )
    assert results == {
        'text': True,
        'binary': True,
        'megabyte': True,
        'compressible': True,
        'extensions': 'permessage-deflate',
        'subprotocol': 'chat/chat',
        'closeCode': '4001 bye from page true',
        'serverClose': '4002 server says bye',
        'handlerError': 1011,
    }
