"""mod_pywebsocket: WebSocket handlers in Python, served by Apache through
mod_python or by the standalone server, on one protocol core.

A handler file `<handler_root>/<path>_wsh.py` serves resource `/<path>`::

    def web_socket_do_extra_handshake(request):   # optional: raise to reject
        pass

    def web_socket_transfer_data(request):        # runs the connection
        while True:
            message = request.ws_stream.receive_message()
            if message is None:                   # the peer closed
                return
            request.ws_stream.send_message(message)

Apache: ``PythonHeaderParserHandler mod_pywebsocket.headerparserhandler``
with ``PythonOption mod_pywebsocket.handler_root /path``.
Standalone: ``python -m mod_pywebsocket.standalone -p 8880 -d example``.
"""

__version__ = '4.1.0'
