"""pywebsocket3.http_header_util: the same module object as
mod_pywebsocket.http_header_util (see pywebsocket3/__init__.py)."""

from pywebsocket3 import _alias

_alias(__name__, 'mod_pywebsocket.http_header_util')
