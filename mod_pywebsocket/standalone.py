"""The standalone WebSocket server's command line:
`python -m mod_pywebsocket.standalone` (also the console script
`mod_pywebsocket-standalone`).

The flags come from the option table (options.py); the server itself is
standalone_server.WebSocketServer, one accepted socket is
standalone_connection.Connection, static files are static_files. The names
embedders use (pywebsocket3 and web-platform-tests included) are here:
`parse_args`, `_parse_args_and_config`, `WebSocketServer`,
`StandaloneRequest`.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import List, Optional, Sequence, Tuple

from mod_pywebsocket import __version__
from mod_pywebsocket.common import STATUS_UNSUPPORTED_DATA, DispatchException
from mod_pywebsocket.info import set_up_speed, speedups_state
from mod_pywebsocket.options import (
    OptionError,
    build_argparser,
    config_file_defaults,
)
from mod_pywebsocket.standalone_http import StandaloneRequest
from mod_pywebsocket.standalone_server import WebSocketServer

__all__ = ['WebSocketServer', 'StandaloneRequest', 'parse_args', 'main']

_logger = logging.getLogger('mod_pywebsocket.standalone')


def _apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Defaults from the [pywebsocket] section of an INI file."""
    config = configparser.ConfigParser()
    if not config.read(path, encoding='utf-8'):
        raise SystemExit('cannot read config file %s' % path)
    if not config.has_section('pywebsocket'):
        raise SystemExit('%s has no [pywebsocket] section' % path)
    try:
        defaults = config_file_defaults(config.items('pywebsocket'), path)
    except OptionError as e:
        raise SystemExit(str(e))
    parser.set_defaults(**defaults)


# Where pywebsocket3's ways in (python -m pywebsocket3.standalone,
# _parse_args_and_config) default otherwise than ours; a config file or a
# flag still wins.
PYWEBSOCKET3_DEFAULTS = {'rsv_close_code': STATUS_UNSUPPORTED_DATA}


def parse_args(
    argv: Optional[Sequence[str]] = None, *, pywebsocket3: bool = False
) -> argparse.Namespace:
    """Options from a command line (and its --config file); with
    `pywebsocket3`, PYWEBSOCKET3_DEFAULTS are the defaults."""
    options, rest = _parse(argv, known_only=False, pywebsocket3=pywebsocket3)
    return options


def _parse(
    argv: Optional[Sequence[str]], known_only: bool, pywebsocket3: bool
) -> Tuple[argparse.Namespace, List[str]]:
    parser = build_argparser(
        'python -m mod_pywebsocket.standalone',
        'Serve WebSocket handlers (*_wsh.py) and static files.',
    )
    if pywebsocket3:
        parser.set_defaults(**PYWEBSOCKET3_DEFAULTS)

    def parse(
        args: Optional[Sequence[str]],
    ) -> Tuple[argparse.Namespace, List[str]]:
        if known_only:
            return parser.parse_known_args(args)
        return parser.parse_args(args), []

    first, _ = parse(argv)
    if first.config:
        _apply_config_file(parser, first.config)
    options, rest = parse(argv)
    if options.port is None:
        options.port = 443 if options.use_tls else 80
    if options.websock_handlers is None:
        options.websock_handlers = options.document_root
    options.cgi_directories = (
        options.cgi_paths.split(',') if options.cgi_paths else []
    )
    options.is_executable_method = None
    if options.tls_client_cert_optional and not options.tls_client_auth:
        raise SystemExit('--tls-client-cert-optional needs --tls-client-auth')
    return options, rest


def _parse_args_and_config(
    args: Optional[Sequence[str]],
) -> Tuple[argparse.Namespace, List[str]]:
    """pywebsocket3's (options, leftover arguments) from a command line
    and its --config file; web-platform-tests builds its server with it:
    `WebSocketServer(options)`, then `_sockets`, `serve_forever()`,
    `shutdown()`, `server_close()`. `options.cgi_directories` and
    `options.is_executable_method` exist (CGI is not run). The defaults
    are pywebsocket3's where they differ (PYWEBSOCKET3_DEFAULTS)."""
    return _parse(args, known_only=True, pywebsocket3=True)


LOGLEVEL_FINE = 9  # pywebsocket3's "fine", below DEBUG


def _level(name: str) -> int:
    if name == 'fine':
        return LOGLEVEL_FINE
    return getattr(logging, 'WARNING' if name == 'warn' else name.upper())


def _configure_logging(options: argparse.Namespace) -> None:
    logging.addLevelName(LOGLEVEL_FINE, 'FINE')
    level = _level(options.log_level)
    logging.getLogger('mod_pywebsocket.extensions').setLevel(
        max(level, _level(options.deflate_log_level))
    )
    handler: logging.Handler = (
        logging.handlers.RotatingFileHandler(
            options.log_file,
            maxBytes=options.log_max,
            backupCount=options.log_count,
        )
        if options.log_file
        else logging.StreamHandler()
    )
    handler.setFormatter(
        logging.Formatter('[%(asctime)s] %(levelname)s %(name)s: %(message)s')
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _monitor_threads(interval: float) -> None:
    """--thread-monitor-interval-in-sec: log the live threads."""
    while True:
        time.sleep(interval)
        _logger.info(
            '%d threads: %s',
            threading.active_count(),
            ', '.join(t.name for t in threading.enumerate()),
        )


def _exit_now() -> None:
    """The end of a shutdown that took too long: exit at once."""
    _logger.warning('shutdown did not complete in time: exiting now')
    logging.shutdown()
    print('mod_pywebsocket stopped', flush=True)
    os._exit(0)


def main(
    argv: Optional[Sequence[str]] = None, *, pywebsocket3: bool = False
) -> int:
    """Run the server until SIGINT/SIGTERM; exit 0 after a graceful stop.
    `pywebsocket3`: pywebsocket3's defaults (see parse_args)."""
    options = parse_args(argv, pywebsocket3=pywebsocket3)
    _configure_logging(options)
    try:
        server = WebSocketServer(options)
    except (OSError, DispatchException) as e:
        print('mod_pywebsocket: cannot start: %s' % e, file=sys.stderr)
        return 1

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()
        # Whatever the clients do, the process ends in time.
        watchdog = threading.Timer(options.shutdown_timeout + 0.8, _exit_now)
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if options.thread_monitor_interval_in_sec > 0:
        threading.Thread(
            target=_monitor_threads,
            daemon=True,
            args=(options.thread_monitor_interval_in_sec,),
            name='ThreadMonitor',
        ).start()

    scheme = 'https' if options.use_tls else 'http'
    host = options.server_host or '127.0.0.1'
    if ':' in host:
        host = '[%s]' % host
    print(
        'mod_pywebsocket serving %s on %s://%s:%d/ (handlers: %s)'
        % (
            options.document_root,
            scheme,
            host,
            server.port,
            ', '.join(server.dispatcher.resources()) or 'none',
        ),
        flush=True,
    )
    _logger.info(
        'mod_pywebsocket %s; masking: %s', __version__, speedups_state()
    )
    set_up_speed(_logger, options.malloc_tuning)

    try:
        server.serve_forever()
    finally:
        server.server_close()
        left = server.close_all(timeout=options.shutdown_timeout)
        server.stop_event_loop()
        server.broker.close()
        if left:
            _logger.warning('%d connections did not close in time', left)
    print('mod_pywebsocket stopped', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
