"""Fuzz the HTTP head parser and the opening handshakes of every version
(RFC 6455, draft-76, draft-75): documented are ValueError from the parser
and HandshakeException from a handshaker; a 101 must never carry a CR,
LF or NUL that the request put in a value."""

from __future__ import annotations

import _common  # noqa: F401  (sys.path)
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.handshake import select_handshaker
from mod_pywebsocket.http_header_util import parse_request_head
from mod_pywebsocket.standalone_http import StandaloneRequest


class _Transport:
    remote_addr = local_addr = ('127.0.0.1', 1)
    client_ip = '127.0.0.1'


def check_response(response: bytes) -> None:
    head, _, _ = response.partition(b'\r\n\r\n')
    for line in head.split(b'\r\n'):
        assert b'\n' not in line and b'\r' not in line, response
        assert b'\0' not in line, response


def target(data: bytes) -> None:
    try:
        method, uri, version, headers = parse_request_head(data[:8192])
        request = StandaloneRequest(
            method, uri, version, headers, _Transport(), False
        )
    except ValueError:  # 400 (standalone_connection)
        return
    try:
        handshaker = select_handshaker(request, allow_draft75=True)
        handshaker.validate()
        if handshaker.body_length:
            handshaker.accept_body(data[-handshaker.body_length :])
        check_response(handshaker.build_response())
    except HandshakeException:
        pass


if __name__ == '__main__':
    _common.run(target)
