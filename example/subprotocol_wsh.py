"""Chooses the first subprotocol it knows from what the client offers
("chat", then "superchat"); rejects clients that offer neither. Sends the
chosen name, then echoes."""

from mod_pywebsocket import handshake

_KNOWN = ('chat', 'superchat')


def web_socket_do_extra_handshake(request):
    offered = request.ws_requested_protocols or []
    for name in _KNOWN:
        if name in offered:
            request.ws_protocol = name
            return
    raise handshake.HandshakeException(
        'offer one of %s in Sec-WebSocket-Protocol' % ', '.join(_KNOWN), 400
    )


def web_socket_transfer_data(request):
    request.ws_stream.send_message(request.ws_protocol)
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        request.ws_stream.send_message(
            message, binary=isinstance(message, bytes)
        )
