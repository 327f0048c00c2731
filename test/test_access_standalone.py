"""The access policy on the standalone server, end to end: origin policies
for RFC 6455, hybi-08 and draft-76 clients, connection caps (one address
against its cap, a second address beside it, recovery after closes and
resets), the handshake rate limit and the TLS floor. Servers run as
subprocesses (the command line and a config file), except the cycle test,
which reads the server's own counter."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from access_helpers import (
    Handshake,
    client_status,
    count_statuses,
    open_with_retry,
    wait_until,
)
from conftest import EXAMPLE_DIR, ROOT_DIR, free_port
from mod_pywebsocket import client
from server_fixture import make_certificates, running_server

ECHO = os.path.join(EXAMPLE_DIR, 'echo_wsh.py')
REGEX = r're:https://[a-z]+\.example\.org(:[0-9]{1,5})?'


class Server:
    """`python -m mod_pywebsocket.standalone` on a free port, logging at
    info into a file."""

    def __init__(self, directory, *args: str) -> None:
        self.port = free_port()
        self.log_path = os.path.join(
            str(directory), 'server-%d.log' % self.port
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'mod_pywebsocket.standalone',
                '-H',
                '127.0.0.1',
                '-p',
                str(self.port),
                '-d',
                EXAMPLE_DIR,
                '--log-level',
                'info',
                '--log-file',
                self.log_path,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONPATH=ROOT_DIR),
            cwd=ROOT_DIR,
        )
        banner = self.process.stdout.readline()
        if 'serving' not in banner:
            self.stop()
            raise RuntimeError(
                'server did not start: %s%s'
                % (banner, self.process.stdout.read())
            )

    def url(self, path: str) -> str:
        return 'ws://127.0.0.1:%d%s' % (self.port, path)

    def log(self) -> str:
        with open(self.log_path, encoding='utf-8') as f:
            return f.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope='module')
def origins(tmp_path_factory):
    server = Server(
        tmp_path_factory.mktemp('origins'),
        '--allowed-origins',
        'same',
        '--allowed-origins-for',
        '/exact=https://app.example.com, http://app.example.com:8080',
        '--allowed-origins-for',
        '/wild=*.example.com',
        '--allowed-origins-for',
        '/re=' + REGEX,
        '--allowed-origins-for',
        '/open=off',
        '--allowed-origins-for',
        '/origin_check=same,*.example.com',
        *[
            arg
            for path in ('/exact', '/wild', '/re', '/open')
            for arg in ('--handler', '%s=%s' % (path, ECHO))
        ],
    )
    yield server
    server.stop()


def origin_cases(port):
    here = 'http://127.0.0.1:%d' % port
    return [
        ('/echo', here, True),
        ('/echo', 'http://localhost:%d' % port, False),
        ('/echo', 'https://127.0.0.1:%d' % port, False),
        ('/echo', 'http://127.0.0.1', False),
        ('/exact', 'https://app.example.com', True),
        ('/exact', 'https://app.example.com:443', True),
        ('/exact', 'http://app.example.com:8080', True),
        ('/exact', 'http://app.example.com', False),
        ('/exact', 'https://app.example.com.evil.net', False),
        ('/wild', 'https://a.example.com', True),
        ('/wild', 'http://a.b.example.com:8080', True),
        ('/wild', 'https://evil-example.com', False),
        ('/wild', 'https://example.com.evil.net', False),
        ('/wild', 'https://example.com', False),
        ('/re', 'https://app.example.org', True),
        ('/re', 'https://app.example.org:8443', True),
        ('/re', 'https://app.example.org.evil.net', False),
        ('/re', 'http://app.example.org', False),
        ('/open', 'https://evil.net', True),
    ]


@pytest.mark.parametrize('version', [13, 8, 76])
def test_origin_policies_in_every_protocol_version(origins, version):
    results = [
        (
            path,
            origin,
            client_status(origins.url(path), version, origin) == 101,
        )
        for path, origin, _ in origin_cases(origins.port)
    ]
    assert results == origin_cases(origins.port)


@pytest.mark.parametrize('version', [13, 8, 76])
def test_missing_origin_is_refused_unless_allowed(origins, version):
    # (our draft-76 client sends "Origin: null" without an origin)
    assert client_status(origins.url('/echo'), version, None) == 403
    assert client_status(origins.url('/open'), version, None) == 101


def test_refusal_is_403_with_one_line_and_one_log_line(origins):
    origin = 'https://once.evil-example.com'
    refused = Handshake(origins.port, '/wild', origin=origin)
    assert refused.status == 403
    assert refused.body == ("origin '%s' is not allowed\n" % origin).encode()
    wait_until(lambda: origin in origins.log(), what='log')
    lines = [line for line in origins.log().splitlines() if origin in line]
    assert len(lines) == 1
    assert '127.0.0.1:' in lines[0] and '(403)' in lines[0]


def test_the_handler_still_sees_the_origin_and_may_refuse_more(origins):
    here = 'http://127.0.0.1:%d' % origins.port
    with client.connect(origins.url('/origin_check'), origin=here) as ws:
        assert ws.receive() == 'origin accepted: ' + here
    # allowed by the policy, refused by the handler itself
    assert (
        client_status(
            origins.url('/origin_check'), 13, 'https://a.example.com'
        )
        == 403
    )
    wait_until(
        lambda: "origin 'https://a.example.com' not allowed" in origins.log(),
        what='the handler refusal',
    )


@pytest.mark.parametrize(
    'host, origin, status',
    [
        ('127.0.0.1', 'http://127.0.0.1', 101),
        ('127.0.0.1', 'http://127.0.0.1:80', 101),
        ('127.0.0.1:80', 'http://127.0.0.1', 101),
        ('127.0.0.1:80', 'http://127.0.0.1:80', 101),
        ('LOCALHOST', 'http://localhost', 101),
        ('127.0.0.1', 'http://127.0.0.1:8080', 403),
        ('127.0.0.1', 'https://127.0.0.1', 403),
        ('127.0.0.1:443', 'https://127.0.0.1', 403),
    ],
)
def test_same_origin_with_and_without_default_ports(
    origins, host, origin, status
):
    handshake = Handshake(origins.port, '/echo', origin=origin, host=host)
    assert handshake.status == status
    if status == 101:
        assert handshake.echo('same') == 'same'
        handshake.close_cleanly()


def test_config_file_allows_missing_origins(tmp_path):
    config = tmp_path / 'server.ini'
    config.write_text(
        '[pywebsocket]\nallowed-origins = *.example.com\n'
        'allow-missing-origin = on\n'
        'allowed-origins-for =\n    /open=off\n'
        '    /x=https://x.test\n'
        'handler = /open=%s\n' % ECHO
    )
    server = Server(tmp_path, '--config', str(config))
    try:
        assert client_status(server.url('/echo'), 13, None) == 101
        assert client_status(server.url('/echo'), 8, None) == 101
        assert (
            client_status(server.url('/echo'), 13, 'https://a.example.com')
            == 101
        )
        assert (
            client_status(server.url('/echo'), 13, 'https://evil.net') == 403
        )
        assert (
            client_status(server.url('/open'), 13, 'https://evil.net') == 101
        )
    finally:
        server.stop()


def test_bad_origin_list_is_a_clear_error():
    process = subprocess.run(
        [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-p',
            '0',
            '-d',
            EXAMPLE_DIR,
            '--allowed-origins',
            'example.com',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=ROOT_DIR),
    )
    assert process.returncode != 0
    assert (
        "not an origin" in process.stderr and 'example.com' in process.stderr
    )


# ---- connection caps ---------------------------------------------------


def test_1000_connections_against_a_cap_of_100(tmp_path):
    server = Server(
        tmp_path, '--max-connections-per-ip', '100', '--max-connections', '400'
    )
    held = []
    try:
        results = [Handshake(server.port, '/echo') for _ in range(1000)]
        held = [h for h in results if h.status == 101]
        assert count_statuses(results) == (100, 900, 0)
        assert all(
            h.headers.get('retry-after') == '5'
            for h in results
            if h.status == 503
        )
        assert b'holds its maximum of 100' in results[-1].body
        assert all(h.echo('still open') == 'still open' for h in held[:5])
        # another address is not affected
        others = [
            Handshake(server.port, '/echo', source='127.0.0.2')
            for _ in range(20)
        ]
        assert count_statuses(others) == (20, 0, 0)
        for handshake in others:
            handshake.close_cleanly()
        # one log line for the 900 refusals (at most one a minute)
        refusals = [
            line
            for line in server.log().splitlines()
            if 'refused (503)' in line
        ]
        assert len(refusals) == 1 and '127.0.0.1:' in refusals[0]
        # half close cleanly, half vanish: the cap recovers
        for handshake in held[:50]:
            handshake.close_cleanly()
        for handshake in held[50:]:
            handshake.close_abruptly()
        held = [open_with_retry(server.port, '/echo') for _ in range(100)]
        assert count_statuses(held) == (100, 0, 0)
        assert Handshake(server.port, '/echo').status == 503
    finally:
        for handshake in held:
            handshake.close()
        server.stop()


def test_caps_are_released_on_every_close_path():
    """Hundreds of connections ended every way there is, through both the
    threaded and the event-loop path: the counter ends at 0."""
    with running_server(
        '--max-connections-per-ip',
        '20',
        '--handler',
        '/plugin=%s' % os.path.join(EXAMPLE_DIR, 'echo_plugin.py'),
        '--allowed-origins',
        'same',
    ) as server:
        counter = server.access_limits.counter
        here = 'http://127.0.0.1:%d' % server.port
        for i in range(60):
            for path in ('/echo', '/plugin'):
                h = Handshake(server.port, path, origin=here)
                assert h.status == 101, (i, path, h.status)
                assert h.echo('x') == 'x'
                (h.close_cleanly if i % 2 else h.close_abruptly)()
            assert (
                Handshake(server.port, '/nothing/here', origin=here).status
                == 404
            )
            assert (
                Handshake(
                    server.port, '/echo', origin='http://evil.net'
                ).status
                == 403
            )
            if i % 10 == 0:
                ws = client.connect(
                    'ws://127.0.0.1:%d/close' % server.port, origin=here
                )
                ws.send('1000 bye')
                ws.receive()
                ws.close()
                ws76 = client.connect(
                    'ws://127.0.0.1:%d/echo' % server.port,
                    version=76,
                    origin=here,
                )
                ws76.transport.close()
        wait_until(
            lambda: counter.total == 0 and len(counter) == 0,
            what='the counter back at 0 (total %d)' % counter.total,
        )


# ---- handshake rate ----------------------------------------------------


def test_handshake_burst_over_the_rate_gets_429(tmp_path):
    server = Server(
        tmp_path, '--handshake-rate', '0.5', '--handshake-burst', '5'
    )
    try:
        results = [Handshake(server.port, '/echo') for _ in range(12)]
        assert [h.status for h in results] == [101] * 5 + [429] * 7
        assert all(int(h.headers['retry-after']) >= 1 for h in results[5:])
        assert results[-1].body == b'too many handshakes from this address\n'
        others = [
            Handshake(server.port, '/echo', source='127.0.0.2')
            for _ in range(5)
        ]
        assert [h.status for h in others] == [101] * 5
        for handshake in results[:5] + others:
            handshake.close_cleanly()
        again = open_with_retry(server.port, '/echo', timeout=10)
        assert again.status == 101  # a token came back
        again.close_cleanly()
        refusals = [
            line
            for line in server.log().splitlines()
            if 'refused (429)' in line
        ]
        assert len(refusals) == 1
    finally:
        server.stop()


# ---- TLS ---------------------------------------------------------------


def _tls_client(version, seclevel0=True) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if seclevel0:  # let this OpenSSL offer TLS 1.0 / 1.1
        context.set_ciphers('DEFAULT:@SECLEVEL=0')
    return context


def _tls_handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with context.wrap_socket(raw) as sock:
            return sock.version()


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_tls_below_1_2_is_refused(tmp_path):
    certs = make_certificates(tmp_path)
    old = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    # A server that accepts them proves this client really offers them.
    control = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    control.load_cert_chain(certs['server.pem'], certs['server.key'])
    control.minimum_version = ssl.TLSVersion.TLSv1
    control.set_ciphers('DEFAULT:@SECLEVEL=0')
    listener = socket.create_server(('127.0.0.1', 0))

    def accept(count):
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                control.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=accept, args=(len(old),), daemon=True)
    thread.start()
    assert [
        _tls_handshake(listener.getsockname()[1], _tls_client(v)) for v in old
    ] == ['TLSv1', 'TLSv1.1']
    thread.join(10)
    listener.close()
    args = (
        '--tls',
        '-k',
        certs['server.key'],
        '-c',
        certs['server.pem'],
        '--allowed-origins',
        'same',
    )
    with running_server(*args) as server:
        for version in old:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                _tls_handshake(server.port, _tls_client(version))
        assert (
            _tls_handshake(
                server.port, _tls_client(ssl.TLSVersion.TLSv1_2, False)
            )
            == 'TLSv1.2'
        )
        context = server.ssl_context
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION
        # same-origin over wss:// is https://
        url = 'wss://127.0.0.1:%d/echo' % server.port
        with client.connect(
            url, insecure=True, origin='https://127.0.0.1:%d' % server.port
        ):
            pass
        with pytest.raises(client.HandshakeException) as info:
            client.connect(
                url, insecure=True, origin='http://127.0.0.1:%d' % server.port
            )
        assert info.value.status == 403
    with running_server(
        *args, '--tls-min-version', '1.3', '--tls-ciphers', 'ECDHE+AESGCM'
    ) as server:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            _tls_handshake(
                server.port, _tls_client(ssl.TLSVersion.TLSv1_2, False)
            )
        assert (
            _tls_handshake(
                server.port, _tls_client(ssl.TLSVersion.TLSv1_3, False)
            )
            == 'TLSv1.3'
        )
