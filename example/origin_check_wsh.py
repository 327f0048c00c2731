"""Accepts only pages from http://localhost or http://127.0.0.1 (any
port); any other Origin gets 403 Forbidden."""

from urllib.parse import urlsplit

from mod_pywebsocket import handshake

_ALLOWED_HOSTS = ('localhost', '127.0.0.1')


def web_socket_do_extra_handshake(request):
    origin = request.ws_origin or ''
    if urlsplit(origin).hostname not in _ALLOWED_HOSTS:
        raise handshake.HandshakeException(
            'origin %r not allowed' % origin, 403
        )


def web_socket_transfer_data(request):
    request.ws_stream.send_message('origin accepted: %s' % request.ws_origin)
    while request.ws_stream.receive_message() is not None:
        pass
