"""Constants and exceptions shared by every layer of mod_pywebsocket."""

from __future__ import annotations

from typing import List, Optional, Tuple

# Protocol versions, as stored in request.ws_version.
VERSION_HYBI13 = 13
VERSION_HYBI08 = 8
VERSION_HYBI00 = 0  # draft-76 (hybi-00)
VERSION_HIXIE75 = -1  # draft-75
VERSION_HYBI_LATEST = VERSION_HYBI13
SUPPORTED_HYBI_VERSIONS = (VERSION_HYBI13, VERSION_HYBI08)
VERSION_NAMES = {
    VERSION_HYBI13: 'RFC 6455',
    VERSION_HYBI08: 'hybi-08',
    VERSION_HYBI00: 'draft-76',
    VERSION_HIXIE75: 'draft-75',
}

# Frame opcodes (RFC 6455 section 5.2).
OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

# URI schemes.
WEB_SOCKET_SCHEME = 'ws'
WEB_SOCKET_SECURE_SCHEME = 'wss'
DEFAULT_WEB_SOCKET_PORT = 80
DEFAULT_WEB_SOCKET_SECURE_PORT = 443

# The GUID of the Sec-WebSocket-Accept computation (RFC 6455 section 1.3).
# bytes, as in pywebsocket3 (and the original's Python 2 str): code does
# sha1(key + WEBSOCKET_ACCEPT_UUID) with a bytes key.
WEBSOCKET_ACCEPT_UUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

# HTTP header names.
HOST_HEADER = 'Host'
ORIGIN_HEADER = 'Origin'
UPGRADE_HEADER = 'Upgrade'
CONNECTION_HEADER = 'Connection'
WEBSOCKET_UPGRADE_TYPE = 'websocket'
WEBSOCKET_UPGRADE_TYPE_HIXIE75 = 'WebSocket'
UPGRADE_CONNECTION_TYPE = 'Upgrade'
SEC_WEBSOCKET_KEY_HEADER = 'Sec-WebSocket-Key'
SEC_WEBSOCKET_ACCEPT_HEADER = 'Sec-WebSocket-Accept'
SEC_WEBSOCKET_VERSION_HEADER = 'Sec-WebSocket-Version'
SEC_WEBSOCKET_PROTOCOL_HEADER = 'Sec-WebSocket-Protocol'
SEC_WEBSOCKET_EXTENSIONS_HEADER = 'Sec-WebSocket-Extensions'
SEC_WEBSOCKET_ORIGIN_HEADER = 'Sec-WebSocket-Origin'  # hybi-08, draft-76
SEC_WEBSOCKET_KEY1_HEADER = 'Sec-WebSocket-Key1'
SEC_WEBSOCKET_KEY2_HEADER = 'Sec-WebSocket-Key2'
SEC_WEBSOCKET_LOCATION_HEADER = 'Sec-WebSocket-Location'
WEBSOCKET_ORIGIN_HEADER = 'WebSocket-Origin'  # draft-75
WEBSOCKET_LOCATION_HEADER = 'WebSocket-Location'
WEBSOCKET_PROTOCOL_HEADER = 'WebSocket-Protocol'

# Extension names.
PERMESSAGE_DEFLATE_EXTENSION = 'permessage-deflate'

# Close status codes (RFC 6455 section 7.4.1) with their RFC names.
STATUS_NORMAL_CLOSURE = 1000
STATUS_GOING_AWAY = 1001
STATUS_PROTOCOL_ERROR = 1002
STATUS_UNSUPPORTED_DATA = 1003
STATUS_NO_STATUS_RECEIVED = 1005
STATUS_ABNORMAL_CLOSURE = 1006
STATUS_INVALID_FRAME_PAYLOAD_DATA = 1007
STATUS_POLICY_VIOLATION = 1008
STATUS_MESSAGE_TOO_BIG = 1009
STATUS_MANDATORY_EXTENSION = 1010
STATUS_INTERNAL_ENDPOINT_ERROR = 1011
STATUS_SERVICE_RESTART = 1012
STATUS_TRY_AGAIN_LATER = 1013
STATUS_BAD_GATEWAY = 1014
STATUS_TLS_HANDSHAKE = 1015
# Application ranges, and older names handlers written for the original
# mod_pywebsocket still use.
STATUS_USER_REGISTERED_BASE = 3000
STATUS_USER_REGISTERED_MAX = 3999
STATUS_USER_PRIVATE_BASE = 4000
STATUS_USER_PRIVATE_MAX = 4999
STATUS_INTERNAL_SERVER_ERROR = STATUS_INTERNAL_ENDPOINT_ERROR
STATUS_NORMAL = STATUS_NORMAL_CLOSURE
STATUS_UNSUPPORTED = STATUS_UNSUPPORTED_DATA
STATUS_CODE_NOT_AVAILABLE = STATUS_NO_STATUS_RECEIVED
STATUS_ABNORMAL_CLOSE = STATUS_ABNORMAL_CLOSURE
STATUS_INVALID_FRAME_PAYLOAD = STATUS_INVALID_FRAME_PAYLOAD_DATA
STATUS_MANDATORY_EXT = STATUS_MANDATORY_EXTENSION

STATUS_NAMES = {
    STATUS_NORMAL_CLOSURE: 'Normal Closure',
    STATUS_GOING_AWAY: 'Going Away',
    STATUS_PROTOCOL_ERROR: 'Protocol Error',
    STATUS_UNSUPPORTED_DATA: 'Unsupported Data',
    STATUS_NO_STATUS_RECEIVED: 'No Status Received',
    STATUS_ABNORMAL_CLOSURE: 'Abnormal Closure',
    STATUS_INVALID_FRAME_PAYLOAD_DATA: 'Invalid Frame Payload Data',
    STATUS_POLICY_VIOLATION: 'Policy Violation',
    STATUS_MESSAGE_TOO_BIG: 'Message Too Big',
    STATUS_MANDATORY_EXTENSION: 'Mandatory Extension',
    STATUS_INTERNAL_ENDPOINT_ERROR: 'Internal Server Error',
    STATUS_SERVICE_RESTART: 'Service Restart',
    STATUS_TRY_AGAIN_LATER: 'Try Again Later',
    STATUS_BAD_GATEWAY: 'Bad Gateway',
    STATUS_TLS_HANDSHAKE: 'TLS Handshake',
}


class StatusCode:
    """Close status codes under the names pywebsocket3 used."""

    NORMAL_CLOSURE = STATUS_NORMAL_CLOSURE
    GOING_AWAY = STATUS_GOING_AWAY
    PROTOCOL_ERROR = STATUS_PROTOCOL_ERROR
    UNSUPPORTED_DATA = STATUS_UNSUPPORTED_DATA
    NO_STATUS_RECEIVED = STATUS_NO_STATUS_RECEIVED
    ABNORMAL_CLOSURE = STATUS_ABNORMAL_CLOSURE
    INVALID_FRAME_PAYLOAD_DATA = STATUS_INVALID_FRAME_PAYLOAD_DATA
    POLICY_VIOLATION = STATUS_POLICY_VIOLATION
    MESSAGE_TOO_BIG = STATUS_MESSAGE_TOO_BIG
    MANDATORY_EXTENSION = STATUS_MANDATORY_EXTENSION
    INTERNAL_SERVER_ERROR = STATUS_INTERNAL_ENDPOINT_ERROR
    SERVICE_RESTART = STATUS_SERVICE_RESTART
    TRY_AGAIN_LATER = STATUS_TRY_AGAIN_LATER
    BAD_GATEWAY = STATUS_BAD_GATEWAY
    TLS_HANDSHAKE = STATUS_TLS_HANDSHAKE


def is_control_opcode(opcode: int) -> bool:
    """Whether `opcode` is a control frame's (close, ping, pong, ...)."""
    return opcode >> 3 == 1


def is_sendable_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame on the wire."""
    if 1000 <= code <= 2999:
        return code in STATUS_NAMES and code not in (
            STATUS_NO_STATUS_RECEIVED,
            STATUS_ABNORMAL_CLOSURE,
            STATUS_TLS_HANDSHAKE,
        )
    return 3000 <= code <= 4999


# HTTP status codes used by the handshake.
HTTP_STATUS_BAD_REQUEST = 400
HTTP_STATUS_UNAUTHORIZED = 401
HTTP_STATUS_FORBIDDEN = 403
HTTP_STATUS_NOT_FOUND = 404
HTTP_STATUS_METHOD_NOT_ALLOWED = 405
HTTP_STATUS_UPGRADE_REQUIRED = 426
HTTP_STATUS_INTERNAL_SERVER_ERROR = 500

# Limits (each one configurable where it is used).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_HANDSHAKE_HEADER_SIZE = 64 * 1024
DEFAULT_CLOSE_TIMEOUT = 10.0


class ExtensionParameter:
    """One element of a Sec-WebSocket-Extensions header: a name and its
    parameters, in order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._parameters: List[Tuple[str, Optional[str]]] = []

    def name(self) -> str:
        return self._name

    def add_parameter(self, name: str, value: Optional[str]) -> None:
        self._parameters.append((name, value))

    def get_parameters(self) -> List[Tuple[str, Optional[str]]]:
        return self._parameters

    def get_parameter_names(self) -> List[str]:
        return [name for name, _ in self._parameters]

    def has_parameter(self, name: str) -> bool:
        return any(n == name for n, _ in self._parameters)

    def get_parameter_value(self, name: str) -> Optional[str]:
        for n, value in self._parameters:
            if n == name:
                return value
        return None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ExtensionParameter)
            and self._name == other._name
            and self._parameters == other._parameters
        )

    def __repr__(self) -> str:
        return 'ExtensionParameter(%r, %r)' % (self._name, self._parameters)


# Exceptions.


class WebSocketError(Exception):
    """Base of every exception mod_pywebsocket raises on purpose."""


class HandshakeException(WebSocketError):
    """The opening handshake failed; `status` is the HTTP status to send
    and `headers` extra response headers (e.g. Sec-WebSocket-Version)."""

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        headers: Optional[List[Tuple[str, str]]] = None,
    ) -> None:
        super().__init__(message)
        self.status = HTTP_STATUS_BAD_REQUEST if status is None else status
        self.headers = list(headers or [])


class VersionException(HandshakeException):
    """The client asked for a protocol version this server does not speak."""

    def __init__(
        self, message: str, supported_versions: str = '13, 8'
    ) -> None:
        super().__init__(
            message,
            HTTP_STATUS_BAD_REQUEST,
            [(SEC_WEBSOCKET_VERSION_HEADER, supported_versions)],
        )
        self.supported_versions = supported_versions


class AbortedByUserException(WebSocketError):
    """Raised by a handler to drop the connection with no response."""


class DispatchException(WebSocketError):
    """No handler for the resource, or a handler file that failed."""

    def __init__(
        self, message: str, status: int = HTTP_STATUS_NOT_FOUND
    ) -> None:
        super().__init__(message)
        self.status = status


class ConnectionTerminatedException(WebSocketError):
    """The transport ended (peer vanished, EOF, timeout) without a closing
    handshake."""


class BadOperationException(WebSocketError):
    """The caller asked for something the connection's state forbids
    (e.g. sending after the close frame went out)."""


class ProtocolError(WebSocketError):
    """The peer violated the protocol; `code` is the close code to send."""

    code = STATUS_PROTOCOL_ERROR

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidFrameException(ProtocolError):
    """A frame broke RFC 6455's framing rules (close 1002)."""


class UnsupportedFrameException(ProtocolError):
    """A frame used something this endpoint does not support (close 1003,
    as pywebsocket3); raised for RSV bits no extension claims when the
    connection's rsv_close_code is 1003."""

    code = STATUS_UNSUPPORTED_DATA


class InvalidUTF8Exception(ProtocolError):
    """A text message or close reason was not valid UTF-8 (close 1007)."""

    code = STATUS_INVALID_FRAME_PAYLOAD_DATA


class MessageTooBigException(ProtocolError):
    """A message exceeded the configured maximum size (close 1009)."""

    code = STATUS_MESSAGE_TOO_BIG


# pywebsocket3's names for the Sec-WebSocket-Extensions parser (the parser
# itself is http_header_util's; imported when called, as that module
# imports this one).


class ExtensionParsingException(ValueError):
    """A Sec-WebSocket-Extensions value that does not parse."""


def parse_extensions(data: str) -> List[ExtensionParameter]:
    """The extensions of a Sec-WebSocket-Extensions value, in order;
    ExtensionParsingException when it does not parse (RFC 6455 9.1)."""
    from mod_pywebsocket import http_header_util

    try:
        return http_header_util.parse_extensions(data)
    except ValueError as e:
        raise ExtensionParsingException(str(e)) from e


def format_extensions(extension_list: List[ExtensionParameter]) -> str:
    """A Sec-WebSocket-Extensions value listing `extension_list`."""
    from mod_pywebsocket import http_header_util

    return http_header_util.format_extensions(extension_list)
