"""One accepted socket of the standalone server: TLS, the HTTP head,
authentication and admission, then a WebSocket (on this thread, or handed
to the event loop) or a static file."""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import ssl
import time
from typing import Any, Optional

from mod_pywebsocket import common
from mod_pywebsocket.access_policy import AccessRefused, skipped_note
from mod_pywebsocket.common import (
    AbortedByUserException,
    DispatchException,
    HandshakeException,
)
from mod_pywebsocket.events import EventHandlerSuite
from mod_pywebsocket.handshake import is_websocket_upgrade
from mod_pywebsocket.http_header_util import parse_request_head, parse_uri
from mod_pywebsocket.session import do_handshake
from mod_pywebsocket.socket_transport import SocketTransport, read_http_head
from mod_pywebsocket.standalone_http import StandaloneRequest, send_error
from mod_pywebsocket.static_files import StaticFiles

_logger = logging.getLogger('mod_pywebsocket.standalone')


class Connection:
    """Serves one accepted socket: HTTP head, then WebSocket or a file."""

    def __init__(self, server: Any, sock: socket.socket, address) -> None:
        self.server = server
        self.sock = sock
        self.address = address
        self.peer = '%s:%s' % (address[0], address[1])
        self.limits_key: Optional[str] = None
        self.received = b''  # the start of the head, read by try_inline
        self.inline = False
        self.handed_over = False

    def try_inline(self) -> bool:
        """On the accepting thread: when the whole head of an RFC 6455
        request for an event-style handler has arrived already (and the
        event loop serves it), run its handshake here and hand it to the
        loop: no connection thread is woken for it. False (keeping what
        was read in `received`) to serve it on a connection thread."""
        server = self.server
        options = server.options
        if (
            server.event_loop is None
            or server.ssl_context is not None
            or options.use_basic_auth
        ):
            return False
        try:
            data = self.sock.recv(8192, socket.MSG_DONTWAIT)
        except OSError:
            return False
        self.received = data
        end = data.find(b'\r\n\r\n')
        if end < 0 or end + 4 > options.max_header_size:
            return False
        head = data[: end + 4]
        try:
            # (first the handler the request line names, without parsing
            # the head: a classic handler's head is parsed on its thread)
            words = data[: data.find(b'\r\n')].split(b' ')
            if len(words) != 3 or not isinstance(
                server.dispatcher.get_handler_suite(
                    words[1].decode('latin-1')
                ),
                EventHandlerSuite,
            ):
                return False
            parsed = parse_request_head(head)
            target = parsed[1]
            # (only the RFC 6455 / hybi-08 handshake: draft-76 reads a
            # body and keeps a thread anyway)
            if parsed[3].get(
                common.SEC_WEBSOCKET_VERSION_HEADER
            ) is None or not _target_validated(options, target):
                return False
            request = StandaloneRequest(*parsed, None, False)  # type: ignore[arg-type]
            if not is_websocket_upgrade(request) or not isinstance(
                server.dispatcher.get_handler_suite(request.uri),
                EventHandlerSuite,
            ):
                return False
        except (ValueError, DispatchException, HandshakeException):
            return False
        self.inline = True
        deadline = time.monotonic() + options.handshake_timeout
        self._serve(head, data[end + 4 :], deadline, parsed)
        return True

    def run(self) -> None:
        options = self.server.options
        sock = self.sock
        # One deadline for TLS, the head and a draft-76 body in all.
        deadline = time.monotonic() + options.handshake_timeout
        try:
            if self.server.ssl_context is not None:
                sock.settimeout(options.handshake_timeout)
                sock = self.server.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                sock.do_handshake()
                self.sock = sock
            head, rest = read_http_head(
                sock, options.max_header_size, deadline, self.received
            )
        except ValueError as e:
            _logger.info('%s: %s', self.peer, e)
            transport = SocketTransport(sock)
            transport.set_deadline(deadline)
            send_error(transport, 431, str(e))
            return self._close()
        except (OSError, EOFError, ssl.SSLError) as e:
            _logger.info(
                '%s: dropped before a complete request: %s', self.peer, e
            )
            return self._close()
        self._serve(head, rest, deadline)

    def _serve(
        self,
        head: bytes,
        rest: bytes,
        deadline: float,
        parsed: Optional[tuple] = None,
    ) -> None:
        """Answer the request whose head was read (`parsed`: that head
        parsed already)."""
        options = self.server.options
        sock = self.sock
        transport = SocketTransport(sock, rest, head, self.address)
        transport.set_deadline(deadline)
        try:
            method, target, version, headers = parsed or parse_request_head(
                head
            )
            # (urlsplit refuses some targets too: '//a[/')
            request = StandaloneRequest(
                method, target, version, headers, transport, options.use_tls
            )
        except ValueError as e:
            _logger.info('%s: bad request: %s', self.peer, e)
            send_error(transport, 400, 'Bad request: %s' % e)
            return self._close()
        try:
            if not self._authorized(request):
                send_error(
                    transport,
                    401,
                    'Authentication required',
                    [('WWW-Authenticate', 'Basic realm="mod_pywebsocket"')],
                )
            elif not _target_validated(options, target):
                send_error(transport, 404, 'Not found: %s' % target)
            elif is_websocket_upgrade(request):
                self._serve_websocket(request, transport)
            else:
                StaticFiles(self.server, request, transport).serve()
        finally:
            if not self.handed_over:
                self._close()
                self._release_limits()

    def _authorized(self, request: StandaloneRequest) -> bool:
        options = self.server.options
        if not options.use_basic_auth:
            return True
        return basic_auth_matches(
            request.headers_in.get('Authorization'),
            options.basic_auth_credential,
        )

    def _admit(self, request, transport: SocketTransport) -> bool:
        """The handshake rate limit and the connection caps."""
        limits = self.server.access_limits
        if limits is None:
            return True
        try:
            self.limits_key = limits.admit(self.address[0], time.monotonic())
        except AccessRefused as e:
            if e.log_skipped is not None:
                _logger.warning(
                    '%s %s: refused (%d): %s%s',
                    self.peer,
                    request.uri,
                    e.status,
                    e,
                    skipped_note(e.log_skipped),
                )
            send_error(transport, e.status, str(e), e.headers)
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
            do_handshake(
                request, server.dispatcher, server.server_options, transport
            )
        except AbortedByUserException as e:
            _logger.info(
                '%s %s: handshake aborted by the handler: %s',
                self.peer,
                request.uri,
                e,
            )
            return
        except (HandshakeException, DispatchException) as e:
            _logger.info(
                '%s %s: handshake failed (%d): %s',
                self.peer,
                request.uri,
                e.status,
                e,
            )
            send_error(transport, e.status, str(e), getattr(e, 'headers', []))
            return
        transport.set_deadline(None)
        self._use_budget(request)
        server.track(request, True)
        suite = server.dispatcher.get_handler_suite(request.ws_resource)
        if (
            server.event_loop is not None
            and isinstance(suite, EventHandlerSuite)
            and server.event_loop.can_serve(request.ws_stream)
        ):
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
        if self.inline:
            # (the accepting thread runs no handler: a connection thread
            # takes it from here)
            self.handed_over = True
            server.submit(lambda: self._transfer_then_close(request))
            return
        self._transfer(request)

    def _transfer_then_close(self, request) -> None:
        try:
            self._transfer(request)
        except Exception:
            self.server.handle_error(self.sock, self.address)
        finally:
            self._close()
            self._release_limits()

    def _transfer(self, request) -> None:
        server = self.server
        try:
            server.dispatcher.run_transfer_data(request)
        except AbortedByUserException:
            pass
        finally:
            server.track(request, False)
            self._release_budget(request)
        self._log_end(request)

    def _use_budget(self, request) -> None:
        conn: Any = getattr(request.ws_stream, 'connection', None)
        if hasattr(conn, 'use_budget'):
            conn.use_budget(self.server.message_budget, self.peer)

    def _release_budget(self, request) -> None:
        conn: Any = getattr(request.ws_stream, 'connection', None)
        if hasattr(conn, 'release_budget'):
            conn.release_budget()
            self.server.message_budget.give_back_memory()

    def _ended(self, request) -> None:
        self.server.track(request, False)
        self._release_budget(request)
        self._release_limits()
        self._log_end(request)

    def _log_end(self, request) -> None:
        _logger.info(
            '%s %s: %s, close code %s, %s',
            self.peer,
            request.ws_resource,
            common.VERSION_NAMES.get(request.ws_version),
            request.ws_close_code,
            _closing_summary(request),
        )

    def _close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def basic_auth_matches(header: Optional[str], credential: str) -> bool:
    """Whether an Authorization header carries `credential` (user:pass)
    in the Basic scheme: the scheme case-insensitive (RFC 7235 2.1), the
    credentials compared in constant time."""
    scheme, _, token = (header or '').strip().partition(' ')
    if scheme.lower() != 'basic':
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(given, credential.encode('utf-8'))


def _target_validated(options: Any, target: str) -> bool:
    """An absolute-URI target (GET ws://host:port/...) is a WebSocket
    request only when its host and port match --validation-host and
    --validation-port (when given); otherwise it is served as HTTP, as
    pywebsocket3 does."""
    host, port, resource = parse_uri(target)
    if host is None:
        return True
    return (
        options.validation_host is None
        or host == options.validation_host.lower()
    ) and (options.validation_port is None or port == options.validation_port)


def _closing_summary(request) -> str:
    closed_by = request.ws_stream.closed_by
    if closed_by is None:
        return 'no closing handshake'
    if request.ws_stream.closing_completed:
        return 'closed by the %s' % closed_by
    return 'close sent by the %s, not answered' % closed_by
