"""Chat: every text message is sent to every connection of this resource
in this process (one Apache child, or the standalone server)."""

import threading

_lock = threading.Lock()
_members = set()


def web_socket_do_extra_handshake(request):
    pass


def web_socket_transfer_data(request):
    with _lock:
        _members.add(request)
    try:
        while True:
            message = request.ws_stream.receive_message()
            if message is None:
                return
            with _lock:
                members = list(_members)
            for member in members:
                try:
                    member.ws_stream.send_message(message, binary=isinstance(message, bytes))
                except Exception:
                    pass  # that member is leaving; its own thread cleans up
    finally:
        with _lock:
            _members.discard(request)
