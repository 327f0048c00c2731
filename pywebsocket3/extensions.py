"""pywebsocket3.extensions: the same module object as
mod_pywebsocket.extensions (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.extensions')
