"""pywebsocket3.handshake.base: the same module object as
mod_pywebsocket.handshake.base (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.handshake.base')
