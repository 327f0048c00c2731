"""Malformed and hostile requests get a status and one log line, never a
traceback or a response line of the client's making (findings 4, 6-9)."""

from __future__ import annotations

import base64
import time

from conftest import EXAMPLE_DIR
from hostile_helpers import ServerProcess, connect, request_head

DRAFT76_KEYS = (
    b'Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n'
    b'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n'
)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, read until the server closes (bounded)."""
    sock = connect(port, timeout)
    sock.sendall(data)
    out = b''
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    sock.close()
    return out


def draft76(extra: bytes, keys: bytes = DRAFT76_KEYS) -> bytes:
    return (
        b'GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket'
        b'\r\nConnection: Upgrade\r\n' + keys + extra + b'\r\n'
        b'^n:ds[4U'
    )


def status(response: bytes) -> bytes:
    return response.split(b'\r\n', 1)[0]


def test_header_injection_and_malformed_values_are_400():
    with ServerProcess('--allow-draft75') as srv:
        lf = exchange(
            srv.port, draft76(b'Origin: http://a\nX-Injected: 1\r\n')
        )
        nul = exchange(srv.port, draft76(b'Origin: http://a\0b\r\n'))
        target = exchange(
            srv.port, b'GET /echo\nX: 1 HTTP/1.1\r\nHost: x\r\n\r\n'
        )
        ok = exchange(srv.port, draft76(b'Origin: http://a\r\n'))
        assert status(lf) == b'HTTP/1.1 400 Bad Request', lf
        assert b'X-Injected' not in lf
        assert status(nul) == b'HTTP/1.1 400 Bad Request', nul
        assert status(target) == b'HTTP/1.1 400 Bad Request', target
        assert ok.startswith(b'HTTP/1.1 101'), ok
        time.sleep(0.3)
        assert 'Traceback' not in srv.log()


def test_huge_numbers_and_nul_path_are_refused_without_traceback():
    huge = b'9' * 5000
    with ServerProcess('--allow-draft75') as srv:
        version = exchange(
            srv.port,
            request_head().replace(b'Version: 13', b'Version: ' + huge),
        )
        key = exchange(
            srv.port,
            draft76(
                b'Origin: http://a\r\n',
                b'Sec-WebSocket-Key1: ' + huge + b' 1\r\n'
                b'Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n',
            ),
        )
        nul = exchange(
            srv.port, b'GET /index%00.html HTTP/1.1\r\nHost: x\r\n\r\n'
        )
        # found by fuzz/fuzz_handshake.py: urlsplit refuses this target
        ipv6 = exchange(srv.port, b'GET //ec[]/ HTTP/1.1\r\nHost: x\r\n\r\n')
        assert status(version).startswith(b'HTTP/1.1 400'), version
        assert len(version) < 2000  # the value is not echoed whole
        assert status(key).startswith(b'HTTP/1.1 400'), key
        assert status(nul).startswith(b'HTTP/1.1 404'), nul
        assert status(ipv6).startswith(b'HTTP/1.1 400'), ipv6
        time.sleep(0.3)
        log = srv.log()
        assert 'Traceback' not in log, log
        assert len(log) < 20000


def test_handler_sources_are_not_served():
    plugin = '%s/echo_plugin.py' % EXAMPLE_DIR
    with ServerProcess('--handler', '/bound=' + plugin) as srv:

        def get(path: str) -> bytes:
            return status(
                exchange(
                    srv.port,
                    b'GET %s HTTP/1.1\r\nHost: x\r\n\r\n' % path.encode(),
                )
            )

        assert get('/echo_plugin.py').startswith(b'HTTP/1.1 404')
        assert get('/echo_wsh.py').startswith(b'HTTP/1.1 404')
        assert get('/index.html') == b'HTTP/1.1 200 OK'
        assert get('/echo_client.py') == b'HTTP/1.1 200 OK'  # not a handler


def test_basic_auth_scheme_is_case_insensitive():
    token = base64.b64encode(b'test:test')
    wrong = base64.b64encode(b'test:tesT')
    with ServerProcess('--basic-auth') as srv:

        def get(value: bytes) -> bytes:
            return status(
                exchange(
                    srv.port,
                    b'GET /index.html HTTP/1.1\r\n'
                    b'Host: x\r\nAuthorization: ' + value + b'\r\n\r\n',
                )
            )

        for scheme in (b'Basic', b'basic', b'BASIC'):
            assert get(scheme + b' ' + token) == b'HTTP/1.1 200 OK', scheme
        assert get(b'Basic ' + wrong).startswith(b'HTTP/1.1 401')
        assert get(b'Bearer ' + token).startswith(b'HTTP/1.1 401')
        assert get(b'Basic !!!').startswith(b'HTTP/1.1 401')


def test_slowloris_handshake_ends_at_the_deadline():
    with ServerProcess('--handshake-timeout', '2') as srv:
        sock = connect(srv.port, 10)
        start = time.monotonic()
        head = request_head()
        ended = None
        for i in range(len(head) - 4):
            try:
                sock.send(head[i : i + 1])
            except OSError:
                ended = time.monotonic() - start
                break
            time.sleep(0.3)
            if time.monotonic() - start > 8:
                break
        sock.close()
        assert ended is not None and ended < 4.5, ended
