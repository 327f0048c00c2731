"""A small WebSocket-over-HTTP/2 client (RFC 8441) for tests: Python's `h2`
library for HTTP/2 and the package's own sans-I/O core (client side) for
the WebSocket frames. Several WebSockets share one TLS connection."""

from __future__ import annotations

import select
import socket
import ssl
import time
from typing import Dict, List, Optional, Tuple

from conftest import require

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
except ImportError:  # require() in H2Client says what is missing
    h2 = None

from mod_pywebsocket.connection import (
    CloseReceived,
    Message,
    Ping,
    WebSocketConnection,
)


class H2WebSocket:
    """One WebSocket on an HTTP/2 stream."""

    def __init__(self, client: 'H2Client', stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.status: Optional[int] = None
        self.headers: Dict[str, str] = {}
        self.core = WebSocketConnection(client=True, max_message_size=1 << 26)
        self.messages: List[object] = []
        self.close: Optional[Tuple[Optional[int], str]] = None
        self.ended = False

    def send(self, message) -> None:
        self.core.send_message(message, True, isinstance(message, bytes))
        self.client.flush(self)

    def send_close(self, code: int = 1000) -> None:
        self.core.close(code, '')
        self.client.flush(self)

    def feed(self, data: bytes) -> None:
        self.core.receive_data(data)
        while True:
            event = self.core.next_event()
            if event is None:
                break
            if type(event) is Message:
                self.messages.append(event.data)
            elif type(event) is Ping:
                self.core.send_pong(event.payload)
            elif type(event) is CloseReceived:
                self.close = (event.code, event.reason)
                if self.core.close_sent is None:
                    self.core.close(event.code, '')
        self.client.flush(self)


class H2Client:
    """A TLS connection speaking h2 to 127.0.0.1:port."""

    def __init__(self, port: int, cafile: str, timeout: float = 30) -> None:
        require(h2 is not None, 'the h2 package (requirements-test.txt)')
        context = ssl.create_default_context(cafile=cafile)
        context.set_alpn_protocols(['h2'])
        raw = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname='localhost')
        assert self.sock.selected_alpn_protocol() == 'h2', 'no h2 via ALPN'
        self.port = port
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True, header_encoding='utf-8'
            )
        )
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 30)
        self.sockets: Dict[int, H2WebSocket] = {}
        self.connect_protocol = False
        self._send()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._send()
        except OSError:
            pass
        self.sock.close()

    def open(
        self, path: str, protocols: Tuple[str, ...] = (), extensions: str = ''
    ) -> H2WebSocket:
        """Send the extended CONNECT; wait for the response status."""
        self.wait(lambda: self.connect_protocol)
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (':method', 'CONNECT'),
            (':protocol', 'websocket'),
            (':scheme', 'https'),
            (':path', path),
            (':authority', 'localhost:%d' % self.port),
            ('sec-websocket-version', '13'),
            ('origin', 'https://localhost:%d' % self.port),
        ]
        if protocols:
            headers.append(('sec-websocket-protocol', ', '.join(protocols)))
        if extensions:
            headers.append(('sec-websocket-extensions', extensions))
        ws = H2WebSocket(self, stream_id)
        self.sockets[stream_id] = ws
        self.conn.send_headers(stream_id, headers)
        self._send()
        self.wait(lambda: ws.status is not None or ws.ended)
        return ws

    def flush(self, ws: H2WebSocket) -> None:
        data = ws.core.data_to_send()
        while data:
            window = self.conn.local_flow_control_window(ws.stream_id)
            size = min(len(data), window, self.conn.max_outbound_frame_size)
            if size <= 0:
                self.pump(0.05)
                continue
            self.conn.send_data(ws.stream_id, data[:size])
            data = data[size:]
            self._send()

    def _send(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, timeout: float) -> None:
        """Read what arrives within `timeout` and dispatch it."""
        if not self.sock.pending():
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError('h2 connection closed by the server')
        for event in self.conn.receive_data(data):
            self._event(event)
        self._send()

    def _event(self, event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            setting = event.changed_settings.get(
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
            )
            if setting is not None and setting.new_value:
                self.connect_protocol = True
            return
        ws = self.sockets.get(getattr(event, 'stream_id', None))
        if ws is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            ws.headers = dict(event.headers)
            ws.status = int(ws.headers[':status'])
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            if ws.status == 200:  # not an error page's body
                ws.feed(event.data)
        elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
            ws.ended = True

    def wait(self, condition, timeout: Optional[float] = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError('h2 client: condition not met in time')
            self.pump(0.05)
