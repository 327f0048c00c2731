"""The standalone WebSocket server: `python -m mod_pywebsocket.standalone`.

One thread per connection (handlers block), static files from the
document root, TLS, basic auth, and the same handlers as under Apache.
Embeddable: `WebSocketServer(parse_args([...]))`, then `serve_forever()`,
`shutdown()`, `server_close()`.
"""

from __future__ import annotations

import argparse
import base64
import configparser
import logging
import logging.handlers
import mimetypes
import os
import posixpath
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from typing import List, Optional, Sequence

from mod_pywebsocket import broker, common, extensions
from mod_pywebsocket.access_policy import (DEFAULT_HANDSHAKE_BURST,
                                           DEFAULT_IPV6_PREFIX_LENGTH,
                                           AccessLimits, AccessRefused,
                                           LimitSettings, OriginPolicyMap,
                                           PolicyError, parse_origin_policy,
                                           skipped_note)
from mod_pywebsocket.common import (AbortedByUserException,
                                    DispatchException, HandshakeException)
from mod_pywebsocket.dispatch import (Dispatcher, load_alias_map,
                                      load_handler_spec)
from mod_pywebsocket.event_loop import EventLoop
from mod_pywebsocket.events import EventHandlerSuite
from mod_pywebsocket.handshake import is_websocket_upgrade
from mod_pywebsocket.handshake.base import format_error_response
from mod_pywebsocket.http_header_util import (Headers, parse_request_head,
                                              parse_uri)
from mod_pywebsocket.session import ServerOptions, do_handshake
from mod_pywebsocket.socket_transport import SocketTransport, read_http_head

_logger = logging.getLogger('mod_pywebsocket.standalone')

_REASONS = {400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
            404: 'Not Found', 405: 'Method Not Allowed',
            408: 'Request Timeout', 426: 'Upgrade Required',
            429: 'Too Many Requests',
            431: 'Request Header Fields Too Large',
            500: 'Internal Server Error', 503: 'Service Unavailable'}

DEFAULT_KEEPALIVE_INTERVAL = 20.0
DEFAULT_KEEPALIVE_TIMEOUT = 20.0


class StandaloneRequest:
    """A request with the surface of mod_python's that handlers use."""

    def __init__(self, method: str, target: str, version: str,
                 headers: Headers, connection: SocketTransport,
                 is_https: bool, options: Optional[dict] = None) -> None:
        self.method = method
        self.protocol = version
        self.unparsed_uri = target
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path or '/'
        # As in pywebsocket3's standalone server, uri keeps the query
        # (handlers read it there); mod_python's uri is the path only.
        self.uri = self.path + ('?' + parts.query if parts.query else '')
        self.args = parts.query or None
        self.headers_in = headers
        self.headers_out = Headers()
        self.err_headers_out = Headers()
        self.connection = connection
        self._is_https = is_https
        self._options = options or {}

    def is_https(self) -> bool:
        return self._is_https

    def get_options(self) -> dict:
        return self._options

    def log_error(self, message: str, level: int = logging.ERROR) -> None:
        _logger.log(level if level >= logging.DEBUG else logging.ERROR,
                    '%s', message)


def _reason(status: int) -> str:
    return _REASONS.get(status, 'Error')


def _send(transport: SocketTransport, data: bytes) -> None:
    try:
        transport.write(data)
    except OSError:
        pass


def _error(transport: SocketTransport, status: int, message: str,
           headers=()) -> None:
    _send(transport, format_error_response(status, _reason(status), headers,
                                           message + '\n'))


class WebSocketServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The standalone server; `options` come from parse_args()."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        if not os.path.isdir(options.websock_handlers):
            # (a Dispatcher would serve nothing; a server says so at once)
            raise DispatchException('handler root %s is not a directory'
                                    % options.websock_handlers)
        self.dispatcher = Dispatcher(
            options.websock_handlers, options.scan_dir,
            options.allow_handlers_outside_root_dir)
        for warning in self.dispatcher.source_warnings():
            _logger.warning('handler warning: %s', warning)
        if options.websock_handlers_map_file:
            load_alias_map(self.dispatcher, options.websock_handlers_map_file)
        for binding in options.handler_bindings:
            resource, _, spec = binding.partition('=')
            if not resource.startswith('/') or not spec:
                raise DispatchException('--handler takes /RESOURCE=SPEC, '
                                        'not %r' % binding)
            self.dispatcher.add_handler(resource, load_handler_spec(spec))
        try:
            self.broker = broker.configure(getattr(options, 'broker',
                                                   'local'))
        except (ValueError, ImportError, broker.BrokerUnavailable) as e:
            raise DispatchException('--broker: %s' % e) from None
        self.server_options = _server_options(options)
        self.access_limits = _access_limits(options)
        self.ssl_context = _ssl_context(options) if options.use_tls else None
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        self.event_loop = None
        if options.event_loop:
            self.event_loop = EventLoop(
                self.server_options.keepalive_interval,
                self.server_options.keepalive_timeout,
                self.server_options.close_timeout)
        self.request_queue_size = options.request_queue_size
        if options.thread_stack_size:
            threading.stack_size(options.thread_stack_size)
        host = options.server_host
        family = socket.AF_INET
        if host and ':' in host:
            family = socket.AF_INET6
        self.address_family = family
        super().__init__((host, options.port), None, bind_and_activate=False)
        if family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise
        self.port = self.server_address[1]

    @property
    def _sockets(self) -> List[tuple]:
        """pywebsocket3's list of (listening socket, addrinfo) pairs,
        read by embedders (web-platform-tests) for the bound port."""
        return [(self.socket, (self.address_family, socket.SOCK_STREAM,
                               socket.IPPROTO_TCP, '', self.server_address))]

    def stop_event_loop(self) -> None:
        if self.event_loop is not None:
            self.event_loop.stop()

    # socketserver calls finish_request in the connection's thread.
    def finish_request(self, sock, client_address) -> None:
        _Connection(self, sock, client_address).run()

    def shutdown_request(self, request) -> None:
        # _Connection closes its socket itself, unless it handed it to the
        # event loop, which closes it when the connection ends.
        pass

    def handle_error(self, request, client_address) -> None:
        _logger.error('error serving %s', client_address, exc_info=True)

    def track(self, request, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add
             else self._connections.discard)(request)

    def open_connections(self) -> List:
        with self._connections_lock:
            return list(self._connections)

    def close_all(self, code: int = common.STATUS_GOING_AWAY,
                  reason: str = 'server shutting down',
                  timeout: float = 5.0, batch: int = 256) -> int:
        """Send close `code` to every open WebSocket, wait up to `timeout`
        seconds in all for them to end, then cut what remains. Returns how
        many were still open when the wait ended.

        Closes go out `batch` connections at a time, each batch given a
        moment to finish: waking thousands of connection threads at once
        makes them fight over the GIL for far longer than the closes take.
        """
        deadline = time.monotonic() + timeout
        requests = self.open_connections()
        for start in range(0, len(requests), batch):
            group = requests[start:start + batch]
            for request in group:
                try:
                    request.ws_stream.close_connection(code, reason,
                                                       wait_response=False)
                except Exception as e:
                    _logger.debug('close on shutdown failed: %s', e)
            group_deadline = min(deadline, time.monotonic() + 0.5)
            while (time.monotonic() < group_deadline
                   and self._any_open(group)):
                time.sleep(0.005)
        while self.open_connections() and time.monotonic() < deadline:
            time.sleep(0.02)
        remaining = self.open_connections()
        for request in remaining:
            request.connection.shutdown()
        return len(remaining)

    def _any_open(self, requests: List) -> bool:
        with self._connections_lock:
            return any(r in self._connections for r in requests)


class _Connection:
    """Serves one accepted socket: HTTP head, then WebSocket or a file."""

    def __init__(self, server: WebSocketServer, sock: socket.socket,
                 address) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.peer = '%s:%s' % (address[0], address[1])
        self.limits_key: Optional[str] = None

    def run(self) -> None:
        options = self.server.options
        sock = self.sock
        sock.settimeout(options.handshake_timeout)
        try:
            if self.server.ssl_context is not None:
                sock = self.server.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False)
                sock.do_handshake()
                self.sock = sock
            head, rest = read_http_head(sock, options.max_header_size)
        except ValueError as e:
            _logger.info('%s: %s', self.peer, e)
            _error(SocketTransport(sock), 431, str(e))
            return self._close()
        except (OSError, EOFError, ssl.SSLError) as e:
            _logger.info('%s: dropped before a complete request: %s',
                         self.peer, e)
            return self._close()
        transport = SocketTransport(sock, rest)
        try:
            method, target, version, headers = parse_request_head(head)
        except ValueError as e:
            _logger.info('%s: bad request: %s', self.peer, e)
            _error(transport, 400, 'Bad request: %s' % e)
            return self._close()
        request = StandaloneRequest(method, target, version, headers,
                                    transport, options.use_tls)
        self.handed_over = False
        try:
            if not self._authorized(request):
                _error(transport, 401, 'Authentication required',
                       [('WWW-Authenticate',
                         'Basic realm="mod_pywebsocket"')])
            elif not _target_validated(options, target):
                _error(transport, 404, 'Not found: %s' % target)
            elif is_websocket_upgrade(request):
                self._serve_websocket(request, transport)
            else:
                _StaticFiles(self.server, request, transport).serve()
        finally:
            if not self.handed_over:
                self._close()
                self._release_limits()

    def _authorized(self, request: StandaloneRequest) -> bool:
        options = self.server.options
        if not options.use_basic_auth:
            return True
        expected = 'Basic ' + base64.b64encode(
            options.basic_auth_credential.encode('utf-8')).decode('ascii')
        return request.headers_in.get('Authorization') == expected

    def _admit(self, request, transport: SocketTransport) -> bool:
        """The handshake rate limit and the connection caps."""
        limits = self.server.access_limits
        if limits is None:
            return True
        try:
            self.limits_key = limits.admit(self.address[0], time.monotonic())
        except AccessRefused as e:
            if e.log_skipped is not None:
                _logger.warning('%s %s: refused (%d): %s%s', self.peer,
                                request.uri, e.status, e,
                                skipped_note(e.log_skipped))
            _error(transport, e.status, str(e), e.headers)
            return False
        return True

    def _release_limits(self) -> None:
        key, self.limits_key = self.limits_key, None
        limits = self.server.access_limits
        if key is not None and limits is not None:
            limits.release(key)

    def _serve_websocket(self, request, transport: SocketTransport) -> None:
        server = self.server
        if not self._admit(request, transport):
            return
        try:
            do_handshake(request, server.dispatcher, server.server_options,
                         transport)
        except AbortedByUserException as e:
            _logger.info('%s %s: handshake aborted by the handler: %s',
                         self.peer, request.uri, e)
            return
        except (HandshakeException, DispatchException) as e:
            _logger.info('%s %s: handshake failed (%d): %s', self.peer,
                         request.uri, e.status, e)
            _error(transport, e.status, str(e),
                   getattr(e, 'headers', []))
            return
        self.sock.settimeout(None)
        server.track(request, True)
        suite = server.dispatcher.get_handler_suite(request.ws_resource)
        if (server.event_loop is not None
                and isinstance(suite, EventHandlerSuite)
                and server.event_loop.can_serve(request.ws_stream)):
            # (draft-75/76 streams have no non-blocking receive: they keep
            # a thread of their own)
            # The loop reads it from now on; this thread ends.
            self.handed_over = True
            try:
                server.event_loop.add(request, suite, self.sock, self._ended)
            except BaseException:
                self.handed_over = False
                raise
            return
        try:
            server.dispatcher.run_transfer_data(request)
        except AbortedByUserException:
            pass
        finally:
            server.track(request, False)
        self._log_end(request)

    def _ended(self, request) -> None:
        self.server.track(request, False)
        self._release_limits()
        self._log_end(request)

    def _log_end(self, request) -> None:
        _logger.info('%s %s: %s, close code %s, %s', self.peer,
                     request.ws_resource,
                     common.VERSION_NAMES.get(request.ws_version),
                     request.ws_close_code,
                     _closing_summary(request))

    def _close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _target_validated(options: argparse.Namespace, target: str) -> bool:
    """An absolute-URI target (GET ws://host:port/...) is a WebSocket
    request only when its host and port match --validation-host and
    --validation-port (when given); otherwise it is served as HTTP, as
    pywebsocket3 does."""
    host, port, resource = parse_uri(target)
    if host is None:
        return True
    return ((options.validation_host is None
             or host == options.validation_host.lower())
            and (options.validation_port is None
                 or port == options.validation_port))


def _closing_summary(request) -> str:
    closed_by = request.ws_stream.closed_by
    if closed_by is None:
        return 'no closing handshake'
    if request.ws_stream.closing_completed:
        return 'closed by the %s' % closed_by
    return 'close sent by the %s, not answered' % closed_by


class _StaticFiles:
    """GET/HEAD of files under the document root (never outside it)."""

    def __init__(self, server: WebSocketServer, request, transport) -> None:
        self.server = server
        self.request = request
        self.transport = transport

    def serve(self) -> None:
        request = self.request
        path = request.path
        if request.method not in ('GET', 'HEAD'):
            _error(self.transport, 405, 'Only GET and HEAD are served here',
                   [('Allow', 'GET, HEAD')])
            return
        if self.server.dispatcher.get_handler_suite(path) is not None:
            _error(self.transport, 426,
                   '%s is a WebSocket endpoint: connect with a WebSocket '
                   'client (Upgrade: websocket)' % path,
                   [('Upgrade', 'websocket'),
                    (common.SEC_WEBSOCKET_VERSION_HEADER, '13, 8')])
            return
        if any(path == d or path.startswith(d.rstrip('/') + '/')
               for d in self.server.options.cgi_directories):
            # CGI is not run (see --cgi-paths); never serve script sources.
            _error(self.transport, 501, 'CGI scripts are not run by this '
                   'server: %s' % path)
            _logger.warning('%s GET %s: 501 (CGI is not supported)',
                            request.connection.client_ip, path)
            return
        file_path = self._file_for(path)
        if file_path is None:
            _error(self.transport, 404, 'Not found: %s' % path)
            _logger.info('%s GET %s: 404', request.connection.client_ip,
                         path)
            return
        content_type = (mimetypes.guess_type(file_path)[0]
                        or 'application/octet-stream')
        if content_type.startswith('text/') or content_type.endswith(
                ('javascript', 'json')):
            content_type += '; charset=utf-8'
        size = os.path.getsize(file_path)
        head = ('HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d'
                '\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n'
                % (content_type, size)).encode('latin-1')
        _send(self.transport, head)
        if request.method == 'GET':
            with open(file_path, 'rb') as f:
                while True:
                    chunk = f.read(65536)
                    if not chunk:
                        break
                    _send(self.transport, chunk)

    def _file_for(self, url_path: str) -> Optional[str]:
        root = os.path.realpath(self.server.options.document_root)
        path = posixpath.normpath(urllib.parse.unquote(url_path))
        parts = [p for p in path.split('/') if p and p not in ('.', '..')]
        candidate = os.path.realpath(os.path.join(root, *parts))
        if candidate != root and not candidate.startswith(root + os.sep):
            return None
        if os.path.isdir(candidate):
            candidate = os.path.join(candidate, 'index.html')
        if not os.path.isfile(candidate) or candidate.endswith('_wsh.py'):
            return None
        return candidate


def _server_options(options: argparse.Namespace) -> ServerOptions:
    server_options = ServerOptions()
    server_options.allow_draft75 = options.allow_draft75
    server_options.max_message_size = options.max_message_size
    server_options.close_timeout = options.close_timeout
    if options.keepalive_interval > 0:
        server_options.keepalive_interval = options.keepalive_interval
        server_options.keepalive_timeout = options.keepalive_timeout
    server_options.deflate = extensions.DeflateSettings(
        enabled=options.deflate,
        compression_level=options.deflate_level,
        memory_level=options.deflate_memory_level,
        server_max_window_bits=options.deflate_server_max_window_bits,
        server_no_context_takeover=options.deflate_server_no_context_takeover,
        client_max_window_bits=options.deflate_client_max_window_bits,
        client_no_context_takeover=options.deflate_client_no_context_takeover)
    server_options.origin_policies = _origin_policies(options)
    return server_options


def _origin_policies(options: argparse.Namespace
                     ) -> Optional[OriginPolicyMap]:
    try:
        default = parse_origin_policy(options.allowed_origins,
                                      options.allow_missing_origin)
        resources = {}
        for binding in options.allowed_origins_for:
            resource, sep, spec = binding.partition('=')
            if not sep or not resource.startswith('/'):
                raise PolicyError('takes /RESOURCE=LIST, not %r' % binding)
            resources[resource] = parse_origin_policy(
                spec, options.allow_missing_origin)
        policies = OriginPolicyMap(default, resources)
    except PolicyError as e:
        raise SystemExit('--allowed-origins: %s' % e)
    return None if policies.is_off() else policies


def _access_limits(options: argparse.Namespace) -> Optional[AccessLimits]:
    try:
        settings = LimitSettings(options.max_connections,
                                 options.max_connections_per_ip,
                                 options.ipv6_prefix_length,
                                 options.handshake_rate,
                                 options.handshake_burst)
    except PolicyError as e:
        raise SystemExit('mod_pywebsocket: %s' % e)
    return AccessLimits(settings) if settings.enabled() else None


_TLS_VERSIONS = {'1.2': ssl.TLSVersion.TLSv1_2, '1.3': ssl.TLSVersion.TLSv1_3}


def _ssl_context(options: argparse.Namespace) -> ssl.SSLContext:
    if not options.private_key or not options.certificate:
        raise SystemExit('--tls needs --private-key and --certificate')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[options.tls_min_version]
    context.options |= ssl.OP_NO_COMPRESSION
    if options.tls_ciphers:
        try:
            context.set_ciphers(options.tls_ciphers)
        except ssl.SSLError as e:
            raise SystemExit('--tls-ciphers %r: %s' % (options.tls_ciphers,
                                                        e))
    context.load_cert_chain(options.certificate, options.private_key)
    if options.tls_client_auth:
        if not options.tls_client_ca:
            raise SystemExit('--tls-client-auth needs --tls-client-ca')
        context.verify_mode = (
            ssl.CERT_OPTIONAL if options.tls_client_cert_optional
            else ssl.CERT_REQUIRED)
        context.load_verify_locations(options.tls_client_ca)
    return context


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='python -m mod_pywebsocket.standalone',
        description='Serve WebSocket handlers (*_wsh.py) and static files.')
    add = p.add_argument
    add('--config', metavar='FILE',
        help='INI file with a [pywebsocket] section of long option names '
        '(command-line flags override it)')
    add('-H', '--server-host', '--server_host', dest='server_host',
        default='', help='address to listen on (default: all; "::1" '
        'or any address with ":" for IPv6)')
    add('-p', '--port', dest='port', type=int, default=None,
        help='port (default 80, 443 with --tls; 0 = any free port)')
    add('-d', '--document-root', '--document_root', dest='document_root',
        default='.', help='directory of static files (default: .)')
    add('-w', '--websock-handlers', '--websock_handlers',
        dest='websock_handlers', default=None,
        help='handler root (default: the document root)')
    add('-V', '--validation-host', '--validation_host',
        dest='validation_host', default=None,
        help='serve an absolute-URI WebSocket request (GET ws://HOST/...) '
        'only when its HOST is this one')
    add('-P', '--validation-port', '--validation_port',
        dest='validation_port', type=int, default=None,
        help='likewise for the port of an absolute-URI request')
    add('-x', '--cgi-paths', '--cgi_paths', dest='cgi_paths', default=None,
        help='comma-separated URL paths of CGI directories (accepted for '
        'pywebsocket3 compatibility: requests there get 501, CGI '
        'scripts are not run)')
    add('-s', '--scan-dir', '--scan_dir', dest='scan_dir', default=None,
        help='scan only this directory inside the handler root')
    add('-m', '--websock-handlers-map-file', '--websock_handlers_map_file',
        dest='websock_handlers_map_file', default=None,
        help='file of "alias existing" resource lines')
    add('--handler', dest='handler_bindings', action='append', default=[],
        metavar='/RESOURCE=SPEC',
        help='bind a resource to one handler, without scanning: SPEC is a '
        'handler file (path/echo_wsh.py) or an importable '
        'package.module[:object] (repeatable)')
    add('--broker', dest='broker', default='local', metavar='URL',
        help='share groups, presence and broadcasts with other servers: '
        'redis://host:port/db[?mode=pubsub|durable&window=60&retry=on] '
        '(needs the redis package); default: local (this process only)')
    add('--no-event-loop', dest='event_loop', action='store_false',
        help='run event-style handlers (on_message) on a thread per '
        'connection instead of the shared event loop')
    add('--allow-handlers-outside-root-dir',
        '--allow_handlers_outside_root_dir',
        dest='allow_handlers_outside_root_dir', action='store_true',
        help='follow symlinks that lead out of the handler root')
    add('--allow-draft75', '--allow_draft75', dest='allow_draft75',
        action='store_true', help='accept draft-75 handshakes')
    add('-t', '--tls', dest='use_tls', action='store_true', help='TLS (wss)')
    add('-k', '--private-key', '--private_key', dest='private_key',
        help='TLS private key file (PEM)')
    add('-c', '--certificate', dest='certificate',
        help='TLS certificate file (PEM)')
    add('--tls-client-auth', dest='tls_client_auth', action='store_true',
        help='require a client certificate signed by --tls-client-ca')
    add('--tls-client-cert-optional', dest='tls_client_cert_optional',
        action='store_true', help='with --tls-client-auth: accept clients '
        'without a certificate (those that send one must pass)')
    add('--tls-client-ca', dest='tls_client_ca', help='CA file (PEM)')
    add('--tls-min-version', dest='tls_min_version', default='1.2',
        choices=sorted(_TLS_VERSIONS),
        help='oldest TLS version accepted (default 1.2)')
    add('--tls-ciphers', dest='tls_ciphers', default=None,
        help='OpenSSL cipher string for TLS 1.2 (default: Python\'s '
        'secure defaults)')
    add('--allowed-origins', dest='allowed_origins', default=None,
        metavar='LIST', help='origins that may open WebSockets, '
        'comma-separated: same, https://host[:port], *.example.com, '
        're:REGEX (default: any origin)')
    add('--allowed-origins-for', dest='allowed_origins_for',
        action='append', default=[], metavar='/RESOURCE=LIST',
        help='the same for one resource and below it ("off" turns '
        'checking off there; repeatable)')
    add('--allow-missing-origin', dest='allow_missing_origin',
        action='store_true', help='with an origin list, also accept '
        'requests without an Origin header (non-browser clients)')
    add('--max-connections', dest='max_connections', type=int, default=0,
        help='open WebSockets at most (default 0 = no cap)')
    add('--max-connections-per-ip', dest='max_connections_per_ip',
        type=int, default=0, help='open WebSockets per client address at '
        'most (default 0 = no cap)')
    add('--ipv6-prefix-length', dest='ipv6_prefix_length', type=int,
        default=DEFAULT_IPV6_PREFIX_LENGTH, help='IPv6 clients are counted '
        'per network of this many bits (default 64)')
    add('--handshake-rate', dest='handshake_rate', type=float, default=0.0,
        metavar='PER_SECOND', help='handshakes per second per client '
        'address on average (default 0 = no limit)')
    add('--handshake-burst', dest='handshake_burst', type=int,
        default=DEFAULT_HANDSHAKE_BURST, metavar='N',
        help='handshakes a client address may open at once (default 10)')
    add('--basic-auth', dest='use_basic_auth', action='store_true',
        help='require HTTP basic authentication')
    add('--basic-auth-credential', dest='basic_auth_credential',
        default='test:test', help='user:password (default test:test)')
    add('--log-level', '--log_level', dest='log_level', default='warning',
        choices=['fine', 'debug', 'info', 'warning', 'warn', 'error',
                 'critical'],
        help='log level (default warning; info logs every connection; '
        'fine is pywebsocket3\'s level below debug)')
    add('-l', '--log-file', '--log_file', dest='log_file', default='',
        help='log to this file instead of stderr')
    add('--log-max', '--log_max', dest='log_max', type=int,
        default=256 * 1024, help='rotate --log-file at this many bytes '
        '(default 256 KiB)')
    add('--log-count', '--log_count', dest='log_count', type=int,
        default=5, help='rotated log files kept (default 5)')
    add('--deflate-log-level', '--deflate_log_level',
        dest='deflate_log_level', default='warn',
        choices=['debug', 'info', 'warning', 'warn', 'error', 'critical'],
        help='log level of mod_pywebsocket.extensions (default warn)')
    add('--thread-monitor-interval-in-sec',
        '--thread_monitor_interval_in_sec',
        dest='thread_monitor_interval_in_sec', type=int, default=-1,
        help='log the number of threads this often (-1 = never)')
    add('--handler-encoding', '--handler_encoding', dest='handler_encoding',
        default=None, help='accepted for pywebsocket3 compatibility; '
        'handler files are always read as UTF-8')
    add('-q', '--queue', dest='request_queue_size', type=int, default=128,
        help='listen backlog (default 128)')
    add('--max-message-size', dest='max_message_size', type=int,
        default=common.DEFAULT_MAX_MESSAGE_SIZE,
        help='largest message accepted, in bytes (default 64 MiB; '
        'bigger closes with 1009)')
    add('--max-header-size', dest='max_header_size', type=int,
        default=common.DEFAULT_MAX_HANDSHAKE_HEADER_SIZE,
        help='largest HTTP request head, in bytes (default 64 KiB)')
    add('--handshake-timeout', dest='handshake_timeout', type=float,
        default=10.0, help='seconds a client has to complete the opening '
        'handshake (default 10)')
    add('--close-timeout', dest='close_timeout', type=float,
        default=common.DEFAULT_CLOSE_TIMEOUT,
        help='seconds to wait for the peer\'s close frame (default 10)')
    add('--keepalive-interval', dest='keepalive_interval', type=float,
        default=DEFAULT_KEEPALIVE_INTERVAL,
        help='ping an idle peer after this many seconds (0 = off; '
        'default 20)')
    add('--keepalive-timeout', dest='keepalive_timeout', type=float,
        default=DEFAULT_KEEPALIVE_TIMEOUT,
        help='drop a peer that does not answer a keepalive ping within '
        'this many seconds (default 20)')
    add('--shutdown-timeout', dest='shutdown_timeout', type=float,
        default=5.0, help='seconds open connections get to close on '
        'SIGINT/SIGTERM (default 5)')
    add('--thread-stack-size', dest='thread_stack_size', type=int,
        default=0, help='stack size of connection threads in bytes '
        '(0 = Python default)')
    add('--no-deflate', dest='deflate', action='store_false',
        help='decline permessage-deflate')
    add('--deflate-level', dest='deflate_level', type=int, default=3,
        help='zlib compression level 0-9 (default 3)')
    add('--deflate-memory-level', dest='deflate_memory_level', type=int,
        default=8, help='zlib memory level 1-9 (default 8)')
    add('--deflate-server-max-window-bits',
        dest='deflate_server_max_window_bits', type=int, default=None,
        help='limit the server\'s compression window (8-15)')
    add('--deflate-server-no-context-takeover',
        dest='deflate_server_no_context_takeover', action='store_true',
        help='reset the server\'s compressor after every message')
    add('--deflate-client-max-window-bits',
        dest='deflate_client_max_window_bits', type=int, default=None,
        help='ask clients to limit their window (8-15)')
    add('--deflate-client-no-context-takeover',
        dest='deflate_client_no_context_takeover', action='store_true',
        help='ask clients to reset their compressor after every message')
    return p


def _apply_config_file(parser: argparse.ArgumentParser,
                       path: str) -> None:
    config = configparser.ConfigParser()
    if not config.read(path, encoding='utf-8'):
        raise SystemExit('cannot read config file %s' % path)
    if not config.has_section('pywebsocket'):
        raise SystemExit('%s has no [pywebsocket] section' % path)
    actions = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith('--'):
                actions[flag[2:].replace('_', '-')] = action
    defaults = {}
    for key, value in config.items('pywebsocket'):
        action = actions.get(key.replace('_', '-'))
        if action is None:
            raise SystemExit('%s: unknown option %r' % (path, key))
        if action.const is not None and action.nargs == 0:   # a flag
            on = value.strip().lower() in ('1', 'on', 'yes', 'true')
            defaults[action.dest] = action.const if on else action.default
        elif isinstance(action, argparse._AppendAction):   # one a line
            defaults[action.dest] = [line.strip() for line in
                                     value.splitlines() if line.strip()]
        else:
            defaults[action.dest] = (action.type(value) if action.type
                                     else value)
    parser.set_defaults(**defaults)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Options from a command line (and its --config file)."""
    options, rest = _parse(argv, known_only=False)
    return options


def _parse(argv: Optional[Sequence[str]], known_only: bool):
    parser = _build_parser()
    parse = parser.parse_known_args if known_only else (
        lambda a: (parser.parse_args(a), []))
    first, _ = parse(argv)
    if first.config:
        _apply_config_file(parser, first.config)
    options, rest = parse(argv)
    if options.port is None:
        options.port = 443 if options.use_tls else 80
    if options.websock_handlers is None:
        options.websock_handlers = options.document_root
    options.cgi_directories = (options.cgi_paths.split(',')
                               if options.cgi_paths else [])
    options.is_executable_method = None
    if options.tls_client_cert_optional and not options.tls_client_auth:
        raise SystemExit('--tls-client-cert-optional needs '
                         '--tls-client-auth')
    return options, rest


def _parse_args_and_config(args: Optional[Sequence[str]]):
    """pywebsocket3's (options, leftover arguments) from a command line
    and its --config file; web-platform-tests builds its server with it:
    `WebSocketServer(options)`, then `_sockets`, `serve_forever()`,
    `shutdown()`, `server_close()`. `options.cgi_directories` and
    `options.is_executable_method` exist (CGI is not run)."""
    return _parse(args, known_only=True)


LOGLEVEL_FINE = 9      # pywebsocket3's "fine", below DEBUG


def _level(name: str) -> int:
    if name == 'fine':
        return LOGLEVEL_FINE
    return getattr(logging, 'WARNING' if name == 'warn' else name.upper())


def _configure_logging(options: argparse.Namespace) -> None:
    logging.addLevelName(LOGLEVEL_FINE, 'FINE')
    level = _level(options.log_level)
    logging.getLogger('mod_pywebsocket.extensions').setLevel(
        max(level, _level(options.deflate_log_level)))
    handler: logging.Handler = (
        logging.handlers.RotatingFileHandler(
            options.log_file, maxBytes=options.log_max,
            backupCount=options.log_count)
        if options.log_file else logging.StreamHandler())
    handler.setFormatter(logging.Formatter(
        '[%(asctime)s] %(levelname)s %(name)s: %(message)s'))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _monitor_threads(interval: float) -> None:
    """--thread-monitor-interval-in-sec: log the live threads."""
    while True:
        time.sleep(interval)
        _logger.info('%d threads: %s', threading.active_count(),
                     ', '.join(t.name for t in threading.enumerate()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until SIGINT/SIGTERM; exit 0 after a graceful stop."""
    options = parse_args(argv)
    _configure_logging(options)
    try:
        server = WebSocketServer(options)
    except (OSError, DispatchException) as e:
        print('mod_pywebsocket: cannot start: %s' % e, file=sys.stderr)
        return 1
    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if options.thread_monitor_interval_in_sec > 0:
        threading.Thread(target=_monitor_threads, daemon=True,
                         args=(options.thread_monitor_interval_in_sec,),
                         name='ThreadMonitor').start()

    scheme = 'https' if options.use_tls else 'http'
    host = options.server_host or '127.0.0.1'
    if ':' in host:
        host = '[%s]' % host
    print('mod_pywebsocket serving %s on %s://%s:%d/ (handlers: %s)'
          % (options.document_root, scheme, host, server.port,
             ', '.join(server.dispatcher.resources()) or 'none'),
          flush=True)

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
