"""pywebsocket3._stream_exceptions: the same module object as
mod_pywebsocket.common (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.common')
