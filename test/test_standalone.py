"""The standalone server end to end, over loopback: our client in every
protocol version, static files, TLS, auth, bad input, limits, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port
from mod_pywebsocket import client, common, events
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.frame import build_frame
from server_fixture import make_certificates, running_server


@pytest.fixture(scope='module')
def server():
    with running_server('--allow-draft75', '--keepalive-interval', '0') as s:
        yield s


def url(server, path='/echo', scheme='ws'):
    return '%s://127.0.0.1:%d%s' % (scheme, server.port, path)


def raw_exchange(port, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, return everything until the server closes."""
    with socket.create_connection(('127.0.0.1', port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b''.join(chunks)


@pytest.mark.parametrize('version', [13, 8, 76, 75])
def test_echo_in_every_protocol_version(server, version):
    with client.connect(url(server), version=version) as ws:
        ws.send('hello')
        assert ws.receive() == 'hello'
        ws.send('ünïcödé ✓')
        assert ws.receive() == 'ünïcödé ✓'


@pytest.mark.parametrize('version', [13, 8])
def test_binary_and_large_messages(server, version):
    payload = os.urandom(1 << 20)
    with client.connect(url(server), version=version) as ws:
        ws.send(b'\x00\x01\xff')
        assert ws.receive() == b'\x00\x01\xff'
        ws.send(payload)
        assert ws.receive() == payload


def test_close_code_and_reason_are_echoed(server):
    ws = client.connect(url(server))
    ws.close(4321, 'done here')
    assert (ws.close_code, ws.close_reason) == (4321, 'done here')


def test_server_initiated_close_with_code(server):
    ws = client.connect(url(server, '/close'))
    ws.send('4000 bye now')
    assert ws.receive() is None
    assert (ws.close_code, ws.close_reason) == (4000, 'bye now')
    ws.close()


def test_draft76_closing_handshake(server):
    ws = client.connect(url(server), version=76)
    ws.send('x')
    assert ws.receive() == 'x'
    ws.close()
    assert ws.server_closed and ws.close_sent


def test_draft75_refused_unless_allowed():
    with running_server() as plain:
        with pytest.raises(HandshakeException) as info:
            client.connect(url(plain), version=75)
        assert info.value.status == 400
        # The other versions still work on that server.
        with client.connect(url(plain), version=76) as ws:
            ws.send('still here')
            assert ws.receive() == 'still here'


def test_ping_is_answered(server):
    with client.connect(url(server)) as ws:
        pongs = []
        ws.on_pong(pongs.append)
        ws.ping(b'are you there')
        ws.send('after ping')
        assert ws.receive() == 'after ping'
        assert pongs == [b'are you there']


def test_subprotocol_negotiation(server):
    with client.connect(
        url(server, '/subprotocol'), protocols=['nope', 'superchat']
    ) as ws:
        assert ws.protocol == 'superchat'
        assert ws.receive() == 'superchat'
    with pytest.raises(HandshakeException) as info:
        client.connect(url(server, '/subprotocol'), protocols=['nope'])
    assert info.value.status == 400


def test_origin_check(server):
    with client.connect(
        url(server, '/origin_check'), origin='http://localhost:8000'
    ) as ws:
        assert ws.receive() == 'origin accepted: http://localhost:8000'
    with pytest.raises(HandshakeException) as info:
        client.connect(
            url(server, '/origin_check'), origin='http://evil.example'
        )
    assert info.value.status == 403


def test_abort_handshake_drops_connection(server):
    with pytest.raises((HandshakeException, OSError)) as info:
        client.connect(url(server, '/abort_handshake'))
    assert 'HTTP' not in str(info.value)


def test_handler_error_closes_1011_and_others_unaffected(server):
    with client.connect(url(server)) as other:
        broken = client.connect(url(server, '/internal_error'))
        assert broken.receive() is None
        assert broken.close_code == common.STATUS_INTERNAL_ENDPOINT_ERROR
        broken.close()
        other.send('still fine')
        assert other.receive() == 'still fine'


def test_no_handler_is_404(server):
    with pytest.raises(HandshakeException) as info:
        client.connect(url(server, '/missing'))
    assert info.value.status == 404


def test_unsupported_version_lists_supported_ones(server):
    reply = raw_exchange(
        server.port,
        (
            'GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'
            'Connection: Upgrade\r\n'
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
            'Sec-WebSocket-Version: 7\r\n\r\n'
        ).encode(),
    )
    assert reply.startswith(b'HTTP/1.1 400 ')
    assert b'\r\nSec-WebSocket-Version: 13, 8\r\n' in reply


def test_static_files(server):
    base = 'http://127.0.0.1:%d' % server.port
    with urllib.request.urlopen(base + '/console.html') as response:
        assert response.status == 200
        assert response.headers['Content-Type'] == 'text/html; charset=utf-8'
        with open(os.path.join(EXAMPLE_DIR, 'console.html'), 'rb') as f:
            assert response.read() == f.read()
    with urllib.request.urlopen(base + '/') as response:  # index.html
        assert b'mod_pywebsocket examples' in response.read()
    request = urllib.request.Request(base + '/console.html', method='HEAD')
    with urllib.request.urlopen(request) as response:
        assert response.read() == b''
        assert int(response.headers['Content-Length']) > 1000
    for missing in ('/nope.html', '/echo_wsh.py'):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + missing)
        assert info.value.code == 404


@pytest.mark.parametrize(
    'path',
    [
        '/../setup.py',
        '/%2e%2e/setup.py',
        '/..%2fsetup.py',
        '//etc/passwd',
        '/%2e%2e/%2e%2e/etc/passwd',
    ],
)
def test_static_files_never_leave_the_root(server, path):
    reply = raw_exchange(
        server.port, ('GET %s HTTP/1.1\r\nHost: x\r\n\r\n' % path).encode()
    )
    assert reply.startswith(b'HTTP/1.1 404 ')


def test_plain_http_to_a_handler_says_upgrade(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen('http://127.0.0.1:%d/echo' % server.port)
    assert info.value.code == 426
    assert info.value.headers['Upgrade'] == 'websocket'
    assert b'WebSocket' in info.value.read()


def test_other_methods_are_refused(server):
    reply = raw_exchange(
        server.port,
        b'POST /console.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
    )
    assert reply.startswith(b'HTTP/1.1 405 ')


@pytest.mark.parametrize(
    'garbage',
    [
        b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n',
        b'HELLO\r\n\r\n',
        b'GET /echo\r\n\r\n',
        b'GET /echo HTTP/1.1\r\nno colon here\r\n\r\n',
    ],
)
def test_garbage_gets_400_and_server_keeps_serving(server, garbage):
    assert raw_exchange(server.port, garbage).startswith(b'HTTP/1.1 400 ')
    with client.connect(url(server)) as ws:
        ws.send('ok')
        assert ws.receive() == 'ok'


def test_malformed_handshakes_get_400(server):
    base = (
        'GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'
        'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
    )
    for key in ('Sec-WebSocket-Key: short==\r\n', ''):
        reply = raw_exchange(server.port, (base + key + '\r\n').encode())
        assert reply.startswith(b'HTTP/1.1 400 '), reply


def test_handshake_cut_short_is_dropped(server):
    with socket.create_connection(('127.0.0.1', server.port), 5) as s:
        s.sendall(b'GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr')
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b''


def test_silent_connections_start_no_thread_until_they_speak():
    # The server accepts a connection once its first bytes have come
    # (TCP_DEFER_ACCEPT): connecting and saying nothing costs the server
    # no thread, and an event-style handshake, whose head is there when
    # it is accepted, runs without a connection thread either.
    plugin = os.path.join(EXAMPLE_DIR, 'echo_plugin.py')
    with running_server('--handler', '/events=' + plugin) as srv:
        before = threading.active_count()
        silent = [
            socket.create_connection(('127.0.0.1', srv.port), 5)
            for _ in range(20)
        ]
        try:
            time.sleep(0.3)
            assert threading.active_count() - before <= 1
            for _ in range(10):
                with client.connect(url(srv, '/events')) as ws:
                    ws.send('hi')
                    assert ws.receive() == 'hi'
            assert threading.active_count() - before <= 1
            # A silent one that speaks at last is served as usual.
            silent[0].sendall(
                b'GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
                b'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
                b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
            )
            silent[0].settimeout(5)
            assert silent[0].recv(100).startswith(b'HTTP/1.1 101 ')
        finally:
            for sock in silent:
                sock.close()


def test_a_connection_that_never_speaks_is_dropped():
    with running_server('--handshake-timeout', '0.5') as quick:
        silent = socket.create_connection(('127.0.0.1', quick.port), 5)
        silent.settimeout(15)
        start = time.monotonic()
        # (held by the kernel for a second, then by the handshake deadline)
        assert silent.recv(100) == b''
        assert time.monotonic() - start < 10
        silent.close()


def test_oversized_head_is_refused():
    with running_server('--max-header-size', '2048') as small:
        reply = raw_exchange(
            small.port,
            b'GET /echo HTTP/1.1\r\nX-Big: ' + b'a' * 4096 + b'\r\n\r\n',
        )
        assert reply.startswith(b'HTTP/1.1 431 ')


def test_slow_handshake_is_dropped_and_others_are_served():
    with running_server('--handshake-timeout', '0.5') as quick:
        slow = socket.create_connection(('127.0.0.1', quick.port), 5)
        slow.sendall(b'GET /echo HTTP/1.1\r\n')
        with client.connect(url(quick)) as ws:  # not blocked by it
            ws.send('hi')
            assert ws.receive() == 'hi'
        slow.settimeout(5)
        start = time.monotonic()
        assert slow.recv(100) == b''  # dropped
        assert time.monotonic() - start < 4
        slow.close()


def test_message_size_limit_closes_1009():
    with running_server('--max-message-size', '1000') as limited:
        ws = client.connect(url(limited))
        ws.send('x' * 1000)
        assert ws.receive() == 'x' * 1000
        ws.send('x' * 1001)
        assert ws.receive() is None
        assert ws.close_code == common.STATUS_MESSAGE_TOO_BIG
        ws.close()


def close_code_for_unclaimed_rsv(port, path='/echo'):
    """The close code the server answers a text frame with RSV3 set (no
    extension claims it; the frame of pywebsocket3's
    test_close_on_unsupported_frame) with."""
    ws = client.connect('ws://127.0.0.1:%d%s' % (port, path))
    try:
        ws.send('before')
        assert ws.receive() == 'before'
        bad = bytearray(build_frame(common.OPCODE_TEXT, b'', mask=True))
        bad[0] |= 0x10  # RSV3
        ws.transport.write(bytes(bad))
        assert ws.receive() is None
        return ws.close_code
    finally:
        ws.close()


# The classic echo handler (a thread, blocking Stream) and the event-style
# one (the event loop).
ECHO_PATHS = {
    'classic': ((), '/echo'),
    'event': (
        (
            '--handler',
            '/plugin=' + os.path.join(EXAMPLE_DIR, 'echo_plugin.py'),
        ),
        '/plugin',
    ),
}


@pytest.mark.parametrize('style', sorted(ECHO_PATHS))
def test_unclaimed_rsv_bits_close_1002_by_default(style):
    flags, path = ECHO_PATHS[style]
    with running_server(*flags) as srv:
        assert (
            close_code_for_unclaimed_rsv(srv.port, path)
            == common.STATUS_PROTOCOL_ERROR
        )


@pytest.mark.parametrize('style', sorted(ECHO_PATHS))
def test_rsv_close_code_1003_closes_unclaimed_rsv_bits_1003(style):
    flags, path = ECHO_PATHS[style]
    with running_server('--rsv-close-code', '1003', *flags) as srv:
        assert (
            close_code_for_unclaimed_rsv(srv.port, path)
            == common.STATUS_UNSUPPORTED_DATA
        )


def test_keepalive_drops_a_silent_peer():
    with running_server(
        '--keepalive-interval', '0.2', '--keepalive-timeout', '0.3'
    ) as srv:
        ws = client.connect(url(srv))
        # A peer that never reads never answers the pings either.
        deadline = time.monotonic() + 5
        while srv.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.open_connections() == []
        ws.transport.close()


def test_keepalive_keeps_an_answering_peer():
    with running_server(
        '--keepalive-interval', '0.2', '--keepalive-timeout', '0.3'
    ) as srv:
        with client.connect(url(srv)) as ws:
            received = []
            reader = threading.Thread(
                target=lambda: received.append(ws.receive()), daemon=True
            )
            reader.start()  # answers pings while waiting
            time.sleep(1.2)
            assert len(srv.open_connections()) == 1
            ws.send('still here')
            reader.join(5)
            assert received == ['still here']


def test_chat_broadcasts_to_every_member(server):
    members = [client.connect(url(server, '/chat')) for _ in range(3)]
    deadline = time.monotonic() + 10
    while len(events.local_members('/chat')) < 3:  # all have joined
        assert time.monotonic() < deadline
        time.sleep(0.01)
    members[0].send('hello all')
    assert [m.receive() for m in members] == ['hello all'] * 3
    for m in members:
        m.close()


def test_wss_and_client_certificates(tmp_path):
    certs = make_certificates(tmp_path)
    with running_server(
        '--tls', '-k', certs['server.key'], '-c', certs['server.pem']
    ) as tls:
        with client.connect(
            url(tls, scheme='wss'), ca_file=certs['ca.pem']
        ) as ws:
            ws.send('secure')
            assert ws.receive() == 'secure'
        with client.connect(
            url(tls, scheme='wss'), insecure=True, version=76
        ) as ws:
            ws.send('secure 76')
            assert ws.receive() == 'secure 76'
        with pytest.raises(ssl.SSLError):
            client.connect(url(tls, scheme='wss'))  # unknown CA
    with running_server(
        '--tls',
        '-k',
        certs['server.key'],
        '-c',
        certs['server.pem'],
        '--tls-client-auth',
        '--tls-client-ca',
        certs['ca.pem'],
    ) as mutual:
        with client.connect(
            url(mutual, scheme='wss'),
            ca_file=certs['ca.pem'],
            certificate=certs['client.pem'],
            private_key=certs['client.key'],
        ) as ws:
            ws.send('mutual')
            assert ws.receive() == 'mutual'
        with pytest.raises((ssl.SSLError, OSError, HandshakeException)):
            ws = client.connect(
                url(mutual, scheme='wss'), ca_file=certs['ca.pem']
            )
            ws.send('no certificate')
            ws.receive()


def test_basic_auth():
    with running_server(
        '--basic-auth', '--basic-auth-credential', 'alice:secret'
    ) as auth:
        with pytest.raises(HandshakeException) as info:
            client.connect(url(auth))
        assert info.value.status == 401
        token = 'Basic YWxpY2U6c2VjcmV0'  # alice:secret
        with client.connect(
            url(auth), headers=[('Authorization', token)]
        ) as ws:
            ws.send('authorized')
            assert ws.receive() == 'authorized'


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip('no IPv6 in this kernel')
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(('::1', 0))
    except OSError:
        pytest.skip('no ::1 on this machine')
    from mod_pywebsocket.standalone import WebSocketServer, parse_args

    srv = WebSocketServer(
        parse_args(['-H', '::1', '-p', '0', '-d', EXAMPLE_DIR])
    )
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with client.connect('ws://[::1]:%d/echo' % srv.port) as ws:
            ws.send('v6')
            assert ws.receive() == 'v6'
    finally:
        srv.shutdown()
        srv.server_close()


def test_config_file_and_map_file(tmp_path):
    aliases = tmp_path / 'map.txt'
    aliases.write_text('# aliases\n/e2 /echo  # second name\n\n')
    config = tmp_path / 'server.ini'
    config.write_text(
        '[pywebsocket]\nmax-message-size = 10\n'
        'websock-handlers-map-file = %s\n' % aliases
    )
    with running_server('--config', str(config)) as srv:
        assert srv.options.max_message_size == 10
        ws = client.connect(url(srv, '/e2'))
        ws.send('0123456789')
        assert ws.receive() == '0123456789'
        ws.send('0123456789+')
        assert ws.receive() is None and ws.close_code == 1009
        ws.close()


def _start_process(*args, module='mod_pywebsocket.standalone'):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT_DIR)
    process = subprocess.Popen(
        [
            sys.executable,
            '-m',
            module,
            '-H',
            '127.0.0.1',
            '-p',
            str(port),
            '-d',
            EXAMPLE_DIR,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    banner = process.stdout.readline()
    return process, port, banner


def test_command_line_banner_and_sigterm_closes_1001():
    process, port, banner = _start_process('--log-level', 'info')
    try:
        assert 'serving' in banner and ':%d/' % port in banner
        clients = [
            client.connect('ws://127.0.0.1:%d/echo' % port) for _ in range(3)
        ]
        for ws in clients:
            ws.send('before')
            assert ws.receive() == 'before'
        process.send_signal(signal.SIGTERM)
        for ws in clients:
            assert ws.receive() is None
            assert ws.close_code == common.STATUS_GOING_AWAY
            ws.transport.close()
        assert process.wait(10) == 0
        output = process.stdout.read()
        assert 'stopped' in output
        assert 'close code 1001' in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigint_with_no_connections_exits_0():
    process, port, banner = _start_process()
    try:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    'args, code',
    [
        ((), common.STATUS_UNSUPPORTED_DATA),  # pywebsocket3's default
        (('--rsv-close-code', '1002'), common.STATUS_PROTOCOL_ERROR),
    ],
)
def test_python_m_pywebsocket3_standalone_closes_unclaimed_rsv_1003(
    args, code
):
    process, port, banner = _start_process(
        *args, module='pywebsocket3.standalone'
    )
    try:
        assert 'serving' in banner, banner
        assert close_code_for_unclaimed_rsv(port) == code
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_handler_root_is_a_clear_error(tmp_path):
    process = subprocess.run(
        [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-p',
            '0',
            '-w',
            str(tmp_path / 'missing'),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT_DIR),
        timeout=30,
    )
    assert process.returncode == 1
    assert 'cannot start' in process.stderr and 'missing' in process.stderr


def test_our_client_with_permessage_deflate(server):
    text = 'squeeze this text ' * 20000
    blob = os.urandom(1 << 20)
    with client.connect(url(server), deflate=True) as ws:
        assert ws.extensions.startswith('permessage-deflate')
        for _ in range(3):
            ws.send(text)
            assert ws.receive() == text
        ws.send(blob)
        assert ws.receive() == blob


def test_deflate_can_be_declined_by_the_server():
    with running_server('--no-deflate') as plain:
        with client.connect(url(plain), deflate=True) as ws:
            assert ws.extensions is None
            ws.send('uncompressed')
            assert ws.receive() == 'uncompressed'


def test_client_command_line_scripted(server, capsys, tmp_path):
    blob = tmp_path / 'blob.bin'
    blob.write_bytes(b'\x00\x01binary')
    assert (
        client.main(
            [
                url(server),
                '-m',
                'hello',
                '-m',
                'wörld',
                '--binary-file',
                str(blob),
                '--close-code',
                '4005',
                '--close-reason',
                'cli',
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('Connected to ws://127.0.0.1:')
    assert out[1:7] == [
        '> hello',
        '< hello',
        '> wörld',
        '< wörld',
        '> <8 bytes binary> 000162696e617279',
        '< <8 bytes binary> 000162696e617279',
    ]
    assert out[7] == "Closed: code 4005, reason 'cli'"


@pytest.mark.parametrize('version', ['76', '75', '8'])
def test_client_command_line_versions_and_protocols(server, capsys, version):
    assert (
        client.main(
            [
                url(server, '/subprotocol'),
                '-v',
                version,
                '-P',
                'chat',
                '-m',
                'x',
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert 'subprotocol chat' in out[0]
    assert out[1:3] == ['> x', '< chat']


def test_client_command_line_interactive(server, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, 'stdin', io.StringIO('first line\nsecond\n'))
    assert client.main([url(server)]) == 0
    out = capsys.readouterr().out
    assert '< first line' in out and '< second' in out


def test_client_command_line_reports_failures(server, capsys):
    assert client.main([url(server, '/missing')]) == 1
    assert "answered 'HTTP/1.1 404 Not Found'" in capsys.readouterr().err
    assert client.main(['http://127.0.0.1:1/']) == 1
    assert 'ws:// or wss://' in capsys.readouterr().err
    port = free_port()
    assert client.main(['ws://127.0.0.1:%d/echo' % port]) == 1
    assert 'Connection failed' in capsys.readouterr().err


CONNECTION_INFO_HANDLER = '''
import json

def web_socket_transfer_data(request):
    conn = request.connection
    request.ws_stream.send_message(json.dumps({
        'remote': list(conn.get_remote_addr()),
        'local': list(conn.get_local_addr()),
        'lines': [line.decode('latin-1')
                  for line in conn.get_memorized_lines()],
        'values': request.headers_in.values(),
    }))
'''


def test_pywebsocket3_connection_getters_and_header_values(tmp_path):
    # pywebsocket3's request.connection.get_remote_addr() / get_local_addr()
    # / get_memorized_lines() and headers_in.values(), from a handler.
    import json

    (tmp_path / 'info_wsh.py').write_text(CONNECTION_INFO_HANDLER)
    with running_server(document_root=str(tmp_path)) as s:
        with client.connect(url(s, '/info?x=1')) as ws:
            local = ws.sock.getsockname()
            info = json.loads(ws.receive())
    assert info['remote'] == [local[0], local[1]]
    assert info['local'] == ['127.0.0.1', s.port]
    lines = info['lines']
    assert lines[0] == 'GET /info?x=1 HTTP/1.1\r\n'
    assert lines[-1] == '\r\n'
    assert all(line.endswith('\r\n') for line in lines)
    assert 'Upgrade: websocket\r\n' in lines
    assert 'websocket' in info['values'] and '13' in info['values']
    assert len(info['values']) == len(lines) - 2
