"""Raises inside the handler: the client sees close code 1011 and the
server logs the traceback; other connections are not affected."""


def web_socket_do_extra_handshake(request):
    pass


def web_socket_transfer_data(request):
    raise RuntimeError('internal error on purpose')
