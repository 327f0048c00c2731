"""The standalone WebSocket server: listens (accepting a connection once
its first bytes have come, see defer_accept), hands each accepted socket
to a pooled thread (standalone_connection.Connection; an event-style
handshake whose head has all arrived runs at once on the accepting thread
instead, see Connection.try_inline), owns the dispatcher,
the event loop, TLS and the access limits, and closes everything on
shutdown.
Embeddable: `WebSocketServer(parse_args([...]))`, then `serve_forever()`,
`shutdown()`, `server_close()`."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import socketserver
import ssl
import threading
import time
from typing import Any, List, Optional, Set

from mod_pywebsocket import broker, common
from mod_pywebsocket.access_policy import (
    AccessLimits,
    LimitSettings,
    PolicyError,
)
from mod_pywebsocket.budget import MessageBudget
from mod_pywebsocket.common import DispatchException
from mod_pywebsocket.dispatch import (
    Dispatcher,
    load_alias_map,
    load_handler_spec,
)
from mod_pywebsocket.event_loop import EventLoop
from mod_pywebsocket.options import OptionError, server_options
from mod_pywebsocket.standalone_connection import Connection
from mod_pywebsocket.worker_pool import WorkerPool

_logger = logging.getLogger('mod_pywebsocket.standalone')


class WebSocketServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The standalone server; `options` come from parse_args()."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        if not os.path.isdir(options.websock_handlers):
            # (a Dispatcher would serve nothing; a server says so at once)
            raise DispatchException(
                'handler root %s is not a directory (-w / -d)'
                % os.path.abspath(options.websock_handlers)
            )
        self.dispatcher = Dispatcher(
            options.websock_handlers,
            options.scan_dir,
            options.allow_handlers_outside_root_dir,
        )
        # (the dispatcher logged each of its source_warnings() once)
        if options.websock_handlers_map_file:
            load_alias_map(self.dispatcher, options.websock_handlers_map_file)
        for binding in options.handler_bindings:
            resource, _, spec = binding.partition('=')
            if not resource.startswith('/') or not spec:
                raise DispatchException(
                    '--handler takes /RESOURCE=SPEC, not %r' % binding
                )
            self.dispatcher.add_handler(resource, load_handler_spec(spec))
        try:
            self.broker = broker.configure(getattr(options, 'broker', 'local'))
        except (ValueError, ImportError, broker.BrokerUnavailable) as e:
            raise DispatchException('--broker: %s' % e) from None
        try:
            self.server_options = server_options(options)
        except OptionError as e:
            raise SystemExit('mod_pywebsocket: --allowed-origins: %s' % e)
        self.access_limits = _access_limits(options)
        self.ssl_context = _ssl_context(options) if options.use_tls else None
        self._accept_backoff = AcceptBackoff()
        self.message_budget = MessageBudget(options.max_buffered)
        self._workers = WorkerPool()
        self._connections: Set[Any] = set()
        self._connections_lock = threading.Lock()
        self.event_loop: Optional[EventLoop] = None
        if options.event_loop:
            self.event_loop = EventLoop(
                self.server_options.keepalive_interval,
                self.server_options.keepalive_timeout,
                self.server_options.close_timeout,
            )
        self.request_queue_size = options.request_queue_size
        if options.thread_stack_size:
            threading.stack_size(options.thread_stack_size)
        host = options.server_host
        family = socket.AF_INET
        if host and ':' in host:
            family = socket.AF_INET6
        self.address_family = family
        super().__init__(
            (host, options.port),
            None,  # type: ignore[arg-type]
            bind_and_activate=False,
        )
        if family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self.server_bind()
            self.server_activate()
            defer_accept(self.socket)
        except OSError as e:
            self.server_close()
            raise OSError(
                e.errno,
                'cannot listen on %s:%s: %s'
                % (host or '*', options.port, e.strerror or e),
            ) from e
        except BaseException:
            self.server_close()
            raise
        self.port = self.server_address[1]

    @property
    def _sockets(self) -> List[tuple]:
        """pywebsocket3's list of (listening socket, addrinfo) pairs,
        read by embedders (web-platform-tests) for the bound port."""
        return [
            (
                self.socket,
                (
                    self.address_family,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    '',
                    self.server_address,
                ),
            )
        ]

    def stop_event_loop(self) -> None:
        if self.event_loop is not None:
            self.event_loop.stop()

    def get_request(self) -> Any:
        """accept(); when descriptors run out (EMFILE, ENFILE, ENOBUFS,
        ENOMEM), log once a minute and back off (the listener stays
        readable: retrying at once would spin) while open connections go
        on being served."""
        try:
            accepted = self.socket.accept()
        except OSError as e:
            delay = self._accept_backoff.failed(e.errno, time.monotonic())
            if delay is None:
                raise
            if self._accept_backoff.should_log(time.monotonic()):
                _logger.error(
                    'cannot accept connections: %s; retrying '
                    'every %.2f s at most (raise the limit: '
                    'ulimit -n)',
                    e.strerror or e,
                    delay,
                )
            time.sleep(delay)
            raise
        self._accept_backoff.succeeded()
        return accepted

    def process_request(self, request, client_address) -> None:
        """Serve the accepted socket on a pooled thread (ThreadingMixIn
        would start a new thread for each), unless its handshake is for
        the event loop and can run here at once (Connection.try_inline)."""
        connection = Connection(self, request, client_address)
        try:
            if connection.try_inline():
                return
        except SystemExit:
            # (a handler's sys.exit() in on_connect ends its connection,
            # as it ends a connection thread, not the server)
            self.handle_error(request, client_address)
            return
        self._workers.submit(
            lambda: self.process_request_thread(
                connection,  # type: ignore[arg-type]
                client_address,
            )
        )

    def submit(self, job) -> None:
        """Run `job` on a pooled thread."""
        self._workers.submit(job)

    # process_request_thread calls finish_request in the pooled thread
    # (with the Connection that process_request made, or a socket).
    def finish_request(self, request, client_address) -> None:
        if not isinstance(request, Connection):
            request = Connection(self, request, client_address)
        request.run()

    def shutdown_request(self, request) -> None:
        # _Connection closes its socket itself, unless it handed it to the
        # event loop, which closes it when the connection ends.
        pass

    def handle_error(self, request, client_address) -> None:
        _logger.error('error serving %s', client_address, exc_info=True)

    def track(self, request, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(
                request
            )

    def open_connections(self) -> List:
        with self._connections_lock:
            return list(self._connections)

    def close_all(
        self,
        code: int = common.STATUS_GOING_AWAY,
        reason: str = 'server shutting down',
        timeout: float = 5.0,
        batch: int = 256,
    ) -> int:
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
            group = requests[start : start + batch]
            for request in group:
                stream = request.ws_stream
                try:
                    if hasattr(stream, 'close_soon'):
                        stream.close_soon(code, reason)  # never blocks
                    else:
                        stream.close_connection(
                            code, reason, wait_response=False
                        )
                except Exception as e:
                    _logger.debug('close on shutdown failed: %s', e)
            group_deadline = min(deadline, time.monotonic() + 0.5)
            while time.monotonic() < group_deadline and self._any_open(group):
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


class AcceptBackoff:
    """When accept() fails for want of resources: how long to wait
    before the next try (doubling from 10 ms to 1 s) and whether to log
    (once per `log_interval` seconds). Decisions only; the caller sleeps.
    """

    RESOURCE_ERRORS = frozenset(
        (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
    )

    def __init__(
        self,
        first: float = 0.01,
        most: float = 1.0,
        log_interval: float = 60.0,
    ) -> None:
        self.first = first
        self.most = most
        self.log_interval = log_interval
        self.delay = 0.0
        self._logged_at: Optional[float] = None

    def failed(self, error: Optional[int], now: float) -> Optional[float]:
        """Seconds to wait after accept() failed with `error`; None for
        errors that are not a shortage (the caller handles them)."""
        if error not in self.RESOURCE_ERRORS:
            return None
        self.delay = min(self.most, self.delay * 2 or self.first)
        return self.delay

    def should_log(self, now: float) -> bool:
        if (
            self._logged_at is not None
            and now - self._logged_at < self.log_interval
        ):
            return False
        self._logged_at = now
        return True

    def succeeded(self) -> None:
        self.delay = 0.0


# How long Linux holds an accepted connection that has sent nothing before
# passing it to accept() anyway (then --handshake-timeout applies).
DEFER_ACCEPT_SECONDS = 1


def defer_accept(sock: socket.socket) -> bool:
    """Have accept() return a connection only once its first bytes have
    come (Linux TCP_DEFER_ACCEPT, as Apache's AcceptFilter and nginx's
    `deferred` do): the request head is then there when the connection is
    accepted, so an event-style handshake runs at once on the accepting
    thread (Connection.try_inline) instead of waking a connection thread,
    and a client that connects and says nothing holds no descriptor or
    thread for its first second. False where the option does not exist."""
    option = getattr(socket, 'TCP_DEFER_ACCEPT', None)
    if option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, DEFER_ACCEPT_SECONDS)
    except OSError:
        return False
    return True


def _access_limits(options: argparse.Namespace) -> Optional[AccessLimits]:
    try:
        settings = LimitSettings(
            options.max_connections,
            options.max_connections_per_ip,
            options.ipv6_prefix_length,
            options.handshake_rate,
            options.handshake_burst,
        )
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
            raise SystemExit('--tls-ciphers %r: %s' % (options.tls_ciphers, e))
    try:
        context.load_cert_chain(options.certificate, options.private_key)
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(
            'mod_pywebsocket: cannot use the certificate %s '
            'with the key %s: %s'
            % (options.certificate, options.private_key, e)
        )
    if options.tls_client_auth:
        if not options.tls_client_ca:
            raise SystemExit('--tls-client-auth needs --tls-client-ca')
        context.verify_mode = (
            ssl.CERT_OPTIONAL
            if options.tls_client_cert_optional
            else ssl.CERT_REQUIRED
        )
        try:
            context.load_verify_locations(options.tls_client_ca)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(
                'mod_pywebsocket: cannot read the client CA '
                'file %s: %s' % (options.tls_client_ca, e)
            )
    return context
