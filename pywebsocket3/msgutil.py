"""pywebsocket3.msgutil: the same module object as
mod_pywebsocket.msgutil (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.msgutil')
