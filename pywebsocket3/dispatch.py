"""pywebsocket3.dispatch: mod_pywebsocket.dispatch's names (looked up
there on every access), except ``Dispatcher``, which is
mod_pywebsocket.dispatch.Pywebsocket3Dispatcher: handler files without
``web_socket_do_extra_handshake`` are skipped, as pywebsocket3 does. The
one module of this package that is not the same object as
mod_pywebsocket's (see pywebsocket3/__init__.py)."""

from mod_pywebsocket import dispatch as _dispatch

Dispatcher = _dispatch.Pywebsocket3Dispatcher


def __getattr__(name):
    return getattr(_dispatch, name)


def __dir__():
    return sorted(set(dir(_dispatch)) | {'Dispatcher'})
