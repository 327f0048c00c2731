"""pywebsocket3.stream: the same module object as
mod_pywebsocket.stream (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.stream')
