"""The draft-76 (hybi-00) opening handshake: Key1/Key2 plus an 8-byte
key3 after the headers, answered with an MD5 challenge response."""

from __future__ import annotations

import hashlib
import struct

from mod_pywebsocket import common
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.handshake.base import (
    Handshaker,
    format_response,
    location_of,
)
from mod_pywebsocket.http_header_util import has_token


def key_number(key: str) -> int:
    """The number a Sec-WebSocket-Key1/2 value encodes: its digits read as
    an integer, divided by its number of spaces (draft-76 section 5.2)."""
    digits = ''.join(c for c in key if '0' <= c <= '9')
    spaces = key.count(' ')
    if not digits:
        raise HandshakeException('key %r has no digits' % key)
    if spaces == 0:
        raise HandshakeException('key %r has no spaces' % key)
    if len(digits) > 20:
        # (spaces <= 255 in practice: the real number has <= 13 digits;
        # int() of thousands of digits is refused by Python)
        raise HandshakeException('key has %d digits: too many' % len(digits))
    number = int(digits)
    if number % spaces:
        raise HandshakeException(
            'key %r: %d is not a multiple of its %d spaces'
            % (key, number, spaces)
        )
    result = number // spaces
    if result > 0xFFFFFFFF:
        raise HandshakeException('key %r encodes more than 32 bits' % key)
    return result


def compute_challenge(key1: str, key2: str, key3: bytes) -> bytes:
    """The 16 bytes whose MD5 answers the handshake."""
    if len(key3) != 8:
        raise HandshakeException('key3 must be 8 bytes, not %d' % len(key3))
    return struct.pack('!II', key_number(key1), key_number(key2)) + key3


def compute_response(key1: str, key2: str, key3: bytes) -> bytes:
    """The 16-byte body of the 101 response."""
    return hashlib.md5(compute_challenge(key1, key2, key3)).digest()


class Hybi00Handshaker(Handshaker):
    """Validates a draft-76 request and builds the 101 with its body."""

    version = common.VERSION_HYBI00
    body_length = 8

    def validate(self) -> None:
        self.init_request_attributes()
        request = self.request
        host = self.check_get_and_host()
        upgrade = self.require_header(common.UPGRADE_HEADER)
        if upgrade.strip().lower() != 'websocket':
            raise HandshakeException(
                'Upgrade header must be WebSocket, not %r' % upgrade
            )
        if not has_token(
            self.require_header(common.CONNECTION_HEADER), 'upgrade'
        ):
            raise HandshakeException('Connection header must be Upgrade')
        self._key1 = self.require_header(common.SEC_WEBSOCKET_KEY1_HEADER)
        self._key2 = self.require_header(common.SEC_WEBSOCKET_KEY2_HEADER)
        key_number(self._key1)
        key_number(self._key2)
        request.ws_origin = self.require_header(common.ORIGIN_HEADER)
        request.ws_location = location_of(request, host)
        protocol = self.header(common.SEC_WEBSOCKET_PROTOCOL_HEADER)
        if protocol is not None:
            if not protocol or any(
                not 0x20 <= ord(c) <= 0x7E for c in protocol
            ):
                raise HandshakeException(
                    'invalid Sec-WebSocket-Protocol %r' % protocol
                )
            request.ws_requested_protocols = [protocol]
        request.ws_protocol = protocol

    def accept_body(self, body: bytes) -> None:
        self.request.ws_challenge = compute_challenge(
            self._key1, self._key2, body
        )
        self.request.ws_challenge_md5 = hashlib.md5(
            self.request.ws_challenge
        ).digest()

    def build_response(self) -> bytes:
        request = self.request
        if request.ws_challenge is None:
            raise HandshakeException('key3 was never read')
        headers = [
            (common.UPGRADE_HEADER, common.WEBSOCKET_UPGRADE_TYPE_HIXIE75),
            (common.CONNECTION_HEADER, common.UPGRADE_CONNECTION_TYPE),
            (common.SEC_WEBSOCKET_LOCATION_HEADER, request.ws_location),
            (common.SEC_WEBSOCKET_ORIGIN_HEADER, request.ws_origin),
        ]
        if request.ws_protocol is not None:
            headers.append(
                (common.SEC_WEBSOCKET_PROTOCOL_HEADER, request.ws_protocol)
            )
        return format_response(
            'HTTP/1.1 101 WebSocket Protocol Handshake',
            headers,
            request.extra_headers,
            request.ws_challenge_md5,
        )
