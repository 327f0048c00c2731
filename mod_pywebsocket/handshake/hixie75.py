"""The draft-75 opening handshake (only served with allow_draft75)."""

from __future__ import annotations

from mod_pywebsocket import common
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.handshake.base import (
    Handshaker,
    format_response,
    location_of,
)


class Hixie75Handshaker(Handshaker):
    """Validates a draft-75 request and builds its exact 101 response."""

    version = common.VERSION_HIXIE75

    def validate(self) -> None:
        self.init_request_attributes()
        request = self.request
        host = self.check_get_and_host()
        upgrade = self.require_header(common.UPGRADE_HEADER)
        if upgrade != common.WEBSOCKET_UPGRADE_TYPE_HIXIE75:
            raise HandshakeException(
                'draft-75 needs "Upgrade: WebSocket", not %r' % upgrade
            )
        connection = self.require_header(common.CONNECTION_HEADER)
        if connection != common.UPGRADE_CONNECTION_TYPE:
            raise HandshakeException(
                'draft-75 needs "Connection: Upgrade", not %r' % connection
            )
        request.ws_origin = self.require_header(common.ORIGIN_HEADER)
        request.ws_location = location_of(request, host)
        protocol = self.header(common.WEBSOCKET_PROTOCOL_HEADER)
        if protocol is not None:
            request.ws_requested_protocols = [protocol]
        request.ws_protocol = protocol

    def build_response(self) -> bytes:
        request = self.request
        # draft-75 section 4.1 fixes the status line and the header order.
        headers = [
            (common.UPGRADE_HEADER, common.WEBSOCKET_UPGRADE_TYPE_HIXIE75),
            (common.CONNECTION_HEADER, common.UPGRADE_CONNECTION_TYPE),
            (common.WEBSOCKET_ORIGIN_HEADER, request.ws_origin),
            (common.WEBSOCKET_LOCATION_HEADER, request.ws_location),
        ]
        if request.ws_protocol is not None:
            headers.append(
                (common.WEBSOCKET_PROTOCOL_HEADER, request.ws_protocol)
            )
        return format_response(
            'HTTP/1.1 101 Web Socket Protocol Handshake',
            headers,
            request.extra_headers,
        )
