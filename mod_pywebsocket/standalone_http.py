"""HTTP for the standalone server: the request object handlers see (the
surface of mod_python's) and the error responses."""

from __future__ import annotations

import logging
import urllib.parse
from typing import Optional, Sequence, Tuple

from mod_pywebsocket.handshake.base import format_error_response
from mod_pywebsocket.http_header_util import Headers
from mod_pywebsocket.socket_transport import SocketTransport

_logger = logging.getLogger('mod_pywebsocket.standalone')

REASONS = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    405: 'Method Not Allowed',
    408: 'Request Timeout',
    426: 'Upgrade Required',
    429: 'Too Many Requests',
    431: 'Request Header Fields Too Large',
    500: 'Internal Server Error',
    501: 'Not Implemented',
    503: 'Service Unavailable',
}


class StandaloneRequest:
    """A request with the surface of mod_python's that handlers use."""

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: Headers,
        connection: SocketTransport,
        is_https: bool,
        options: Optional[dict] = None,
    ) -> None:
        self.method = method
        self.protocol = version
        self.unparsed_uri = target
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path or '/'
        # As in pywebsocket3's standalone server, uri keeps the query
        # (handlers read it there); mod_python's uri is the path only.
        self.uri = self.path + ('?' + parts.query if parts.query else '')
        self.args = parts.query or None
        self.headers_in = headers
        self.headers_out = Headers()
        self.err_headers_out = Headers()
        self.connection = connection
        self._is_https = is_https
        self._options = options or {}

    def is_https(self) -> bool:
        return self._is_https

    def get_options(self) -> dict:
        return self._options

    def log_error(self, message: str, level: int = logging.ERROR) -> None:
        _logger.log(
            level if level >= logging.DEBUG else logging.ERROR, '%s', message
        )


def reason_phrase(status: int) -> str:
    return REASONS.get(status, 'Error')


def send_bytes(transport: SocketTransport, data: bytes) -> None:
    """Write, ignoring a client that is gone."""
    try:
        transport.write(data)
    except OSError:
        pass


def send_error(
    transport: SocketTransport,
    status: int,
    message: str,
    headers: Sequence[Tuple[str, str]] = (),
) -> None:
    """An error response with a one-line text body."""
    send_bytes(
        transport,
        format_error_response(
            status, reason_phrase(status), headers, message + '\n'
        ),
    )
