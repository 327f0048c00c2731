"""PythonOptions of the Apache host, parsed and validated.

`headerparserhandler` hands `request.get_options()` (any mapping of str to
str) to `parse_options`, which returns an `ApacheConfig` or raises
`OptionError` whose message names the option, the bad value and what is
expected. Nothing here imports mod_python, so it is unit tested without
Apache. `ConfigCache` builds one config (and so one Dispatcher) per distinct
option set, once, also when many threads ask at the same time.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Tuple

from mod_pywebsocket.access_policy import (LimitSettings, OriginPolicyMap,
                                           PolicyError, parse_origin_policy)
from mod_pywebsocket.extensions import (MAX_WINDOW_BITS, MIN_WINDOW_BITS,
                                        DeflateSettings)
from mod_pywebsocket.session import ServerOptions

PREFIX = 'mod_pywebsocket.'

HANDLER_ROOT = PREFIX + 'handler_root'
HANDLER = PREFIX + 'handler'
HANDLER_SCAN = PREFIX + 'handler_scan'
ALLOW_HANDLERS_OUTSIDE_ROOT_DIR = PREFIX + 'allow_handlers_outside_root_dir'
ALLOW_DRAFT75 = PREFIX + 'allow_draft75'
MAX_MESSAGE_SIZE = PREFIX + 'max_message_size'
CLOSE_TIMEOUT = PREFIX + 'close_timeout'
DEFLATE = PREFIX + 'deflate'
DEFLATE_COMPRESSION_LEVEL = PREFIX + 'deflate_compression_level'
DEFLATE_MEMORY_LEVEL = PREFIX + 'deflate_memory_level'
DEFLATE_SERVER_MAX_WINDOW_BITS = PREFIX + 'deflate_server_max_window_bits'
DEFLATE_SERVER_NO_CONTEXT_TAKEOVER = (PREFIX +
                                      'deflate_server_no_context_takeover')
DEFLATE_CLIENT_MAX_WINDOW_BITS = PREFIX + 'deflate_client_max_window_bits'
DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER = (PREFIX +
                                      'deflate_client_no_context_takeover')
ALLOWED_ORIGINS = PREFIX + 'allowed_origins'
ALLOW_MISSING_ORIGIN = PREFIX + 'allow_missing_origin'
MAX_CONNECTIONS = PREFIX + 'max_connections'
MAX_CONNECTIONS_PER_IP = PREFIX + 'max_connections_per_ip'
IPV6_PREFIX_LENGTH = PREFIX + 'ipv6_prefix_length'
HANDSHAKE_RATE = PREFIX + 'handshake_rate'
HANDSHAKE_BURST = PREFIX + 'handshake_burst'
LIMITS_DIR = PREFIX + 'limits_dir'
SEND_TIMEOUT = PREFIX + 'send_timeout'

KNOWN_OPTIONS = frozenset([
    HANDLER_ROOT, HANDLER, HANDLER_SCAN, ALLOW_HANDLERS_OUTSIDE_ROOT_DIR,
    ALLOW_DRAFT75, MAX_MESSAGE_SIZE, CLOSE_TIMEOUT, DEFLATE,
    DEFLATE_COMPRESSION_LEVEL, DEFLATE_MEMORY_LEVEL,
    DEFLATE_SERVER_MAX_WINDOW_BITS, DEFLATE_SERVER_NO_CONTEXT_TAKEOVER,
    DEFLATE_CLIENT_MAX_WINDOW_BITS, DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER,
    ALLOWED_ORIGINS, ALLOW_MISSING_ORIGIN, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP, IPV6_PREFIX_LENGTH, HANDSHAKE_RATE,
    HANDSHAKE_BURST, LIMITS_DIR, SEND_TIMEOUT,
])

DEFAULT_SEND_TIMEOUT = 30.0     # seconds a client may leave a write unread

_TRUE = ('on', 'true', 'yes', '1')
_FALSE = ('off', 'false', 'no', '0')

OptionKey = Tuple[Tuple[str, str], ...]


class OptionError(ValueError):
    """A PythonOption is missing or has a value that cannot be used."""


def option_key(options: Mapping[str, str]) -> OptionKey:
    """The mod_pywebsocket.* options as a hashable, ordered key."""
    return tuple(sorted((str(name), str(value))
                        for name, value in options.items()
                        if str(name).startswith(PREFIX)))


def _bad(name: str, value: str, expected: str) -> OptionError:
    return OptionError('PythonOption %s has the bad value %r: expected %s'
                       % (name, value, expected))


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, value, 'On or Off')


def parse_int(name: str, value: str, low: int, high: Optional[int]) -> int:
    text = value.strip()
    if text.startswith('-'):
        digits = text[1:]
    else:
        digits = text
    if not digits.isdigit() or not digits.isascii():
        raise _bad(name, value, 'an integer')
    number = int(text)
    if number < low or (high is not None and number > high):
        expected = ('an integer from %d to %d' % (low, high)
                    if high is not None else 'an integer >= %d' % low)
        raise _bad(name, value, expected)
    return number


def parse_seconds(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise _bad(name, value, 'a number of seconds')
    if not 0 < number < 86400 * 365:      # also rejects nan and inf
        raise _bad(name, value, 'a positive number of seconds')
    return number


def parse_rate(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise _bad(name, value, 'a number per second')
    if not 0 <= number < 1e9:             # also rejects nan and inf
        raise _bad(name, value, 'a number per second, 0 for off')
    return number


def parse_directory(name: str, value: str) -> str:
    path = value.strip()
    if not path:
        raise _bad(name, value, 'an absolute directory path')
    if not os.path.isabs(path):
        raise _bad(name, value, 'an absolute path (relative paths depend '
                   "on the Apache child's working directory)")
    if not os.path.isdir(path):
        raise _bad(name, value, 'an existing directory readable by the '
                   'Apache user')
    return path


def parse_handler_spec(name: str, value: str) -> str:
    """A handler file (absolute path) or an importable module[:object]."""
    spec = value.strip()
    if spec.endswith('.py') or os.sep in spec:
        if not os.path.isabs(spec) or not os.path.isfile(spec):
            raise _bad(name, value, 'the absolute path of a handler file '
                       'or an importable module[:object]')
    elif not spec or ' ' in spec:
        raise _bad(name, value, 'a handler file or module[:object]')
    return spec


class ApacheConfig:
    """Everything one option set decides."""

    def __init__(self, handler_root: Optional[str],
                 handler_scan: Optional[str],
                 allow_handlers_outside_root_dir: bool,
                 server_options: ServerOptions,
                 unknown_options: List[str],
                 handler: Optional[str] = None,
                 limit_settings: Optional[LimitSettings] = None,
                 limits_dir: Optional[str] = None) -> None:
        self.handler_root = handler_root
        self.handler = handler            # one handler for the whole scope
        self.handler_scan = handler_scan
        self.allow_handlers_outside_root_dir = allow_handlers_outside_root_dir
        self.server_options = server_options
        self.unknown_options = unknown_options
        self.limit_settings = limit_settings     # None: no caps, no rate
        self.limits_dir = limits_dir
        self.dispatcher = None     # set by the host once built
        self.send_timeout = DEFAULT_SEND_TIMEOUT
        self.limits = None         # the host's SharedLimits, once built


def parse_deflate(options: Mapping[str, str]) -> DeflateSettings:
    """DeflateSettings from the mod_pywebsocket.deflate* options."""
    settings = DeflateSettings()
    value = options.get(DEFLATE)
    if value is not None:
        settings.enabled = parse_bool(DEFLATE, value)
    value = options.get(DEFLATE_COMPRESSION_LEVEL)
    if value is not None:
        settings.compression_level = parse_int(DEFLATE_COMPRESSION_LEVEL,
                                               value, -1, 9)
    value = options.get(DEFLATE_MEMORY_LEVEL)
    if value is not None:
        settings.memory_level = parse_int(DEFLATE_MEMORY_LEVEL, value, 1, 9)
    for name, field in ((DEFLATE_SERVER_MAX_WINDOW_BITS,
                         'server_max_window_bits'),
                        (DEFLATE_CLIENT_MAX_WINDOW_BITS,
                         'client_max_window_bits')):
        value = options.get(name)
        if value is not None:
            setattr(settings, field, parse_int(name, value, MIN_WINDOW_BITS,
                                               MAX_WINDOW_BITS))
    for name, field in ((DEFLATE_SERVER_NO_CONTEXT_TAKEOVER,
                         'server_no_context_takeover'),
                        (DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER,
                         'client_no_context_takeover')):
        value = options.get(name)
        if value is not None:
            setattr(settings, field, parse_bool(name, value))
    return settings


def parse_options(options: Mapping[str, str]) -> ApacheConfig:
    """Validate the PythonOptions; OptionError names the first problem."""
    options = dict(option_key(options))
    handler = options.get(HANDLER)
    if handler is not None:
        handler = parse_handler_spec(HANDLER, handler)
    root = options.get(HANDLER_ROOT)
    if root is None and handler is None:
        raise OptionError(
            'PythonOption %s is not set: add "PythonOption %s /path/to/'
            'handlers" where the WebSocket requests are served'
            % (HANDLER_ROOT, HANDLER_ROOT))
    if root is not None:
        root = parse_directory(HANDLER_ROOT, root)
    scan = options.get(HANDLER_SCAN)
    if scan is not None:
        scan = parse_directory(HANDLER_SCAN, scan)
    allow_outside = False
    if ALLOW_HANDLERS_OUTSIDE_ROOT_DIR in options:
        allow_outside = parse_bool(ALLOW_HANDLERS_OUTSIDE_ROOT_DIR,
                                   options[ALLOW_HANDLERS_OUTSIDE_ROOT_DIR])
    server = ServerOptions()
    if ALLOW_DRAFT75 in options:
        server.allow_draft75 = parse_bool(ALLOW_DRAFT75,
                                          options[ALLOW_DRAFT75])
    if MAX_MESSAGE_SIZE in options:
        # 0 turns the limit off (the stream treats a falsy limit as none)
        server.max_message_size = parse_int(
            MAX_MESSAGE_SIZE, options[MAX_MESSAGE_SIZE], 0, None)
    if CLOSE_TIMEOUT in options:
        server.close_timeout = parse_seconds(CLOSE_TIMEOUT,
                                             options[CLOSE_TIMEOUT])
    server.deflate = parse_deflate(options)
    server.origin_policies = parse_origin_options(options)
    limits = parse_limits(options)
    limits_dir = options.get(LIMITS_DIR)
    if limits_dir is not None:
        limits_dir = limits_dir.strip()
        if not os.path.isabs(limits_dir):
            raise _bad(LIMITS_DIR, limits_dir, 'an absolute directory path')
    unknown = sorted(name for name in options if name not in KNOWN_OPTIONS)
    config = ApacheConfig(root, scan, allow_outside, server, unknown,
                          handler, limits, limits_dir)
    if SEND_TIMEOUT in options:
        config.send_timeout = parse_seconds(SEND_TIMEOUT,
                                            options[SEND_TIMEOUT])
    return config


def parse_origin_options(options: Mapping[str, str]
                         ) -> Optional[OriginPolicyMap]:
    """The origin policy of allowed_origins / allow_missing_origin."""
    allow_missing = False
    if ALLOW_MISSING_ORIGIN in options:
        allow_missing = parse_bool(ALLOW_MISSING_ORIGIN,
                                   options[ALLOW_MISSING_ORIGIN])
    value = options.get(ALLOWED_ORIGINS)
    try:
        policy = parse_origin_policy(value, allow_missing)
    except PolicyError as e:
        raise _bad(ALLOWED_ORIGINS, value or '', 'same, origins, '
                   '*.domain or re:<regex>, comma-separated (%s)' % e)
    return OriginPolicyMap(policy) if policy is not None else None


def parse_limits(options: Mapping[str, str]) -> Optional[LimitSettings]:
    """Connection caps and handshake rate; None when all are off."""
    settings = LimitSettings()
    for name, field, low, high in (
            (MAX_CONNECTIONS, 'max_connections', 0, None),
            (MAX_CONNECTIONS_PER_IP, 'max_connections_per_ip', 0, None),
            (HANDSHAKE_BURST, 'handshake_burst', 1, None),
            (IPV6_PREFIX_LENGTH, 'ipv6_prefix_length', 0, 128)):
        if name in options:
            setattr(settings, field, parse_int(name, options[name], low,
                                               high))
    if HANDSHAKE_RATE in options:
        settings.handshake_rate = parse_rate(HANDSHAKE_RATE,
                                             options[HANDSHAKE_RATE])
    return settings if settings.enabled() else None


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
