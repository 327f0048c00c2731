"""PythonOptions of the Apache host, parsed and validated.

`headerparserhandler` hands `request.get_options()` (any mapping of str to
str) to `parse_options`, which returns an `ApacheConfig` or raises
`OptionError` whose message names the option, the bad value and what is
expected. Which options exist, with their parsers and defaults, is said
by the option table (options.py), shared with the standalone server.
Nothing here imports mod_python, so it is unit tested without Apache.
`ConfigCache` builds one config (and so one Dispatcher) per distinct
option set, once, also when many threads ask at the same time.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Tuple

from mod_pywebsocket.access_policy import LimitSettings, PolicyError
from mod_pywebsocket.budget import DEFAULT_MAX_BUFFERED, MessageBudget
from mod_pywebsocket.dispatch import Dispatcher
from mod_pywebsocket.options import (
    APACHE_PREFIX,
    BY_DEST,
    BY_PYTHON_OPTION,
    OptionError,
    parse_directory,
    parse_python_options,
    server_options,
)
from mod_pywebsocket.session import ServerOptions
from mod_pywebsocket.shared_limits import SharedLimits

__all__ = [
    'OptionError',
    'ApacheConfig',
    'ConfigCache',
    'parse_options',
    'option_key',
    'KNOWN_OPTIONS',
]

PREFIX = APACHE_PREFIX


def _python_option(dest: str) -> str:
    name = BY_DEST[dest].python_option
    assert name is not None, dest
    return name


# The PythonOption names, for code and tests that refer to them.
HANDLER_ROOT = _python_option('handler_root')
HANDLER = _python_option('handler')
HANDLER_SCAN = _python_option('scan_dir')
ALLOW_HANDLERS_OUTSIDE_ROOT_DIR = _python_option(
    'allow_handlers_outside_root_dir'
)
ALLOW_DRAFT75 = _python_option('allow_draft75')
MAX_MESSAGE_SIZE = _python_option('max_message_size')
MAX_BUFFERED = _python_option('max_buffered')
CLOSE_TIMEOUT = _python_option('close_timeout')
RSV_CLOSE_CODE = _python_option('rsv_close_code')
DEFLATE = _python_option('deflate')
DEFLATE_COMPRESSION_LEVEL = _python_option('deflate_level')
DEFLATE_MEMORY_LEVEL = _python_option('deflate_memory_level')
DEFLATE_SERVER_MAX_WINDOW_BITS = _python_option(
    'deflate_server_max_window_bits'
)
DEFLATE_SERVER_NO_CONTEXT_TAKEOVER = _python_option(
    'deflate_server_no_context_takeover'
)
DEFLATE_CLIENT_MAX_WINDOW_BITS = _python_option(
    'deflate_client_max_window_bits'
)
DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER = _python_option(
    'deflate_client_no_context_takeover'
)
ALLOWED_ORIGINS = _python_option('allowed_origins')
ALLOW_MISSING_ORIGIN = _python_option('allow_missing_origin')
MAX_CONNECTIONS = _python_option('max_connections')
MAX_CONNECTIONS_PER_IP = _python_option('max_connections_per_ip')
IPV6_PREFIX_LENGTH = _python_option('ipv6_prefix_length')
HANDSHAKE_RATE = _python_option('handshake_rate')
HANDSHAKE_BURST = _python_option('handshake_burst')
LIMITS_DIR = _python_option('limits_dir')
BROKER = _python_option('broker')
SEND_TIMEOUT = _python_option('send_timeout')
DEFAULT_SEND_TIMEOUT = float(BY_DEST['send_timeout'].default)

KNOWN_OPTIONS = frozenset(BY_PYTHON_OPTION)

OptionKey = Tuple[Tuple[str, str], ...]


def option_key(options: Mapping[str, str]) -> OptionKey:
    """The mod_pywebsocket.* options as a hashable, ordered key."""
    return tuple(
        sorted(
            (str(name), str(value))
            for name, value in options.items()
            if str(name).startswith(PREFIX)
        )
    )


class ApacheConfig:
    """Everything one option set decides."""

    def __init__(
        self,
        handler_root: Optional[str],
        handler_scan: Optional[str],
        allow_handlers_outside_root_dir: bool,
        server_options: ServerOptions,
        unknown_options: List[str],
        handler: Optional[str] = None,
        limit_settings: Optional[LimitSettings] = None,
        limits_dir: Optional[str] = None,
    ) -> None:
        self.handler_root = handler_root
        self.handler = handler  # one handler for the whole scope
        self.handler_scan = handler_scan
        self.allow_handlers_outside_root_dir = allow_handlers_outside_root_dir
        self.server_options = server_options
        self.unknown_options = unknown_options
        self.limit_settings = limit_settings  # None: no caps, no rate
        self.limits_dir = limits_dir
        self.broker: Optional[str] = None  # URL (one broker per process)
        self.send_timeout = DEFAULT_SEND_TIMEOUT
        self.malloc_tuning = True  # glibc's malloc tuned in the child
        # Buffered incoming message bytes of this option set's connections
        # in this child process.
        self.message_budget = MessageBudget(DEFAULT_MAX_BUFFERED)
        self.dispatcher: Optional[Dispatcher] = None  # set by the host
        self.limits: Optional[SharedLimits] = None  # the host's, built


def parse_options(options: Mapping[str, str]) -> ApacheConfig:
    """Validate the PythonOptions; OptionError names the first problem."""
    values, unknown = parse_python_options(dict(option_key(options)))
    if values['handler_root'] is None and values['handler'] is None:
        raise OptionError(
            'PythonOption %s is not set: add "PythonOption %s /path/to/'
            'handlers" where the WebSocket requests are served'
            % (HANDLER_ROOT, HANDLER_ROOT)
        )
    if values['scan_dir'] is not None:
        values['scan_dir'] = parse_directory(
            'PythonOption ' + HANDLER_SCAN, values['scan_dir']
        )
    # Apache's Timeout bounds idle connections: no keepalive pings here.
    values['keepalive_interval'] = 0
    namespace = SimpleNamespace(**values)
    server = server_options(namespace)
    try:
        limits = LimitSettings(
            values['max_connections'],
            values['max_connections_per_ip'],
            values['ipv6_prefix_length'],
            values['handshake_rate'],
            values['handshake_burst'],
        )
    except PolicyError as e:
        raise OptionError('PythonOption %s...: %s' % (PREFIX, e))
    config = ApacheConfig(
        values['handler_root'],
        values['scan_dir'],
        values['allow_handlers_outside_root_dir'],
        server,
        unknown,
        values['handler'],
        limits if limits.enabled() else None,
        values['limits_dir'],
    )
    if BROKER in dict(option_key(options)):
        config.broker = values['broker']
    config.send_timeout = values['send_timeout']
    config.malloc_tuning = values['malloc_tuning']
    config.message_budget = MessageBudget(values['max_buffered'])
    return config


class ConfigCache:
    """Builds a value once per key. A value is published only when it is
    complete, so a second thread never sees half-initialised state; a
    build that raises is not cached (the next request tries again)."""

    def __init__(self) -> None:
        self._values: Dict[Hashable, object] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], object]) -> object:
        value = self._values.get(key)
        if value is not None:
            return value
        with self._lock:
            value = self._values.get(key)
            if value is None:
                value = build()
                self._values[key] = value
            return value

    def __len__(self) -> int:
        return len(self._values)
