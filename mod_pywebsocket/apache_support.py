"""The Apache host's adapters that need no mod_python: the transport over a
mod_python connection and the bridge from Python's `logging` to Apache's
error log. `headerparserhandler` wires them to mod_python.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Callable, List, Optional, Tuple

from mod_pywebsocket.dispatch import Dispatcher, Suite, resource_path

# Python logging level -> Apache (syslog) level.
_TO_APACHE = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
APLOG_DEBUG = 7


def apache_level(levelno: int) -> int:
    """The Apache log level (APLOG_*) for a Python logging level."""
    for python_level, level in _TO_APACHE:
        if levelno >= python_level:
            return level
    return APLOG_DEBUG


def python_level(apache_loglevel: Optional[int]) -> int:
    """The lowest Python level worth formatting when Apache logs at
    `apache_loglevel` (LogLevel warn = 4, info = 6, debug = 7, trace = 8+)."""
    if apache_loglevel is None:
        return logging.WARNING
    if apache_loglevel >= APLOG_DEBUG:
        return logging.DEBUG
    if apache_loglevel >= 5:  # notice, info
        return logging.INFO
    return logging.WARNING


def client_address(connection) -> str:
    """'ip:port' of the client, from client_addr / client_ip (mod_python's
    remote_addr logs a deprecation warning on every use)."""
    address = getattr(connection, 'client_addr', None)
    if isinstance(address, tuple) and len(address) >= 2:
        return '%s:%s' % (address[0], address[1])
    return str(getattr(connection, 'client_ip', None) or '-')


# What the log bridge knows about the request being served: (client
# address, Apache server object), set by the host for each request and
# reset after. A context variable: each Apache thread has its own, and
# threads a connection starts with its context (the event API's writer)
# log to the same virtual host with the same client address.
request_context: contextvars.ContextVar[Tuple[Optional[str], object]] = (
    contextvars.ContextVar('mod_pywebsocket_request', default=(None, None))
)


class ApacheLogHandler(logging.Handler):
    """Sends records to `log_error(message, apache_level, server)`, one
    call per line (tracebacks included), prefixed with the client address
    of the request the current thread serves."""

    def __init__(self, log_error: Callable[[str, int, object], None]) -> None:
        super().__init__()
        self._log_error = log_error
        self.setFormatter(logging.Formatter('%(name)s: %(message)s'))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            level = apache_level(record.levelno)
            client, server = request_context.get()
            prefix = '[client %s] ' % client if client else ''
            for line in text.splitlines() or ['']:
                self._log_error(prefix + line, level, server)
        except Exception:
            self.handleError(record)


class ConnectionTransport:
    """The stream's transport over a mod_python connection: reads return
    b'' at EOF (mod_python returns None), writes take any bytes-like
    object (mod_python takes only bytes or str) and raise OSError once the
    client is gone (mod_python only sets `connection.aborted`)."""

    def __init__(self, connection) -> None:
        self._connection = connection
        self.wrote = False  # whether anything was sent yet

    def read(self, size: int) -> bytes:
        data = self._connection.read(size)
        return data if data else b''

    def write(self, data) -> None:
        connection = self._connection
        if connection.aborted:
            raise OSError('the client connection was aborted')
        if not isinstance(data, bytes):
            data = bytes(data)
        self.wrote = True
        connection.write(data)
        if connection.aborted:
            raise OSError('the client connection was aborted')


class BoundDispatcher(Dispatcher):
    """Serves every resource in its scope with one handler suite
    (`PythonOption mod_pywebsocket.handler ...` in a <Location>): no
    handler root, no scanning. The Dispatcher's other methods find the
    suite through get_handler_suite."""

    def __init__(self, suite: Suite) -> None:
        super().__init__(None)
        self._bound = suite

    def get_handler_suite(self, resource: str) -> Optional[Suite]:
        resource_path(resource)  # a fragment is still a 400
        return self._bound

    def resources(self) -> List[str]:
        return ['* -> %s' % self._bound.path]
