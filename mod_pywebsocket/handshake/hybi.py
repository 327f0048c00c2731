"""The RFC 6455 (version 13) and hybi-08 (version 8) opening handshake."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from typing import List

from mod_pywebsocket import common, extensions
from mod_pywebsocket.common import HandshakeException, VersionException
from mod_pywebsocket.handshake.base import Handshaker as _Handshaker
from mod_pywebsocket.handshake.base import (
    check_upgrade_and_connection,
    format_response,
    get_header,
)
from mod_pywebsocket.http_header_util import (
    format_extensions,
    parse_extensions,
    parse_token_list,
)

WEBSOCKET_GUID = b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

_logger = logging.getLogger(__name__)


def compute_accept(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (both base64, bytes)."""
    digest = hashlib.sha1(key + WEBSOCKET_GUID).digest()
    return binascii.b2a_base64(digest, newline=False)


def compute_accept_from_unicode(key: str) -> bytes:
    """compute_accept for a str key (pywebsocket3's name, which
    web-platform-tests handlers call to build a raw 101 themselves)."""
    return compute_accept(key.encode('utf-8'))


def parse_version(value: str) -> int:
    """The Sec-WebSocket-Version this server speaks, or VersionException."""
    value = value.strip()
    # (no version has more than 2 digits; int() of thousands is refused)
    if value.isdigit() and value.isascii() and len(value) <= 3:
        version = int(value)
        if version in common.SUPPORTED_HYBI_VERSIONS:
            return version
    raise VersionException(
        'unsupported Sec-WebSocket-Version %r' % _shortened(value)
    )


def _shortened(value: str, limit: int = 40) -> str:
    """`value` cut for an error message (a log line stays a line)."""
    return value if len(value) <= limit else value[:limit] + '...'


class HybiHandshaker(_Handshaker):
    """Validates an RFC 6455 / hybi-08 request and builds the 101."""

    version = common.VERSION_HYBI13

    def __init__(self, request, deflate_settings=None) -> None:
        super().__init__(request)
        self.deflate_settings = deflate_settings

    def validate(self) -> None:
        self.version = parse_version(
            self.require_header(common.SEC_WEBSOCKET_VERSION_HEADER)
        )
        self.init_request_attributes()
        request = self.request
        self.check_get_and_host()
        protocol = getattr(request, 'protocol', 'HTTP/1.1')
        if protocol not in ('HTTP/1.1', 'HTTP/2.0', 'HTTP/2'):
            raise HandshakeException(
                'WebSocket needs HTTP/1.1 or later, not %s' % protocol
            )
        check_upgrade_and_connection(self)
        self._key = self._validate_key()
        origin_header = (
            common.ORIGIN_HEADER
            if self.version == common.VERSION_HYBI13
            else common.SEC_WEBSOCKET_ORIGIN_HEADER
        )
        request.ws_origin = get_header(request, origin_header)
        request.ws_requested_protocols = self._requested_protocols()
        request.ws_requested_extensions = self._requested_extensions()
        request.ws_extension_processors = extensions.processors_for(
            request.ws_requested_extensions or [], self.deflate_settings
        )

    def _validate_key(self) -> bytes:
        key = self.require_header(common.SEC_WEBSOCKET_KEY_HEADER)
        if ',' in key:
            raise HandshakeException(
                'more than one Sec-WebSocket-Key header: %r' % key
            )
        key = key.strip()
        if len(key) == 24 and key.isascii():
            # (the usual key, checked without a regex: what encodes back
            # to itself is base64)
            encoded = key.encode('ascii')
            try:
                decoded = binascii.a2b_base64(encoded)
            except binascii.Error:
                decoded = b''
            if (
                len(decoded) == 16
                and binascii.b2a_base64(decoded, newline=False) == encoded
            ):
                return encoded
        try:
            decoded = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise HandshakeException(
                'Sec-WebSocket-Key is not base64: %r' % key
            )
        if len(decoded) != 16:
            raise HandshakeException(
                'Sec-WebSocket-Key must decode to 16 bytes, not %d'
                % len(decoded)
            )
        return key.encode('ascii')

    def _requested_protocols(self):
        value = get_header(self.request, common.SEC_WEBSOCKET_PROTOCOL_HEADER)
        if value is None:
            return None
        try:
            protocols = parse_token_list(value)
        except ValueError as e:
            raise HandshakeException(
                'invalid Sec-WebSocket-Protocol header: %s' % e
            )
        if not protocols:
            raise HandshakeException('empty Sec-WebSocket-Protocol header')
        return protocols

    def _requested_extensions(self):
        value = get_header(
            self.request, common.SEC_WEBSOCKET_EXTENSIONS_HEADER
        )
        if value is None:
            return None
        try:
            return parse_extensions(value)
        except ValueError as e:
            raise HandshakeException(
                'invalid Sec-WebSocket-Extensions header: %s' % e
            )

    def negotiate_extensions(self) -> None:
        """Ask each extension processor (the handler may have changed or
        removed them) for its response; the first accepted offer of each
        extension wins."""
        request = self.request
        accepted: List[common.ExtensionParameter] = []
        active = []
        names = set()
        for processor in request.ws_extension_processors or []:
            if processor is None or processor.name() in names:
                continue
            response = processor.get_extension_response()
            if response is None:
                continue
            names.add(processor.name())
            accepted.append(response)
            active.append(processor)
        request.ws_extensions = accepted or None
        self.active_processors = active

    def build_response(self) -> bytes:
        request = self.request
        protocol = request.ws_protocol
        if protocol is not None:
            if (
                not request.ws_requested_protocols
                or protocol not in request.ws_requested_protocols
            ):
                raise HandshakeException(
                    'handler selected subprotocol %r that the client did '
                    'not offer' % protocol,
                    common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
                )
        self.negotiate_extensions()
        headers = [
            (common.UPGRADE_HEADER, common.WEBSOCKET_UPGRADE_TYPE),
            (common.CONNECTION_HEADER, common.UPGRADE_CONNECTION_TYPE),
            (
                common.SEC_WEBSOCKET_ACCEPT_HEADER,
                compute_accept(self._key).decode('ascii'),
            ),
        ]
        if protocol is not None:
            headers.append((common.SEC_WEBSOCKET_PROTOCOL_HEADER, protocol))
        if request.ws_extensions:
            headers.append(
                (
                    common.SEC_WEBSOCKET_EXTENSIONS_HEADER,
                    format_extensions(request.ws_extensions),
                )
            )
        return format_response(
            'HTTP/1.1 101 Switching Protocols', headers, request.extra_headers
        )


def __getattr__(name: str):
    # pywebsocket3's names here (Handshaker(request, dispatcher) runs a
    # whole handshake over request.connection): see handshaker_base.
    if name in ('Handshaker', 'check_request_line', 'format_header'):
        from mod_pywebsocket.handshake import handshaker_base

        return getattr(handshaker_base, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
