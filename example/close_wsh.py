"""Server-initiated close: send "CODE REASON" (e.g. "4000 bye") and the
server closes with that code and reason. "-" closes with no code."""


def web_socket_do_extra_handshake(request):
    pass


def web_socket_transfer_data(request):
    while True:
        line = request.ws_stream.receive_message()
        if line is None:
            return
        if not isinstance(line, str):
            request.ws_stream.send_message('send text: "CODE REASON"')
            continue
        code, _, reason = line.partition(' ')
        if code == '-':
            request.ws_stream.close_connection(None)
            return
        try:
            request.ws_stream.close_connection(int(code), reason)
        except Exception as e:
            request.ws_stream.send_message(
                'cannot close with %r: %s' % (line, e)
            )
            continue
        return


def web_socket_passive_closing_handshake(request):
    return request.ws_close_code, request.ws_close_reason
