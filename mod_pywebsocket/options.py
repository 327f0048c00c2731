"""Every option of both hosts, declared once.

`OPTIONS` is the table: each entry names its standalone flags, its Apache
`PythonOption mod_pywebsocket.<name>` (when Apache has it), its parser,
default and help. From it come the standalone command line and config file
(`build_argparser`), the Apache PythonOption parsing (`parse_python_options`),
the connection settings both hosts share (`server_options`) and the
README's option reference (`reference_markdown`;
`python -m mod_pywebsocket.options` prints it).
"""

from __future__ import annotations

import os
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

if TYPE_CHECKING:  # (argparse only for the standalone command line)
    import argparse

from mod_pywebsocket import common
from mod_pywebsocket.access_policy import (
    DEFAULT_HANDSHAKE_BURST,
    DEFAULT_IPV6_PREFIX_LENGTH,
    OriginPolicyMap,
    PolicyError,
    parse_origin_policy,
)
from mod_pywebsocket.budget import DEFAULT_MAX_BUFFERED
from mod_pywebsocket.extensions import (
    MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
    DeflateSettings,
)
from mod_pywebsocket.session import ServerOptions

APACHE_PREFIX = 'mod_pywebsocket.'

DEFAULT_KEEPALIVE_INTERVAL = 20.0
DEFAULT_KEEPALIVE_TIMEOUT = 20.0

_TRUE = ('on', 'true', 'yes', '1')
_FALSE = ('off', 'false', 'no', '0')


class OptionError(ValueError):
    """An option is missing or has a value that cannot be used; the
    message names the option, the value and what is expected."""


def bad_value(name: str, value: str, expected: str) -> OptionError:
    return OptionError(
        '%s has the bad value %r: expected %s' % (name, value, expected)
    )


# ---- value parsers: (name shown in errors, text) -> value ----------------

Parser = Callable[[str, str], Any]


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_value(name, value, 'On or Off')


def int_range(low: int, high: Optional[int] = None) -> Parser:
    """A parser of integers from `low` to `high` (None: no upper bound)."""

    def parse(name: str, value: str) -> int:
        text = value.strip()
        digits = text[1:] if text.startswith('-') else text
        if not digits.isdigit() or not digits.isascii():
            raise bad_value(name, value, 'an integer')
        number = int(text)
        if number < low or (high is not None and number > high):
            raise bad_value(
                name,
                value,
                'an integer from %d to %d' % (low, high)
                if high is not None
                else 'an integer >= %d' % low,
            )
        return number

    return parse


def parse_seconds(name: str, value: str) -> float:
    """A positive number of seconds."""
    try:
        number = float(value.strip())
    except ValueError:
        raise bad_value(name, value, 'a number of seconds')
    if not 0 < number < 86400 * 365:  # also rejects nan and inf
        raise bad_value(name, value, 'a positive number of seconds')
    return number


def parse_seconds_or_off(name: str, value: str) -> float:
    """A number of seconds; 0 turns the feature off."""
    if value.strip() in ('0', '0.0'):
        return 0.0
    return parse_seconds(name, value)


def parse_rate(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise bad_value(name, value, 'a number per second')
    if not 0 <= number < 1e9:  # also rejects nan and inf
        raise bad_value(name, value, 'a number per second, 0 for off')
    return number


def parse_text(name: str, value: str) -> str:
    return value


def parse_directory(name: str, value: str) -> str:
    """An existing directory, as an absolute path (Apache children's
    working directory is not the admin's)."""
    path = value.strip()
    if not path:
        raise bad_value(name, value, 'an absolute directory path')
    if not os.path.isabs(path):
        raise bad_value(
            name,
            value,
            'an absolute path (relative paths '
            "depend on the Apache child's working directory)",
        )
    if not os.path.isdir(path):
        raise bad_value(
            name, value, 'an existing directory readable by the Apache user'
        )
    return path


def parse_absolute_path(name: str, value: str) -> str:
    path = value.strip()
    if not os.path.isabs(path):
        raise bad_value(name, value, 'an absolute directory path')
    return path


def parse_handler_spec(name: str, value: str) -> str:
    """A handler file (absolute path) or an importable module[:object]."""
    spec = value.strip()
    if spec.endswith('.py') or os.sep in spec:
        if not os.path.isabs(spec) or not os.path.isfile(spec):
            raise bad_value(
                name,
                value,
                'the absolute path of a handler '
                'file or an importable module[:object]',
            )
    elif not spec or ' ' in spec:
        raise bad_value(name, value, 'a handler file or module[:object]')
    return spec


def parse_broker(name: str, value: str) -> str:
    """`local`, or a redis:// (rediss://, unix://) URL with its options."""
    from mod_pywebsocket.broker_core import parse_broker_url

    try:
        parse_broker_url(value)
    except ValueError as e:
        raise bad_value(name, value, 'local or redis://host:port/db (%s)' % e)
    return value.strip()


def choice(*values: str) -> Parser:
    def parse(name: str, value: str) -> str:
        if value not in values:
            raise bad_value(name, value, 'one of ' + ', '.join(values))
        return value

    return parse


def int_choice(*values: int) -> Parser:
    def parse(name: str, value: str) -> int:
        text = value.strip()
        if text not in [str(v) for v in values]:
            raise bad_value(
                name, value, 'one of ' + ', '.join(str(v) for v in values)
            )
        return int(text)

    return parse


# ---- the table ----------------------------------------------------------

SWITCH = 'switch'  # a flag that turns something on
SWITCH_OFF = 'switch-off'  # a flag that turns something off (--no-...)
VALUE = 'value'
REPEATED = 'repeated'  # a flag given once per value


class Option:
    """One option of the standalone server and/or the Apache host."""

    def __init__(
        self,
        dest: str,
        flags: Sequence[str],
        help: str,
        kind: str = VALUE,
        parse: Parser = parse_text,
        default: Any = None,
        apache: Optional[str] = None,
        metavar: Optional[str] = None,
        shown_default: Optional[str] = None,
        apache_help: Optional[str] = None,
    ) -> None:
        self.dest = dest  # the standalone Namespace attribute
        self.flags = tuple(flags)  # standalone flags; () = Apache only
        self.help = help
        self.kind = kind
        self.parse = parse
        if default is None and kind in (SWITCH, SWITCH_OFF):
            default = kind == SWITCH_OFF
        self.default = default
        self.apache = apache  # PythonOption name after the prefix
        self.metavar = metavar
        self.shown_default = shown_default
        self.apache_help = apache_help or help  # where Apache differs

    @property
    def python_option(self) -> Optional[str]:
        return APACHE_PREFIX + self.apache if self.apache else None

    def parse_apache(self, text: str) -> Any:
        """The value of `PythonOption mod_pywebsocket.<name> text`."""
        name = 'PythonOption %s' % self.python_option
        if self.kind in (SWITCH, SWITCH_OFF):
            return parse_bool(name, text)  # On means: the feature is on
        return self.parse(name, text)

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.kind == SWITCH:
            return 'off'
        if self.kind == SWITCH_OFF:
            return 'on'
        if self.default in (None, [], ''):
            return '–'
        return str(self.default)


def _opt(dest: str, *flags: str, **kwargs: Any) -> Option:
    return Option(dest, flags, **kwargs)


_MIB = 1024 * 1024

OPTIONS: Tuple[Option, ...] = (
    # -- where and what to serve
    _opt(
        'config',
        '--config',
        metavar='FILE',
        help='INI file, section [pywebsocket], long option names as keys '
        '(repeatable options: one value a line); flags override it',
    ),
    _opt(
        'server_host',
        '-H',
        '--server-host',
        '--server_host',
        default='',
        shown_default='all addresses',
        help='address to listen on ("::1" or any address with ":" for IPv6)',
    ),
    _opt(
        'port',
        '-p',
        '--port',
        parse=int_range(0, 65535),
        shown_default='80, 443 with --tls',
        help='port (0 = any free port)',
    ),
    _opt(
        'document_root',
        '-d',
        '--document-root',
        '--document_root',
        default='.',
        help='directory of static files',
    ),
    _opt(
        'websock_handlers',
        '-w',
        '--websock-handlers',
        '--websock_handlers',
        shown_default='the document root',
        help='handler root',
    ),
    _opt(
        'handler_root',
        apache='handler_root',
        parse=parse_directory,
        help='handler root: resource /a/b is served by '
        '<root>/a/b_wsh.py (required unless handler is set)',
    ),
    _opt(
        'scan_dir',
        '-s',
        '--scan-dir',
        '--scan_dir',
        apache='handler_scan',
        shown_default='the handler root',
        help='scan only this directory inside the handler root '
        '(resources keep their path relative to the root)',
    ),
    _opt(
        'handler',
        apache='handler',
        parse=parse_handler_spec,
        help='serve the whole <Location> with one handler: an absolute '
        'handler file path or an importable module[:object]',
    ),
    _opt(
        'handler_bindings',
        '--handler',
        kind=REPEATED,
        default=[],
        metavar='/RESOURCE=SPEC',
        help='bind a resource to one handler, without scanning: SPEC is '
        'a handler file (path/echo_wsh.py) or an importable '
        'package.module[:object] (repeatable)',
    ),
    _opt(
        'websock_handlers_map_file',
        '-m',
        '--websock-handlers-map-file',
        '--websock_handlers_map_file',
        help='file of "alias existing" resource lines',
    ),
    _opt(
        'allow_handlers_outside_root_dir',
        '--allow-handlers-outside-root-dir',
        '--allow_handlers_outside_root_dir',
        kind=SWITCH,
        apache='allow_handlers_outside_root_dir',
        help='follow symlinks that lead out of the handler root',
    ),
    _opt(
        'validation_host',
        '-V',
        '--validation-host',
        '--validation_host',
        help='serve an absolute-URI request (GET ws://host:port/...) as '
        'WebSocket only for this host (else 404)',
    ),
    _opt(
        'validation_port',
        '-P',
        '--validation-port',
        '--validation_port',
        parse=int_range(0, 65535),
        help='likewise for the port of an absolute-URI request',
    ),
    _opt(
        'cgi_paths',
        '-x',
        '--cgi-paths',
        '--cgi_paths',
        help='accepted (pywebsocket3): comma-separated URL paths of CGI '
        'directories; CGI is not run, those paths get 501',
    ),
    _opt(
        'broker',
        '--broker',
        apache='broker',
        parse=parse_broker,
        default='local',
        metavar='URL',
        help='share groups, presence and broadcasts with other processes '
        'and servers: redis://host:port/db[?mode=pubsub|durable'
        '&window=60&retry=on] (needs the redis package); local = '
        'this process only',
        apache_help='share groups, presence and broadcasts across Apache '
        'children and servers: redis://host:port/db[?mode='
        'pubsub|durable&window=60&retry=on] (needs Debian\'s '
        'python3-redis); one broker per process',
    ),
    _opt(
        'malloc_tuning',
        '--no-malloc-tuning',
        kind=SWITCH_OFF,
        default=True,
        shown_default='tuned',
        apache='malloc_tuning',
        help='leave glibc\'s malloc thresholds alone (by default freed '
        'buffers under 4 MiB are kept for the next message, up to 8 '
        'MiB per allocator arena, and returned when connections end: '
        '1 MiB messages are up to twice as fast)',
        apache_help='tune glibc\'s malloc in each child that serves '
        'WebSockets (Off leaves it alone): freed buffers under 4 MiB are '
        'kept for the next message, up to 8 MiB per allocator arena, and '
        'returned when connections end; 1 MiB messages are up to twice '
        'as fast',
    ),
    _opt(
        'event_loop',
        '--no-event-loop',
        kind=SWITCH_OFF,
        default=True,
        shown_default='loop on',
        help='run event-style handlers (on_message) on a thread per '
        'connection instead of the shared event loop',
    ),
    # -- protocols
    _opt(
        'allow_draft75',
        '--allow-draft75',
        '--allow_draft75',
        kind=SWITCH,
        apache='allow_draft75',
        help='also accept draft-75 clients (no Sec-WebSocket-Key1/2, no '
        'closing handshake); draft-76, hybi-08 and RFC 6455 are '
        'always on',
    ),
    _opt(
        'max_message_size',
        '--max-message-size',
        parse=int_range(0),
        default=common.DEFAULT_MAX_MESSAGE_SIZE,
        apache='max_message_size',
        shown_default='64 MiB',
        help='largest message accepted, in bytes; bigger closes with 1009 '
        '(0 = no limit)',
    ),
    _opt(
        'rsv_close_code',
        '--rsv-close-code',
        parse=int_choice(
            common.STATUS_PROTOCOL_ERROR, common.STATUS_UNSUPPORTED_DATA
        ),
        default=common.STATUS_PROTOCOL_ERROR,
        apache='rsv_close_code',
        metavar='{1002,1003}',
        help='the close code for a frame whose RSV bits no negotiated '
        'extension claims: 1002 protocol error, 1003 is '
        'pywebsocket3\'s choice (the default of python -m '
        'pywebsocket3.standalone and _parse_args_and_config)',
        apache_help='the close code for a frame whose RSV bits no '
        'negotiated extension claims: 1002 protocol error, 1003 '
        'is pywebsocket3\'s choice',
    ),
    _opt(
        'max_buffered',
        '--max-buffered',
        parse=int_range(0),
        default=DEFAULT_MAX_BUFFERED,
        shown_default='512 MiB',
        apache='max_buffered',
        help='bytes of incoming messages not yet complete that all '
        'connections together may hold; a connection that needs '
        'more closes with 1009 (0 = no limit)',
        apache_help='bytes of incoming messages not yet complete that '
        'the connections of one Apache child process may '
        'hold together (a budget per child and option set, '
        'not across children); a connection that needs more '
        'closes with 1009 (0 = no limit)',
    ),
    _opt(
        'max_header_size',
        '--max-header-size',
        parse=int_range(1024),
        default=common.DEFAULT_MAX_HANDSHAKE_HEADER_SIZE,
        shown_default='64 KiB',
        help='largest HTTP request head, in bytes (beyond: 431)',
    ),
    _opt(
        'handshake_timeout',
        '--handshake-timeout',
        parse=parse_seconds,
        default=10.0,
        help='seconds a client has to complete the opening handshake',
    ),
    _opt(
        'close_timeout',
        '--close-timeout',
        parse=parse_seconds,
        default=common.DEFAULT_CLOSE_TIMEOUT,
        apache='close_timeout',
        help="seconds to wait for the peer's close frame",
        apache_help="seconds to wait for the client's close frame; under "
        "Apache the wait also ends at Apache's Timeout "
        "(mod_python has no per-read timeout)",
    ),
    _opt(
        'keepalive_interval',
        '--keepalive-interval',
        parse=parse_seconds_or_off,
        default=DEFAULT_KEEPALIVE_INTERVAL,
        help='ping an idle peer after this many seconds (0 = off)',
    ),
    _opt(
        'keepalive_timeout',
        '--keepalive-timeout',
        parse=parse_seconds_or_off,
        default=DEFAULT_KEEPALIVE_TIMEOUT,
        help='drop a peer that does not answer a keepalive ping within '
        'this many seconds',
    ),
    _opt(
        'shutdown_timeout',
        '--shutdown-timeout',
        parse=parse_seconds,
        default=5.0,
        help='seconds open connections get to close on SIGINT/SIGTERM',
    ),
    # -- permessage-deflate
    _opt(
        'deflate',
        '--no-deflate',
        kind=SWITCH_OFF,
        default=True,
        apache='deflate',
        help='decline permessage-deflate (RFC 7692)',
        apache_help='negotiate permessage-deflate (RFC 7692) when the '
        'client offers it (Off declines)',
    ),
    _opt(
        'deflate_level',
        '--deflate-level',
        parse=int_range(-1, 9),
        default=3,
        apache='deflate_compression_level',
        help='zlib compression level -1..9',
    ),
    _opt(
        'deflate_memory_level',
        '--deflate-memory-level',
        parse=int_range(1, 9),
        default=8,
        apache='deflate_memory_level',
        help='zlib memory level 1..9',
    ),
    _opt(
        'deflate_server_max_window_bits',
        '--deflate-server-max-window-bits',
        parse=int_range(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
        apache='deflate_server_max_window_bits',
        shown_default='15',
        help="limit the server's compression window (8..15; 8 is "
        "compressed with zlib's 9-bit window, whose references "
        "stay within 256 bytes)",
    ),
    _opt(
        'deflate_server_no_context_takeover',
        '--deflate-server-no-context-takeover',
        kind=SWITCH,
        apache='deflate_server_no_context_takeover',
        help="reset the server's compressor after every message",
    ),
    _opt(
        'deflate_client_max_window_bits',
        '--deflate-client-max-window-bits',
        parse=int_range(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
        apache='deflate_client_max_window_bits',
        help='ask clients to limit their window (8..15)',
    ),
    _opt(
        'deflate_client_no_context_takeover',
        '--deflate-client-no-context-takeover',
        kind=SWITCH,
        apache='deflate_client_no_context_takeover',
        help='ask clients to reset their compressor after every message',
    ),
    # -- access policy
    _opt(
        'allowed_origins',
        '--allowed-origins',
        metavar='LIST',
        apache='allowed_origins',
        shown_default='any origin',
        help='origins that may open WebSockets, comma-separated: same, '
        'https://host[:port], *.example.com, re:REGEX (see '
        'Security)',
        apache_help='origin policy, the syntax of --allowed-origins (see '
        'Security); off turns an outer scope\'s policy off',
    ),
    _opt(
        'allowed_origins_for',
        '--allowed-origins-for',
        kind=REPEATED,
        default=[],
        metavar='/RESOURCE=LIST',
        help='the policy for one resource and below it ("off" turns it '
        'off there; repeatable; Apache: allowed_origins in a '
        '<Location>)',
    ),
    _opt(
        'allow_missing_origin',
        '--allow-missing-origin',
        kind=SWITCH,
        apache='allow_missing_origin',
        help='with an origin list, also accept requests without an Origin '
        '(non-browser clients)',
    ),
    _opt(
        'max_connections',
        '--max-connections',
        parse=int_range(0),
        default=0,
        apache='max_connections',
        help='open WebSockets at most (0 = no cap); beyond: 503',
        apache_help='open WebSockets of the whole server, counted across '
        'all children (0 = no cap); beyond: 503',
    ),
    _opt(
        'max_connections_per_ip',
        '--max-connections-per-ip',
        parse=int_range(0),
        default=0,
        apache='max_connections_per_ip',
        help='open WebSockets per client address at most (0 = no cap)',
    ),
    _opt(
        'ipv6_prefix_length',
        '--ipv6-prefix-length',
        parse=int_range(0, 128),
        default=DEFAULT_IPV6_PREFIX_LENGTH,
        apache='ipv6_prefix_length',
        help='IPv6 clients are counted per network of this many bits',
    ),
    _opt(
        'handshake_rate',
        '--handshake-rate',
        parse=parse_rate,
        default=0.0,
        apache='handshake_rate',
        metavar='PER_SECOND',
        help='handshakes per second per client address on average '
        '(0 = no limit); beyond: 429',
        apache_help='handshakes per second per client address (a token '
        'bucket shared by all children; 0 = no limit); '
        'beyond: 429',
    ),
    _opt(
        'handshake_burst',
        '--handshake-burst',
        parse=int_range(1),
        default=DEFAULT_HANDSHAKE_BURST,
        apache='handshake_burst',
        metavar='N',
        help='handshakes a client address may open at once',
    ),
    _opt(
        'send_timeout',
        apache='send_timeout',
        parse=parse_seconds,
        default=30.0,
        help='seconds a client may leave a write unread before its '
        'connection is dropped (logged); the other connections of '
        'the child never wait for it',
    ),
    _opt(
        'limits_dir',
        apache='limits_dir',
        parse=parse_absolute_path,
        shown_default='/tmp/mod_pywebsocket-<uid>',
        help='private directory (created 0700) of the file Apache '
        'children share the caps and rates through',
    ),
    # -- TLS and authentication (standalone; under Apache: mod_ssl)
    _opt('use_tls', '-t', '--tls', kind=SWITCH, help='TLS (wss)'),
    _opt(
        'private_key',
        '-k',
        '--private-key',
        '--private_key',
        help='TLS private key file (PEM)',
    ),
    _opt(
        'certificate', '-c', '--certificate', help='TLS certificate file (PEM)'
    ),
    _opt(
        'tls_client_auth',
        '--tls-client-auth',
        kind=SWITCH,
        help='require a client certificate signed by --tls-client-ca',
    ),
    _opt(
        'tls_client_cert_optional',
        '--tls-client-cert-optional',
        kind=SWITCH,
        help='with --tls-client-auth: accept clients without '
        'a certificate (those that send one must pass)',
    ),
    _opt('tls_client_ca', '--tls-client-ca', help='CA file (PEM)'),
    _opt(
        'tls_min_version',
        '--tls-min-version',
        parse=choice('1.2', '1.3'),
        default='1.2',
        help='oldest TLS version accepted',
    ),
    _opt(
        'tls_ciphers',
        '--tls-ciphers',
        shown_default="Python's defaults",
        help='OpenSSL cipher string for TLS 1.2',
    ),
    _opt(
        'use_basic_auth',
        '--basic-auth',
        kind=SWITCH,
        help='require HTTP basic authentication',
    ),
    _opt(
        'basic_auth_credential',
        '--basic-auth-credential',
        default='test:test',
        help='user:password',
    ),
    # -- logging and the process
    _opt(
        'log_level',
        '--log-level',
        '--log_level',
        default='warning',
        parse=choice(
            'fine', 'debug', 'info', 'warning', 'warn', 'error', 'critical'
        ),
        help="log level (info logs every connection; fine is "
        "pywebsocket3's level below debug)",
    ),
    _opt(
        'log_file',
        '-l',
        '--log-file',
        '--log_file',
        default='',
        shown_default='stderr',
        help='log to this file',
    ),
    _opt(
        'log_max',
        '--log-max',
        '--log_max',
        parse=int_range(0),
        default=256 * 1024,
        shown_default='256 KiB',
        help='rotate --log-file at this many bytes',
    ),
    _opt(
        'log_count',
        '--log-count',
        '--log_count',
        parse=int_range(0),
        default=5,
        help='rotated log files kept',
    ),
    _opt(
        'deflate_log_level',
        '--deflate-log-level',
        '--deflate_log_level',
        default='warn',
        parse=choice('debug', 'info', 'warning', 'warn', 'error', 'critical'),
        help='log level of mod_pywebsocket.extensions',
    ),
    _opt(
        'thread_monitor_interval_in_sec',
        '--thread-monitor-interval-in-sec',
        '--thread_monitor_interval_in_sec',
        parse=int_range(-1),
        default=-1,
        help='log the live threads this often (-1 = never)',
    ),
    _opt(
        'handler_encoding',
        '--handler-encoding',
        '--handler_encoding',
        help='accepted (pywebsocket3); handler files are always UTF-8',
    ),
    _opt(
        'request_queue_size',
        '-q',
        '--queue',
        parse=int_range(1),
        default=128,
        help='listen backlog',
    ),
    _opt(
        'thread_stack_size',
        '--thread-stack-size',
        parse=int_range(0),
        default=0,
        shown_default="Python's",
        help='stack size of connection threads in bytes (0 = default)',
    ),
)

BY_DEST: Dict[str, Option] = {option.dest: option for option in OPTIONS}
BY_PYTHON_OPTION: Dict[str, Option] = {
    option.python_option: option for option in OPTIONS if option.python_option
}


# ---- the standalone command line ----------------------------------------


def _cli_type(option: Option, flag: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return option.parse(flag, text)
        except OptionError as e:
            import argparse

            raise argparse.ArgumentTypeError(str(e))

    convert.__name__ = option.dest
    return convert


def build_argparser(prog: str, description: str) -> argparse.ArgumentParser:
    """The standalone server's command line, from OPTIONS."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    for option in OPTIONS:
        if not option.flags:
            continue
        kwargs: Dict[str, Any] = {'dest': option.dest, 'help': option.help}
        if option.kind == SWITCH:
            kwargs['action'] = 'store_true'
        elif option.kind == SWITCH_OFF:
            kwargs['action'] = 'store_false'
        else:
            kwargs['type'] = _cli_type(option, option.flags[-1])
            kwargs['default'] = (
                list(option.default)
                if option.kind == REPEATED
                else option.default
            )
            if option.kind == REPEATED:
                kwargs['action'] = 'append'
            if option.metavar:
                kwargs['metavar'] = option.metavar
        parser.add_argument(*option.flags, **kwargs)
    return parser


def config_file_defaults(
    items: Iterable[Tuple[str, str]], where: str
) -> Dict[str, Any]:
    """Namespace defaults from the (key, value) pairs of a config file's
    [pywebsocket] section; keys are long flag names without dashes."""
    by_key = {
        flag[2:].replace('_', '-'): entry
        for entry in OPTIONS
        for flag in entry.flags
        if flag.startswith('--')
    }
    defaults: Dict[str, Any] = {}
    for key, value in items:
        found = by_key.get(key.replace('_', '-'))
        if found is None:
            raise OptionError('%s: unknown option %r' % (where, key))
        option = found
        name = '%s: %s' % (where, key)
        if option.kind == SWITCH:
            defaults[option.dest] = parse_bool(name, value)
        elif option.kind == SWITCH_OFF:  # "no-deflate = on" turns it off
            defaults[option.dest] = not parse_bool(name, value)
        elif option.kind == REPEATED:
            defaults[option.dest] = [
                option.parse(name, line.strip())
                for line in value.splitlines()
                if line.strip()
            ]
        else:
            defaults[option.dest] = option.parse(name, value)
    return defaults


# ---- the Apache PythonOptions -------------------------------------------


def parse_python_options(
    options: Mapping[str, str],
) -> Tuple[Dict[str, Any], List[str]]:
    """(values by dest, unknown mod_pywebsocket.* names) of a request's
    PythonOptions; OptionError names the first bad one. Options Apache
    does not have keep their defaults."""
    values: Dict[str, Any] = {
        option.dest: (
            list(option.default) if option.kind == REPEATED else option.default
        )
        for option in OPTIONS
    }
    unknown = []
    for name, text in options.items():
        if not name.startswith(APACHE_PREFIX):
            continue
        option = BY_PYTHON_OPTION.get(name)
        if option is None:
            unknown.append(name)
            continue
        values[option.dest] = option.parse_apache(text)
    return values, sorted(unknown)


# ---- what both hosts build from the values ------------------------------


def server_options(values: Any) -> ServerOptions:
    """The per-connection settings from option values (a Namespace or
    anything with the OPTIONS' dests as attributes)."""
    options = ServerOptions()
    options.allow_draft75 = values.allow_draft75
    options.max_message_size = values.max_message_size
    options.close_timeout = values.close_timeout
    options.rsv_close_code = getattr(
        values, 'rsv_close_code', common.STATUS_PROTOCOL_ERROR
    )
    if values.keepalive_interval > 0:
        options.keepalive_interval = values.keepalive_interval
        options.keepalive_timeout = values.keepalive_timeout
    options.deflate = DeflateSettings(
        enabled=values.deflate,
        compression_level=values.deflate_level,
        memory_level=values.deflate_memory_level,
        server_max_window_bits=values.deflate_server_max_window_bits,
        server_no_context_takeover=values.deflate_server_no_context_takeover,
        client_max_window_bits=values.deflate_client_max_window_bits,
        client_no_context_takeover=values.deflate_client_no_context_takeover,
    )
    options.origin_policies = origin_policies(values)
    return options


def origin_policies(values: Any) -> Optional[OriginPolicyMap]:
    """The origin policy of allowed_origins(_for) / allow_missing_origin;
    None when it is off everywhere. OptionError for a bad list."""
    try:
        default = parse_origin_policy(
            values.allowed_origins, values.allow_missing_origin
        )
        resources = {}
        for binding in values.allowed_origins_for:
            resource, sep, spec = binding.partition('=')
            if not sep or not resource.startswith('/'):
                raise PolicyError('takes /RESOURCE=LIST, not %r' % binding)
            resources[resource] = parse_origin_policy(
                spec, values.allow_missing_origin
            )
        policies = OriginPolicyMap(default, resources)
    except PolicyError as e:
        raise bad_value(
            'allowed_origins',
            values.allowed_origins or '',
            'same, origins, *.domain or re:<regex>, comma-separated (%s)' % e,
        )
    return None if policies.is_off() else policies


# ---- the README reference -----------------------------------------------


def _cell(text: str) -> str:
    return text.replace('|', '\\|')


def reference_markdown(host: str) -> str:
    """The option table of README.md for 'standalone' or 'apache'."""
    if host == 'standalone':
        rows = ['| flag | default | meaning |', '|---|---|---|']
        for option in OPTIONS:
            if not option.flags:
                continue
            shown = [f for f in option.flags if '_' not in f]
            rows.append(
                '| %s | %s | %s |'
                % (
                    ', '.join('`%s`' % f for f in shown),
                    _cell(option.default_text()),
                    _cell(option.help),
                )
            )
    elif host == 'apache':
        rows = ['| `PythonOption` | default | meaning |', '|---|---|---|']
        for option in OPTIONS:
            if not option.apache:
                continue
            rows.append(
                '| `%s` | %s | %s |'
                % (
                    option.python_option,
                    _cell(option.default_text()),
                    _cell(option.apache_help),
                )
            )
    else:
        raise ValueError('host is standalone or apache, not %r' % host)
    return '\n'.join(rows) + '\n'


def readme_block(host: str) -> str:
    """The README's generated block for `host`, markers included."""
    return (
        '<!-- options:%s (generated by python -m '
        'mod_pywebsocket.options) -->\n%s<!-- /options:%s -->\n'
        % (host, reference_markdown(host), host)
    )


if __name__ == '__main__':
    print('\n'.join(readme_block(host) for host in ('standalone', 'apache')))
