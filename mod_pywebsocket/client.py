"""A WebSocket client: RFC 6455, hybi-08, draft-76 and draft-75, ws:// and
wss://, subprotocols, permessage-deflate.

Library use::

    from mod_pywebsocket.client import connect
    ws = connect('ws://127.0.0.1:8880/echo')
    ws.send('hello'); print(ws.receive()); ws.close()

Command line: `python -m mod_pywebsocket.client URL` (see --help).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import ssl
import sys
import threading
import urllib.parse
from typing import Callable, List, Optional, Sequence, Union

from mod_pywebsocket import common, extensions
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.handshake.hybi import compute_accept
from mod_pywebsocket.handshake.hybi00 import compute_response
from mod_pywebsocket.http_header_util import (
    Headers,
    format_extensions,
    has_token,
    parse_extensions,
    parse_response_head,
)
from mod_pywebsocket.socket_transport import SocketTransport, read_http_head
from mod_pywebsocket.connection import WebSocketConnection
from mod_pywebsocket.stream import Stream, StreamOptions
from mod_pywebsocket.stream_hixie import StreamHixie75

VERSIONS = {
    '13': 13,
    'hybi13': 13,
    'rfc6455': 13,
    '8': 8,
    'hybi08': 8,
    '76': 76,
    'hybi00': 76,
    'draft76': 76,
    'hixie76': 76,
    '75': 75,
    'hixie75': 75,
    'draft75': 75,
}

Message = Union[str, bytes]


def _draft76_key() -> tuple:
    """A Sec-WebSocket-Key1/2 value and the number it encodes."""
    spaces = random.randint(1, 12)
    number = random.randint(0, 0xFFFFFFFF // spaces)
    key = list(str(number * spaces))
    noise = [chr(c) for c in list(range(0x21, 0x30)) + list(range(0x3A, 0x7F))]
    for _ in range(random.randint(1, 12)):
        key.insert(random.randint(0, len(key)), random.choice(noise))
    for _ in range(spaces):
        key.insert(random.randint(1, len(key) - 1), ' ')
    return ''.join(key), number


class WebSocketClient:
    """One client connection; see connect()."""

    def __init__(
        self,
        url: str,
        version: int = 13,
        protocols: Optional[List[str]] = None,
        origin: Optional[str] = None,
        deflate: bool = False,
        ca_file: Optional[str] = None,
        insecure: bool = False,
        timeout: Optional[float] = 10.0,
        headers: Optional[List[tuple]] = None,
        certificate: Optional[str] = None,
        private_key: Optional[str] = None,
        max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('ws', 'wss'):
            raise ValueError('URL must start with ws:// or wss://: %r' % url)
        if parts.fragment:
            raise ValueError('a WebSocket URL has no fragment: %r' % url)
        self.url = url
        self.version = VERSIONS.get(str(version), version)
        self.secure = parts.scheme == 'wss'
        self.host = parts.hostname or ''
        self.port = parts.port or (443 if self.secure else 80)
        default_port = self.port == (443 if self.secure else 80)
        host = '[%s]' % self.host if ':' in self.host else self.host
        self.host_header = (
            host if default_port else '%s:%d' % (host, self.port)
        )
        self.resource = (parts.path or '/') + (
            '?' + parts.query if parts.query else ''
        )
        self.protocols = protocols
        self.origin = origin
        self.deflate = deflate and self.version in (8, 13)
        self.extra_headers = headers or []
        self.max_message_size = max_message_size
        self.protocol: Optional[str] = None
        self.extensions: Optional[str] = None
        self.response_headers: Optional[Headers] = None
        sock = socket.create_connection((self.host, self.port), timeout)
        if self.secure:
            context = ssl.create_default_context(cafile=ca_file)
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if certificate:
                context.load_cert_chain(certificate, private_key)
            sock = context.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        try:
            self._handshake()
        except BaseException:
            sock.close()
            raise
        sock.settimeout(timeout)

    # ---- opening handshake ----------------------------------------------

    def _request_lines(self) -> List[str]:
        lines = [
            'GET %s HTTP/1.1' % self.resource,
            'Host: %s' % self.host_header,
        ]
        if self.version in (8, 13):
            lines += ['Upgrade: websocket', 'Connection: Upgrade']
            self._key = base64.b64encode(os.urandom(16))
            lines.append('Sec-WebSocket-Key: %s' % self._key.decode('ascii'))
            lines.append('Sec-WebSocket-Version: %d' % self.version)
            if self.origin:
                lines.append(
                    '%s: %s'
                    % (
                        'Origin'
                        if self.version == 13
                        else 'Sec-WebSocket-Origin',
                        self.origin,
                    )
                )
            if self.protocols:
                lines.append(
                    'Sec-WebSocket-Protocol: %s' % ', '.join(self.protocols)
                )
            if self.deflate:
                lines.append(
                    'Sec-WebSocket-Extensions: %s'
                    % (format_extensions([extensions.client_offer()]))
                )
        else:
            lines += ['Upgrade: WebSocket', 'Connection: Upgrade']
            protocol_header = (
                'Sec-WebSocket-Protocol'
                if self.version == 76
                else 'WebSocket-Protocol'
            )
            if self.protocols:
                lines.append('%s: %s' % (protocol_header, self.protocols[0]))
            if self.version == 76:
                self._key1, n1 = _draft76_key()
                self._key2, n2 = _draft76_key()
                lines.append('Sec-WebSocket-Key1: %s' % self._key1)
                lines.append('Sec-WebSocket-Key2: %s' % self._key2)
            lines.append('Origin: %s' % (self.origin or 'null'))
        for name, value in self.extra_headers:
            lines.append('%s: %s' % (name, value))
        return lines

    def _handshake(self) -> None:
        request = ('\r\n'.join(self._request_lines()) + '\r\n\r\n').encode(
            'latin-1'
        )
        key3 = b''
        if self.version == 76:
            key3 = os.urandom(8)
        self.sock.sendall(request + key3)
        try:
            head, rest = read_http_head(
                self.sock, common.DEFAULT_MAX_HANDSHAKE_HEADER_SIZE
            )
        except (ValueError, EOFError) as e:
            raise HandshakeException('bad handshake response: %s' % e)
        status, status_line, headers = parse_response_head(head)
        self.response_headers = headers
        if status != 101:
            body = self._refusal_body(headers, rest)
            error = HandshakeException(
                'server answered %r%s'
                % (status_line, ': ' + body if body else ''),
                status,
            )
            error.body = body  # type: ignore[attr-defined]
            raise error
        if self.version in (8, 13):
            stream = self._accept_hybi(headers, rest)
        else:
            stream = self._accept_hixie(headers, rest, key3)
        self.stream = stream

    def _refusal_body(self, headers: Headers, rest: bytes) -> str:
        """The (short) body of a refusal, read up to Content-Length or 4
        KiB, as text."""
        try:
            length = min(int(headers.get('Content-Length') or 4096), 4096)
        except ValueError:
            length = 4096
        body = rest[:length]
        try:
            while len(body) < length:
                data = self.sock.recv(length - len(body))
                if not data:
                    break
                body += data
        except OSError:
            pass
        return body.decode('utf-8', 'replace').strip()

    def _accept_hybi(self, headers, rest: bytes) -> Stream:
        if not has_token(headers.get('Upgrade'), 'websocket'):
            raise HandshakeException('response lacks Upgrade: websocket')
        if not has_token(headers.get('Connection'), 'upgrade'):
            raise HandshakeException('response lacks Connection: Upgrade')
        if headers.get('Sec-WebSocket-Accept', '').encode(
            'ascii', 'replace'
        ) != compute_accept(self._key):
            raise HandshakeException('wrong Sec-WebSocket-Accept')
        self.protocol = headers.get('Sec-WebSocket-Protocol')
        if self.protocol is not None and self.protocol not in (
            self.protocols or []
        ):
            raise HandshakeException(
                'server chose subprotocol %r that was '
                'not offered' % self.protocol
            )
        options = StreamOptions()
        options.mask_send = True
        options.expect_masked = False
        options.max_message_size = self.max_message_size
        self.extensions = headers.get('Sec-WebSocket-Extensions')
        if self.extensions:
            accepted = parse_extensions(self.extensions)
            if (
                len(accepted) != 1
                or not self.deflate
                or accepted[0].name() != common.PERMESSAGE_DEFLATE_EXTENSION
            ):
                raise HandshakeException(
                    'server accepted extensions that '
                    'were not offered: %s' % self.extensions
                )
            try:
                options.deflater, options.inflater = (
                    extensions.accept_server_response(accepted[0])
                )
            except ValueError as e:
                raise HandshakeException(
                    'bad permessage-deflate answer: %s' % e
                )
        self.transport = SocketTransport(self.sock, rest)
        return Stream(None, options, self.transport)

    def _accept_hixie(self, headers, rest: bytes, key3: bytes):
        if (
            headers.get('Upgrade', '').lower() != 'websocket'
            or headers.get('Connection', '').lower() != 'upgrade'
        ):
            raise HandshakeException('response lacks the Upgrade headers')
        prefix = 'Sec-WebSocket-' if self.version == 76 else 'WebSocket-'
        scheme = 'wss' if self.secure else 'ws'
        location = '%s://%s%s' % (scheme, self.host_header, self.resource)
        if headers.get(prefix + 'Location') != location:
            raise HandshakeException(
                'wrong %sLocation: %r (expected %r)'
                % (prefix, headers.get(prefix + 'Location'), location)
            )
        self.protocol = headers.get(prefix + 'Protocol')
        self.transport = SocketTransport(self.sock, rest)
        if self.version == 76:
            body = b''
            while len(body) < 16:
                data = self.transport.read(16 - len(body))
                if not data:
                    raise HandshakeException('handshake response cut short')
                body += data
            if body != compute_response(self._key1, self._key2, key3):
                raise HandshakeException('wrong draft-76 challenge response')
        return StreamHixie75(
            None, self.version == 76, self.max_message_size, self.transport
        )

    # ---- messages -------------------------------------------------------

    def send(self, message: Message, binary: Optional[bool] = None) -> None:
        """Send str as text, bytes as binary."""
        self.stream.send_message(
            message,
            binary=isinstance(message, bytes) if binary is None else binary,
        )

    @property
    def server_closed(self) -> bool:
        """Whether the server's close arrived (or receiving ended with a
        protocol error)."""
        core = self.stream.connection
        return core.close_received is not None or core.error is not None

    @property
    def close_sent(self) -> bool:
        """Whether our close frame went out."""
        return self.stream.connection.close_sent is not None

    def on_pong(self, callback: Optional[Callable[[bytes], None]]) -> None:
        """Call `callback(payload)` for each pong the server sends."""
        self.stream.set_control_handlers(on_pong=callback)

    def receive(self) -> Optional[Message]:
        """The next message, or None once the server has closed."""
        if self.server_closed:
            return None
        return self.stream.receive_message()

    def ping(self, body: bytes = b'') -> None:
        self.stream.send_ping(body)

    @property
    def close_code(self) -> Optional[int]:
        """The close code the server sent (1005 for none; None before the
        server's close, and on draft-75/76, which have no codes)."""
        core = self.stream.connection
        received = core.close_received
        if (
            received is None
            or core.error is not None
            or not isinstance(core, WebSocketConnection)
        ):
            return None
        return (
            common.STATUS_NO_STATUS_RECEIVED
            if received.code is None
            else received.code
        )

    @property
    def close_reason(self) -> Optional[str]:
        received = self.stream.connection.close_received
        return (
            None
            if self.close_code is None or received is None
            else received.reason
        )

    def close(
        self,
        code: Optional[int] = common.STATUS_NORMAL_CLOSURE,
        reason: str = '',
    ) -> None:
        """Closing handshake (waits for the server's close), then the
        TCP connection is closed."""
        try:
            if not self.close_sent:
                self.stream.close_connection(code, reason)
        finally:
            self.transport.close()

    def __enter__(self) -> 'WebSocketClient':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(
    url: str,
    version: Union[int, str] = 13,
    protocols: Optional[List[str]] = None,
    origin: Optional[str] = None,
    deflate: bool = False,
    ca_file: Optional[str] = None,
    insecure: bool = False,
    timeout: Optional[float] = 10.0,
    **kwargs,
) -> WebSocketClient:
    """Open a WebSocket. `version`: 13 (RFC 6455), 8 (hybi-08), 76
    (draft-76 / hybi-00) or 75 (draft-75)."""
    number = VERSIONS.get(str(version))
    if number is None:
        raise ValueError('unknown WebSocket version %r' % (version,))
    return WebSocketClient(
        url,
        number,
        protocols,
        origin,
        deflate,
        ca_file,
        insecure,
        timeout,
        **kwargs,
    )


# ---- command line -------------------------------------------------------


def _show(message: Optional[Message]) -> str:
    if isinstance(message, bytes):
        return '<%d bytes binary> %s' % (len(message), message[:64].hex())
    return str(message)


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog='python -m mod_pywebsocket.client',
        description='Connect to a WebSocket server; send lines typed (or '
        '--message / --binary-file) and print what arrives.',
    )
    p.add_argument('url', help='ws:// or wss:// URL')
    p.add_argument(
        '-v',
        '--protocol-version',
        default='13',
        choices=sorted(VERSIONS),
        help='13 (RFC 6455, default), 8 (hybi-08), '
        '76 (draft-76), 75 (draft-75)',
    )
    p.add_argument('-o', '--origin', default=None, help='Origin header')
    p.add_argument(
        '-P',
        '--protocols',
        default=None,
        help='comma-separated subprotocols to offer',
    )
    p.add_argument(
        '--deflate', action='store_true', help='offer permessage-deflate'
    )
    p.add_argument(
        '-m',
        '--message',
        action='append',
        default=[],
        help='send this text message (repeatable); each waits for one reply',
    )
    p.add_argument(
        '--binary-file',
        action='append',
        default=[],
        help='send this file as a binary message (repeatable)',
    )
    p.add_argument('--ca-file', default=None, help='CA file for wss://')
    p.add_argument(
        '--insecure',
        action='store_true',
        help='do not verify the server certificate',
    )
    p.add_argument('--close-code', type=int, default=1000)
    p.add_argument('--close-reason', default='')
    p.add_argument(
        '--timeout',
        type=float,
        default=10.0,
        help='seconds to wait for the server (default 10)',
    )
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    protocols = (
        [p.strip() for p in args.protocols.split(',') if p.strip()]
        if args.protocols
        else None
    )
    try:
        ws = connect(
            args.url,
            args.protocol_version,
            protocols,
            args.origin,
            args.deflate,
            args.ca_file,
            args.insecure,
            args.timeout,
        )
    except (OSError, HandshakeException, ValueError) as e:
        print('Connection failed: %s' % e, file=sys.stderr)
        return 1
    print(
        'Connected to %s (version %s, subprotocol %s, extensions %s)'
        % (args.url, args.protocol_version, ws.protocol, ws.extensions),
        flush=True,
    )
    scripted = [(m, False) for m in args.message]
    for path in args.binary_file:
        with open(path, 'rb') as f:
            scripted.append((f.read(), True))
    try:
        if scripted:
            for message, _ in scripted:
                ws.send(message)
                print('> %s' % _show(message), flush=True)
                reply = ws.receive()
                if reply is None:
                    break
                print('< %s' % _show(reply), flush=True)
        else:
            _interactive(ws)
        if not ws.server_closed:
            ws.close(args.close_code, args.close_reason)
    except (OSError, common.WebSocketError) as e:
        print('Connection error: %s' % e, file=sys.stderr)
        return 1
    print(
        'Closed: code %s, reason %r' % (ws.close_code, ws.close_reason),
        flush=True,
    )
    return 0


def _interactive(ws: WebSocketClient) -> None:
    ws.sock.settimeout(None)

    def receive_loop() -> None:
        try:
            while True:
                message = ws.receive()
                if message is None:
                    print(
                        '(server closed: %s %r)'
                        % (ws.close_code, ws.close_reason),
                        flush=True,
                    )
                    return
                print('< %s' % _show(message), flush=True)
        except (OSError, common.WebSocketError) as e:
            print('(connection error: %s)' % e, flush=True)

    receiver = threading.Thread(target=receive_loop, daemon=True)
    receiver.start()
    for line in sys.stdin:
        if ws.server_closed:
            break
        ws.send(line.rstrip('\n'))
    if not ws.server_closed and not ws.close_sent:
        ws.stream.close_connection(wait_response=False)
    receiver.join(5)


if __name__ == '__main__':
    sys.exit(main())
