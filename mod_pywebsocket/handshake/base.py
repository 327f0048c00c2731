"""Pieces shared by the opening handshakes of every protocol version.

A handshaker reads only what the request object carries (method, protocol,
headers_in, unparsed_uri, is_https()) and produces response bytes or a
HandshakeException; it never touches the connection.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from mod_pywebsocket import common, http_header_util

# pywebsocket3 code imports these exceptions from this module.
from mod_pywebsocket.common import (
    AbortedByUserException,  # noqa: F401
    HandshakeException,
    VersionException,  # noqa: F401
)
from mod_pywebsocket.http_header_util import has_token


class Handshaker:
    """Base of the per-version handshakers.

    Use: `validate()` (fills the request's ws_* attributes), then, when
    `body_length` is not 0, `accept_body()` with that many bytes read after
    the headers, then the handler's extra handshake, then
    `build_response()`.
    """

    version: int = 0
    body_length = 0

    def __init__(self, request) -> None:
        self.request = request

    def validate(self) -> None:
        raise NotImplementedError

    def accept_body(self, body: bytes) -> None:
        raise HandshakeException('this handshake takes no body')

    def build_response(self) -> bytes:
        raise NotImplementedError

    # Helpers for subclasses.

    def header(self, name: str) -> Optional[str]:
        return get_header(self.request, name)

    def require_header(self, name: str) -> str:
        value = get_header(self.request, name)
        if value is None:
            raise HandshakeException('header %s is missing' % name)
        return value

    def init_request_attributes(self) -> None:
        request = self.request
        request.ws_version = self.version
        request.ws_resource = resource_of(request)
        request.ws_location = None
        request.ws_origin = None
        request.ws_protocol = None
        request.ws_requested_protocols = None
        request.ws_extensions = None
        request.ws_requested_extensions = None
        request.ws_extension_processors = []
        request.ws_challenge = None
        request.ws_close_code = None
        request.ws_close_reason = None
        if not hasattr(request, 'extra_headers'):
            request.extra_headers = []

    def check_get_and_host(self) -> str:
        method = getattr(self.request, 'method', 'GET')
        if method != 'GET':
            raise HandshakeException(
                'method must be GET, not %s' % method,
                common.HTTP_STATUS_METHOD_NOT_ALLOWED,
                [('Allow', 'GET')],
            )
        return self.require_header(common.HOST_HEADER)


def get_header(request, name: str) -> Optional[str]:
    """A request header; repeated headers are joined with ', '. A value
    with CR, LF or NUL is refused (400): handshakes copy values into the
    response, which must not gain a line."""
    headers = request.headers_in
    joined = getattr(headers, 'joined', None)
    if joined is not None:
        value = joined(name)
    else:
        value = headers.get(name)
        if isinstance(value, list):  # mod_python table, repeated
            value = ', '.join(value)
    if value is not None and ('\r' in value or '\n' in value or '\0' in value):
        raise HandshakeException('header %s has a CR, LF or NUL' % name)
    return value


def resource_of(request) -> str:
    """The resource name (path and query) the client asked for."""
    target = getattr(request, 'unparsed_uri', None) or request.uri
    if not target.startswith('/') and '://' in target:
        # absolute-form request target: keep only path and query
        after_scheme = target.split('://', 1)[1]
        slash = after_scheme.find('/')
        target = after_scheme[slash:] if slash >= 0 else '/'
    return target


def location_of(request, host: str) -> str:
    """The ws:// or wss:// URL of this request (draft-75/76 Location)."""
    scheme = (
        common.WEB_SOCKET_SECURE_SCHEME
        if request.is_https()
        else common.WEB_SOCKET_SCHEME
    )
    return '%s://%s%s' % (scheme, host, request.ws_resource)


def is_websocket_upgrade(request) -> bool:
    """Whether the request asks for a WebSocket (any protocol version)."""
    return has_token(
        get_header(request, common.UPGRADE_HEADER),
        common.WEBSOCKET_UPGRADE_TYPE,
    )


def check_upgrade_and_connection(handshaker: Handshaker) -> None:
    upgrade = handshaker.require_header(common.UPGRADE_HEADER)
    if not has_token(upgrade, common.WEBSOCKET_UPGRADE_TYPE):
        raise HandshakeException(
            'Upgrade header must name websocket, not %r' % upgrade
        )
    connection = handshaker.require_header(common.CONNECTION_HEADER)
    if not has_token(connection, 'upgrade'):
        raise HandshakeException(
            'Connection header must contain the upgrade token, not %r'
            % connection
        )


def format_response(
    status_line: str,
    headers: List[Tuple[str, str]],
    extra_headers: List[Tuple[str, str]],
    body: bytes = b'',
) -> bytes:
    """The response head (and body) as bytes."""
    lines = [status_line]
    for name, value in list(headers) + list(extra_headers or []):
        lines.append('%s: %s' % (name, value))
    lines.append('')
    lines.append('')
    return '\r\n'.join(lines).encode('latin-1') + body


def format_error_response(
    status: int,
    reason: str,
    headers: Sequence[Tuple[str, str]] = (),
    body: str = '',
) -> bytes:
    """A small HTTP/1.1 error response that closes the connection."""
    payload = body.encode('utf-8')
    all_headers = [
        ('Content-Type', 'text/plain; charset=utf-8'),
        ('Content-Length', str(len(payload))),
        ('Connection', 'close'),
    ] + list(headers)
    return format_response(
        'HTTP/1.1 %d %s' % (status, reason), all_headers, [], payload
    )


# pywebsocket3's helpers for handshakers (web-platform-tests' HTTP/2
# handshaker imports them), over headers_in.get().


def get_default_port(is_secure: bool) -> int:
    return (
        common.DEFAULT_WEB_SOCKET_SECURE_PORT
        if is_secure
        else common.DEFAULT_WEB_SOCKET_PORT
    )


def get_mandatory_header(request, key: str) -> str:
    """Header `key`; HandshakeException when it is missing."""
    value = request.headers_in.get(key)
    if value is None:
        raise HandshakeException('header %s is missing' % key)
    return value


def validate_mandatory_header(
    request, key: str, expected_value: str, fail_status: Optional[int] = None
) -> None:
    """Header `key` must equal `expected_value` (case-insensitive)."""
    value = get_mandatory_header(request, key)
    if value.lower() != expected_value.lower():
        raise HandshakeException(
            'expected %r for header %s, not %r (case-insensitive)'
            % (expected_value, key, value),
            fail_status,
        )


def validate_subprotocol(subprotocol: str) -> None:
    """A Sec-WebSocket-Protocol element must be one token (RFC 6455
    4.1); HandshakeException otherwise."""
    if not subprotocol:
        raise HandshakeException('empty subprotocol name')
    if not http_header_util.is_token(subprotocol):
        raise HandshakeException(
            'subprotocol name %r is not a token' % subprotocol
        )


def parse_token_list(data: str) -> List[str]:
    """The tokens of a 1#token header value; HandshakeException when it
    has none or is not such a list."""
    try:
        tokens = http_header_util.parse_token_list(data)
    except ValueError as e:
        raise HandshakeException(str(e))
    if not tokens:
        raise HandshakeException('no token in %r' % data)
    return tokens


def parse_host_header(request) -> Tuple[str, int]:
    """(host, port) of the Host header (the scheme's port if none)."""
    host, sep, port = request.headers_in[common.HOST_HEADER].partition(':')
    if not sep:
        return host, get_default_port(request.is_https())
    try:
        return host, int(port)
    except ValueError as e:
        raise HandshakeException('invalid port in Host header: %s' % e)


def __getattr__(name: str):
    # pywebsocket3's HandshakerBase, loaded on first use (its module needs
    # the stream and this one must stay importable without it).
    if name == 'HandshakerBase':
        from mod_pywebsocket.handshake import handshaker_base

        return handshaker_base.HandshakerBase
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
