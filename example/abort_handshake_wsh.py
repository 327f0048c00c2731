"""Drops every connection during the handshake: the client gets no
response at all."""

from mod_pywebsocket import handshake


def web_socket_do_extra_handshake(request):
    raise handshake.AbortedByUserException('aborted on purpose')


def web_socket_transfer_data(request):
    pass
