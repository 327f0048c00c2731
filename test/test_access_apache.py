"""The access policy under a real Apache 2.4 + mod_python (prefork: every
WebSocket in a child process of its own, so the caps and the rate limit
must hold across processes). Locations set the policies per resource;
clients: ours in RFC 6455, hybi-08 and draft-76, and raw handshakes."""

from __future__ import annotations

import os
import shutil
import socket
import ssl

import pytest

from access_helpers import (
    Handshake,
    client_status,
    count_statuses,
    open_with_retry,
)
from apache_fixture import (
    ApacheInstance,
    apache_missing,
    make_base_dir,
    make_certificate,
)
from conftest import EXAMPLE_DIR, require
from mod_pywebsocket import client

pytestmark = pytest.mark.apache

ECHO = os.path.join(EXAMPLE_DIR, 'echo_wsh.py')
OPT = 'PythonOption mod_pywebsocket.'
REGEX = r're:https://[a-z]+\.example\.org(:[0-9]{1,5})?'


def bound(*lines: str) -> str:
    return '\n'.join(
        ['%shandler "%s"' % (OPT, ECHO)] + [OPT + line for line in lines]
    )


@pytest.fixture(scope='module')
def apache():
    missing = apache_missing()
    require(missing is None, 'Apache 2.4 with mod_python (%s)' % missing)
    require(shutil.which('openssl') is not None, 'openssl')
    base = make_base_dir('mpws-policy-')
    instance = ApacheInstance(
        base,
        ssl=make_certificate(base),
        options={'mod_pywebsocket.allowed_origins': 'same'},
        locations={
            '/exact': bound(
                'allowed_origins "https://app.example.com, '
                'http://app.example.com:8080"'
            ),
            '/wild': bound('allowed_origins *.example.com'),
            '/re': bound('allowed_origins "%s"' % REGEX),
            '/open': bound('allowed_origins off'),
            '/missing': bound(
                'allowed_origins same', 'allow_missing_origin On'
            ),
            '/caps': bound(
                'allowed_origins off',
                'max_connections_per_ip 100',
                'max_connections 190',
            ),
            '/rate': bound(
                'allowed_origins off',
                'handshake_rate 0.5',
                'handshake_burst 5',
            ),
        },
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        print(instance.error_log()[-4000:])
        instance.remove()


def origin_cases(port):
    here = 'http://127.0.0.1:%d' % port
    return [
        ('/echo', here, True),
        ('/echo', 'http://localhost:%d' % port, False),
        ('/echo', 'https://127.0.0.1:%d' % port, False),
        ('/exact', 'https://app.example.com', True),
        ('/exact', 'https://app.example.com:443', True),
        ('/exact', 'http://app.example.com:8080', True),
        ('/exact', 'http://app.example.com', False),
        ('/wild', 'https://a.example.com', True),
        ('/wild', 'http://a.b.example.com:8080', True),
        ('/wild', 'https://evil-example.com', False),
        ('/wild', 'https://example.com.evil.net', False),
        ('/re', 'https://app.example.org:8443', True),
        ('/re', 'https://app.example.org.evil.net', False),
        ('/open', 'https://evil.net', True),
    ]


@pytest.mark.parametrize('version', [13, 8, 76])
def test_origin_policies_per_location_in_every_version(apache, version):
    results = [
        (path, origin, client_status(apache.url(path), version, origin) == 101)
        for path, origin, _ in origin_cases(apache.port)
    ]
    assert results == origin_cases(apache.port)
    assert client_status(apache.url('/echo'), version, None) == 403
    expected_missing = 403 if version == 76 else 101  # 76 sends "null"
    assert (
        client_status(apache.url('/missing'), version, None)
        == expected_missing
    )


def test_refusal_is_403_with_one_line_and_one_log_line(apache):
    offset = apache.error_log_size()
    origin = 'https://once.evil-example.com'
    refused = Handshake(apache.port, '/wild', origin=origin)
    assert refused.status == 403
    assert refused.body == ("origin '%s' is not allowed\n" % origin).encode()
    log = apache.wait_for_log(origin, offset)
    lines = [line for line in log.splitlines() if origin in line]
    assert len(lines) == 1 and '[client 127.0.0.1:' in lines[0]


def test_the_handler_still_sees_the_origin(apache):
    here = 'http://127.0.0.1:%d' % apache.port
    handshake = Handshake(apache.port, '/origin_check', origin=here)
    assert handshake.status == 101
    assert handshake.echo('x') == 'origin accepted: ' + here


@pytest.mark.parametrize(
    'host, origin, status',
    [
        ('127.0.0.1', 'http://127.0.0.1', 101),
        ('127.0.0.1', 'http://127.0.0.1:80', 101),
        ('127.0.0.1:80', 'http://127.0.0.1', 101),
        ('127.0.0.1', 'http://127.0.0.1:8080', 403),
        ('127.0.0.1', 'https://127.0.0.1', 403),
    ],
)
def test_same_origin_with_and_without_default_ports(
    apache, host, origin, status
):
    handshake = Handshake(apache.port, '/echo', origin=origin, host=host)
    assert handshake.status == status
    if status == 101:
        assert handshake.echo('same') == 'same'
        handshake.close_cleanly()


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_tls_below_1_2_is_refused_and_same_origin_is_https(apache):
    """mod_ssl does TLS under Apache: Debian's OpenSSL security level
    already refuses TLS 1.0 and 1.1 (README: SSLProtocol to be explicit);
    the client offers them (SECLEVEL=0), the server says no."""

    def version(tls):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = context.maximum_version = tls
        context.set_ciphers('DEFAULT:@SECLEVEL=0')
        with socket.create_connection(
            ('127.0.0.1', apache.ssl_port), timeout=10
        ) as raw:
            with context.wrap_socket(raw) as sock:
                assert sock.compression() is None
                return sock.version()

    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            version(old)
    assert version(ssl.TLSVersion.TLSv1_2) == 'TLSv1.2'
    url = apache.url('/echo', 'wss')
    with client.connect(
        url, insecure=True, origin='https://127.0.0.1:%d' % apache.ssl_port
    ) as ws:
        ws.send('secure same origin')
        assert ws.receive() == 'secure same origin'
    with pytest.raises(client.HandshakeException) as info:
        client.connect(
            url, insecure=True, origin='http://127.0.0.1:%d' % apache.ssl_port
        )
    assert info.value.status == 403


def test_1000_connections_against_a_cap_of_100(apache):
    """Every accepted WebSocket is a prefork child of its own: the cap
    holds across them, the refusals are logged once, it recovers."""
    offset = apache.error_log_size()
    held = []
    try:
        results = [Handshake(apache.port, '/caps') for _ in range(1000)]
        held = [h for h in results if h.status == 101]
        assert count_statuses(results) == (100, 900, 0)
        assert all(
            h.headers.get('retry-after') == '5'
            for h in results
            if h.status == 503
        )
        assert results[-1].body == (
            b'this address holds its maximum of 100 WebSockets\n'
        )
        assert all(h.echo('open') == 'open' for h in held[:5])
        others = [
            Handshake(apache.port, '/caps', source='127.0.0.2')
            for _ in range(10)
        ]
        assert count_statuses(others) == (10, 0, 0)
        for handshake in others:
            handshake.close_cleanly()
        log = apache.error_log_since(offset)
        refusals = [
            line for line in log.splitlines() if 'refused (HTTP 503)' in line
        ]
        assert len(refusals) == 1 and '[client 127.0.0.1:' in refusals[0]
        for handshake in held[:50]:
            handshake.close_cleanly()
        for handshake in held[50:]:
            handshake.close_abruptly()
        held = [
            open_with_retry(apache.port, '/caps', timeout=60)
            for _ in range(100)
        ]
        assert count_statuses(held) == (100, 0, 0)
        assert Handshake(apache.port, '/caps').status == 503
    finally:
        for handshake in held:
            handshake.close()


def test_a_killed_child_does_not_keep_its_slot(apache):
    """A child that dies without closing (SIGKILL) frees its count."""
    held = [
        open_with_retry(apache.port, '/caps', timeout=60) for _ in range(100)
    ]
    try:
        assert count_statuses(held) == (100, 0, 0)
        assert Handshake(apache.port, '/caps').status == 503
        before = set(apache.child_pids())
        victims = [pid for pid in before if _serves_websocket(pid)][:3]
        assert len(victims) == 3
        for pid in victims:
            os.kill(pid, 9)
        extra = [
            open_with_retry(apache.port, '/caps', timeout=60) for _ in range(3)
        ]
        held += extra
        assert count_statuses(extra) == (3, 0, 0)
        assert Handshake(apache.port, '/caps').status == 503
    finally:
        for handshake in held:
            handshake.close()


def _serves_websocket(pid: int) -> bool:
    """Whether a child holds a connection slot (an open limits file)."""
    try:
        for fd in os.listdir('/proc/%d/fd' % pid):
            if 'limits-' in os.readlink('/proc/%d/fd/%s' % (pid, fd)):
                return True
    except OSError:
        pass
    return False


def test_handshake_burst_over_the_rate_gets_429(apache):
    offset = apache.error_log_size()
    results = [
        Handshake(apache.port, '/rate', source='127.0.0.3') for _ in range(12)
    ]
    assert [h.status for h in results] == [101] * 5 + [429] * 7
    assert all(int(h.headers['retry-after']) >= 1 for h in results[5:])
    assert results[-1].body == b'too many handshakes from this address\n'
    others = [
        Handshake(apache.port, '/rate', source='127.0.0.4') for _ in range(5)
    ]
    assert [h.status for h in others] == [101] * 5
    for handshake in results[:5] + others:
        handshake.close_cleanly()
    again = open_with_retry(
        apache.port, '/rate', source='127.0.0.3', timeout=10
    )
    assert again.status == 101
    again.close_cleanly()
    log = apache.error_log_since(offset)
    assert (
        len(
            [line for line in log.splitlines() if 'refused (HTTP 429)' in line]
        )
        == 1
    )


def test_bad_policy_option_is_500_with_a_log_line(request):
    require(apache_missing() is None, 'Apache 2.4 with mod_python')
    base = make_base_dir('mpws-policy-bad-')
    instance = ApacheInstance(
        base, options={'mod_pywebsocket.allowed_origins': 'example.com'}
    )
    instance.start()
    try:
        assert Handshake(instance.port, '/echo').status == 500
        log = instance.wait_for_log('allowed_origins')
        assert "allowed_origins has the bad value 'example.com'" in log
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)
