"""pywebsocket3.handshake: the same module object as
mod_pywebsocket.handshake; its submodules (base, hybi, ...) are aliased
too (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.handshake')
