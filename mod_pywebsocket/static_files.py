"""Static files of the standalone server: GET and HEAD of what a user put
under the document root, never outside it, never a handler's source."""

from __future__ import annotations

import logging
import mimetypes
import os
import posixpath
import re
import urllib.parse
from typing import Any, Optional

from mod_pywebsocket import common
from mod_pywebsocket.standalone_http import send_bytes, send_error

_logger = logging.getLogger('mod_pywebsocket.standalone')
# What makes a Python file handler source (classic or event-style).
_HANDLER_DEF = re.compile(
    rb'^\s*(?:async\s+)?def\s+(?:web_socket_\w+|on_message|on_connect)'
    rb'\s*\(',
    re.MULTILINE,
)


class StaticFiles:
    """GET/HEAD of files under the document root (never outside it)."""

    def __init__(self, server: Any, request, transport) -> None:
        self.server = server
        self.request = request
        self.transport = transport

    def serve(self) -> None:
        request = self.request
        path = request.path
        if request.method not in ('GET', 'HEAD'):
            send_error(
                self.transport,
                405,
                'Only GET and HEAD are served here',
                [('Allow', 'GET, HEAD')],
            )
            return
        if self.server.dispatcher.get_handler_suite(path) is not None:
            send_error(
                self.transport,
                426,
                '%s is a WebSocket endpoint: connect with a WebSocket '
                'client (Upgrade: websocket)' % path,
                [
                    ('Upgrade', 'websocket'),
                    (common.SEC_WEBSOCKET_VERSION_HEADER, '13, 8'),
                ],
            )
            return
        if any(
            path == d or path.startswith(d.rstrip('/') + '/')
            for d in self.server.options.cgi_directories
        ):
            # CGI is not run (see --cgi-paths); never serve script sources.
            send_error(
                self.transport,
                501,
                'CGI scripts are not run by this server: %s' % path,
            )
            _logger.warning(
                '%s GET %s: 501 (CGI is not supported)',
                request.connection.client_ip,
                path,
            )
            return
        file_path = self._file_for(path)
        if file_path is None:
            send_error(self.transport, 404, 'Not found: %s' % path)
            _logger.info('%s GET %s: 404', request.connection.client_ip, path)
            return
        content_type = (
            mimetypes.guess_type(file_path)[0] or 'application/octet-stream'
        )
        if content_type.startswith('text/') or content_type.endswith(
            ('javascript', 'json')
        ):
            content_type += '; charset=utf-8'
        size = os.path.getsize(file_path)
        head = (
            'HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d'
            '\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n'
            % (content_type, size)
        ).encode('latin-1')
        send_bytes(self.transport, head)
        if request.method == 'GET':
            with open(file_path, 'rb') as f:
                while True:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    send_bytes(self.transport, chunk)

    def _file_for(self, url_path: str) -> Optional[str]:
        root = os.path.realpath(self.server.options.document_root)
        path = posixpath.normpath(urllib.parse.unquote(url_path))
        if '\0' in path:  # (no file name has one)
            return None
        parts = [p for p in path.split('/') if p and p not in ('.', '..')]
        candidate = os.path.realpath(os.path.join(root, *parts))
        if candidate != root and not candidate.startswith(root + os.sep):
            return None
        if os.path.isdir(candidate):
            candidate = os.path.join(candidate, 'index.html')
        if not os.path.isfile(candidate) or self._is_handler(candidate):
            return None
        return candidate

    def _is_handler(self, path: str) -> bool:
        """Whether `path` is handler source: a *_wsh.py, a file bound
        with --handler, or Python that defines handler functions."""
        if path.endswith('_wsh.py'):
            return True
        if path in self.server.dispatcher.handler_files():
            return True
        if not path.endswith('.py'):
            return False
        try:
            with open(path, 'rb') as f:
                return _HANDLER_DEF.search(f.read(1 << 20)) is not None
        except OSError:
            return True
