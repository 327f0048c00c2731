"""Apache (mod_python) entry point of mod_pywebsocket.

    PythonPath "sys.path+['/path/to/parent/of/mod_pywebsocket']"
    PythonOption mod_pywebsocket.handler_root /var/www/wsh
    PythonHeaderParserHandler mod_pywebsocket.headerparserhandler

`PythonFixupHandler mod_pywebsocket.headerparserhandler` (mod_python then
calls `fixuphandler`, the same function) runs after Apache's access control
(Require, auth, IP rules), which the header-parser phase comes before.
Requests that do not ask for a WebSocket are declined and Apache serves them
as usual. This is the only module that imports mod_python; README.md
lists the options.
"""


def headerparserhandler(request):
    """Serve a WebSocket request; decline every other request."""
    # mod_python hands out a module it finds in sys.modules even while
    # another thread is still importing it (a burst of first requests
    # under a threaded MPM without PythonImport). So this function comes
    # first and waits, bounded, until the last line of the module has run.
    for _ in range(3000):
        handle = globals().get('_handle_when_imported')
        if handle is not None:
            return handle(request)
        __import__('time').sleep(0.02)
    raise ImportError(
        'mod_pywebsocket.headerparserhandler never finished importing'
    )


def fixuphandler(request):
    """`PythonFixupHandler mod_pywebsocket.headerparserhandler` calls this:
    the same, after Apache's access control."""
    return headerparserhandler(request)


import functools  # noqa: E402  (after the entry point, see above)
import logging  # noqa: E402
import time  # noqa: E402
from typing import Any, Set  # noqa: E402

from mod_python import apache  # noqa: E402

from mod_pywebsocket import apache_io, session  # noqa: E402
from mod_pywebsocket.access_policy import (  # noqa: E402
    AccessRefused,  # noqa: E402
    skipped_note,
)
from mod_pywebsocket.apache_options import (  # noqa: E402
    BROKER,  # noqa: E402
    ConfigCache,
    OptionError,
    option_key,
    parse_options,
)
from mod_pywebsocket.apache_support import (  # noqa: E402
    ApacheLogHandler,  # noqa: E402
    BoundDispatcher,
    ConnectionTransport,
    client_address,
    python_level,
    request_context,
)
from mod_pywebsocket.common import (  # noqa: E402
    AbortedByUserException,  # noqa: E402
    DispatchException,
    HandshakeException,
)
from mod_pywebsocket.info import set_up_speed  # noqa: E402
from mod_pywebsocket.dispatch import (  # noqa: E402
    Dispatcher,  # noqa: E402
    load_handler_spec,
)
from mod_pywebsocket.handshake import is_websocket_upgrade  # noqa: E402
from mod_pywebsocket.shared_limits import SharedLimits  # noqa: E402

_logger = logging.getLogger(__name__)
_package_logger = logging.getLogger('mod_pywebsocket')
_configs = ConfigCache()
# The config of each PythonOption table seen, by its items in order (a
# server has a few such tables).
_configs_by_items: dict = {}


def _log_error(message, level, server):
    if server is None:
        apache.log_error(message, level)
    else:
        apache.log_error(message, level, server)


def _install_log_bridge():
    """Send the package's log records to Apache's error log (once per
    interpreter, also when mod_python reloads this module)."""
    for handler in list(_package_logger.handlers):
        if type(handler).__name__ == ApacheLogHandler.__name__:
            _package_logger.removeHandler(handler)
    _package_logger.addHandler(ApacheLogHandler(_log_error))
    _package_logger.propagate = False


def _build_config(options):
    config = parse_options(options)
    for name in config.unknown_options:
        _logger.warning('unknown PythonOption %s ignored', name)
    if config.handler is not None:
        config.dispatcher = BoundDispatcher(load_handler_spec(config.handler))
    else:
        config.dispatcher = Dispatcher(
            config.handler_root,
            config.handler_scan,
            config.allow_handlers_outside_root_dir,
        )
    _logger.info(
        'handlers under %s: %s',
        config.handler or config.handler_root,
        ', '.join(config.dispatcher.resources()) or 'none',
    )
    set_up_speed(_logger, config.malloc_tuning)
    _logger.info('connection I/O through %s', apache_io.IO_PATH)
    if config.limit_settings is not None:
        config.limits = SharedLimits(config.limit_settings, config.limits_dir)
    if config.broker is not None:
        from mod_pywebsocket import broker  # (only where one is set)

        try:
            broker.configure(config.broker)
        except (ImportError, broker.BrokerUnavailable) as e:
            raise OptionError('PythonOption %s: %s' % (BROKER, e)) from None
    return config


def _config_for(request):
    options = request.get_options()
    # (most requests: the same option table as an earlier one, found by
    # its items as they come, without sorting or filtering them)
    items = tuple(options.items())
    config = _configs_by_items.get(items)
    if config is None:
        config = _configs.get(
            option_key(options), lambda: _build_config(options)
        )
        _configs_by_items[items] = config
    return config


def _handle(request):
    if (
        request.main is not None
        or request.prev is not None
        or not is_websocket_upgrade(request)
    ):
        return apache.DECLINED
    client = client_address(request.connection)
    server = request.server
    token = request_context.set((client, server))
    try:
        loglevel = getattr(server, 'loglevel', None)
        if loglevel != _last_loglevel:
            _set_log_level(loglevel)
        try:
            config = _config_for(request)
        except (OptionError, DispatchException) as e:
            _logger.error(
                'cannot serve WebSocket %s (HTTP 500): %s',
                request.unparsed_uri,
                e,
            )
            return apache.HTTP_INTERNAL_SERVER_ERROR
        if config.limits is None:
            return _serve(request, config, client, server)
        return _admit_and_serve(request, config, client, server)
    finally:
        request_context.reset(token)


# the Apache LogLevel the package logger follows (none yet)
_last_loglevel: object = object()


def _set_log_level(apache_loglevel):
    """The package logger's level for this server's LogLevel (set only
    when it changes: setLevel clears the cache of every logger)."""
    global _last_loglevel
    _last_loglevel = apache_loglevel
    level = python_level(apache_loglevel)
    if _package_logger.level != level:
        _package_logger.setLevel(level)


def _admit_and_serve(request, config, client, server):
    """The handshake rate limit and connection caps (shared by every
    child of this server), then the WebSocket."""
    limits = config.limits
    try:
        # useragent_ip: the client mod_remoteip names behind a proxy
        ticket = limits.admit(
            getattr(request, 'useragent_ip', None)
            or request.connection.client_ip,
            time.monotonic(),
        )
    except AccessRefused as e:
        if e.log_skipped is not None:
            _logger.warning(
                'WebSocket %s refused (HTTP %d): %s%s',
                request.unparsed_uri,
                e.status,
                e,
                skipped_note(e.log_skipped),
            )
        return _refuse_with_reason(request, e)
    except OSError as e:
        _logger.error(
            'cannot apply the connection limits to %s (HTTP 500): %s',
            request.unparsed_uri,
            e,
        )
        return apache.HTTP_INTERNAL_SERVER_ERROR
    try:
        return _serve(request, config, client, server)
    finally:
        limits.release(ticket)


def _serve(request, config, client, server):
    # A connection with a socket gets its I/O owner before the handshake:
    # the 101 and the stream use it from the start. An h2 stream's I/O
    # owner reads ahead on a thread, so it is made after the 101.
    http2 = getattr(request, 'proto_num', 0) >= 2000
    owner = None if http2 else _open_io_owner(request, config, client, server)
    transport = owner or ConnectionTransport(request.connection)
    try:
        session.do_handshake(
            request, config.dispatcher, config.server_options, transport
        )
    except BaseException as e:
        if owner is not None:
            owner.close(0)  # the connection is Apache's again
        if not isinstance(e, Exception):
            raise
        return _handshake_failed(request, transport, e)
    request.status = 101  # what the access log shows
    if http2:
        owner = _hand_to_io_owner(request, config, client, server)
    stream: Any = getattr(request, 'ws_stream', None)
    core = getattr(stream, 'connection', None)
    if not hasattr(core, 'use_budget'):
        core = None  # (draft-75/76: no budget)
    if core is not None:
        core.use_budget(config.message_budget, client)
    try:
        config.dispatcher.run_transfer_data(request)
    except AbortedByUserException as e:
        _logger.info('handler aborted %s: %s', request.unparsed_uri, e)
    except BaseException:
        # After the 101 nothing may escape: mod_python would write an
        # HTTP error page into the WebSocket stream.
        _logger.error(
            'error while serving %s', request.unparsed_uri, exc_info=True
        )
    finally:
        if owner is not None:
            # Only then may Apache use (and free) the connection again.
            owner.close(config.server_options.close_timeout)
        if core is not None:
            core.release_budget()
            config.message_budget.give_back_memory()
            # (a Stream: the connection's objects go with the request)
            stream.release_request()
    return _finish(request)


def _handshake_failed(request, transport, e):
    """The response to a handshake that raised `e`: an HTTP error, or
    nothing more once bytes went out."""
    if isinstance(e, (HandshakeException, DispatchException)):
        if transport.wrote:
            return _finish(request)
        _logger.info(
            'WebSocket handshake for %s failed (HTTP %d): %s',
            request.unparsed_uri,
            e.status,
            e,
        )
        if isinstance(e, AccessRefused):
            return _refuse_with_reason(request, e)
        return _refuse(request, e.status, getattr(e, 'headers', ()))
    if isinstance(e, AbortedByUserException):
        _logger.info(
            'handler aborted the handshake of %s: %s', request.unparsed_uri, e
        )
        return _finish(request)
    _logger.error(
        'unexpected error in the WebSocket handshake of %s',
        request.unparsed_uri,
        exc_info=e,
    )
    if transport.wrote:
        return _finish(request)
    return _refuse(request, apache.HTTP_INTERNAL_SERVER_ERROR, ())


_fallback_logged: Set[str] = set()


def _hand_to_io_owner(request, config, client, server):
    """Give an h2 stream's I/O to its owner after the handshake; None
    when it keeps mod_python's read/write (see _open_io_owner)."""
    stream = getattr(request, 'ws_stream', None)
    if stream is None or not hasattr(stream, 'use_transport'):
        return None
    owner = _open_io_owner(request, config, client, server, http2=True)
    if owner is not None:
        stream.use_transport(owner)
    return owner


def _open_io_owner(request, config, client, server, http2=False):
    """The connection's I/O owner (apache_io); None (and a warning, once
    per reason) when this Apache build cannot make one, and mod_python's
    read/write stay in use."""
    is_https = getattr(request, 'is_https', None)
    tls = bool(is_https()) if is_https is not None else True
    owner, why = apache_io.open_owner(
        request.connection,
        http2,
        tls,
        client,
        config.send_timeout,
        _idle_timeout(getattr(server, 'timeout', None)),
    )
    if owner is None:
        if why not in _fallback_logged:
            _fallback_logged.add(why)
            _logger.warning(
                'connection I/O stays with mod_python (%s): '
                'sends from other threads are unsafe',
                why,
            )
    return owner


@functools.lru_cache(maxsize=64)  # (a few Timeout values per server)
def _idle_timeout(timeout):
    """Apache's Timeout (seconds) from a server's `timeout`: how long a
    WebSocket may stay idle."""
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        return 300.0
    if timeout > 1e6:  # microseconds (apr_interval_time_t)
        timeout /= 1e6
    return timeout if timeout > 0 else 300.0


def _refuse(request, status, headers):
    """An HTTP error response; Apache writes it (with err_headers_out) and
    then closes the connection."""
    for name, value in headers:
        request.err_headers_out.add(name, value)
    request.err_headers_out['Connection'] = 'close'
    return status


def _refuse_with_reason(request, error):
    """A refusal of the access policy: its status, headers and the reason
    as a one-line text body (Apache's error page would not say why)."""
    body = (str(error) + '\n').encode('utf-8')
    request.status = error.status
    for name, value in error.headers:
        request.headers_out.add(name, value)
    request.headers_out['Connection'] = 'close'
    request.content_type = 'text/plain; charset=utf-8'
    request.set_content_length(len(body))
    request.write(body)
    return apache.DONE


def _finish(request):
    """End a request whose connection now belongs to WebSocket: no HTTP
    response of Apache's after our bytes, and no keep-alive wait."""
    request.assbackwards = 1
    request.headers_out['Connection'] = 'close'
    return apache.DONE


_install_log_bridge()
# (a child's first WebSocket then skips this; a failure is reported,
# once, by the first connection that needs the bindings)
apache_io.prepare()
_handle_when_imported = _handle  # keep last: see headerparserhandler
