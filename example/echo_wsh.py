"""Echo: sends back every message; answers a close with the peer's code."""

_GOODBYE_MESSAGE = 'Goodbye'


def web_socket_do_extra_handshake(request):
    pass  # Always accept.


def web_socket_transfer_data(request):
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        request.ws_stream.send_message(
            message, binary=isinstance(message, bytes)
        )
        if message == _GOODBYE_MESSAGE:
            return


def web_socket_passive_closing_handshake(request):
    """Echo the close code and reason the client sent."""
    code, reason = request.ws_close_code, request.ws_close_reason
    if code == 1005:  # the client sent no code: send none back
        return None, ''
    return code, reason
