"""Opening handshakes (sans-I/O): choose the protocol version a request
asks for and get its handshaker.

Re-exports the exceptions handlers have always imported from here.
"""

from __future__ import annotations

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    AbortedByUserException,  # noqa: F401
    HandshakeException,
    VersionException,
)
from mod_pywebsocket.handshake.base import (
    Handshaker,
    get_header,
    is_websocket_upgrade,
)
from mod_pywebsocket.handshake.hixie75 import Hixie75Handshaker
from mod_pywebsocket.handshake.hybi import HybiHandshaker
from mod_pywebsocket.handshake.hybi00 import Hybi00Handshaker

__all__ = [
    'AbortedByUserException',
    'HandshakeException',
    'VersionException',
    'Handshaker',
    'select_handshaker',
    'is_websocket_upgrade',
]


def select_handshaker(
    request, allow_draft75: bool = False, deflate_settings=None
) -> Handshaker:
    """The handshaker for the protocol version the request asks for.

    Sec-WebSocket-Version → RFC 6455 / hybi-08; Sec-WebSocket-Key1/2 →
    draft-76; neither → draft-75 when allowed, else a VersionException
    (400 with Sec-WebSocket-Version: 13, 8).
    """
    if get_header(request, common.SEC_WEBSOCKET_VERSION_HEADER) is not None:
        return HybiHandshaker(request, deflate_settings)
    if (
        get_header(request, common.SEC_WEBSOCKET_KEY1_HEADER) is not None
        or get_header(request, common.SEC_WEBSOCKET_KEY2_HEADER) is not None
    ):
        return Hybi00Handshaker(request)
    if allow_draft75:
        return Hixie75Handshaker(request)
    raise VersionException(
        'no Sec-WebSocket-Version header (and draft-75 is not allowed)'
    )


def do_handshake(request, dispatcher) -> None:
    """pywebsocket3's entry point: an RFC 6455 handshake over
    request.connection, calling dispatcher.do_extra_handshake, setting
    request.ws_stream and writing the 101 (see handshaker_base)."""
    from mod_pywebsocket.handshake import handshaker_base

    handshaker_base.do_handshake(request, dispatcher)
