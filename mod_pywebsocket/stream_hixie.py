"""Blocking message I/O for draft-75 / draft-76 connections.

The same surface as stream.Stream where the drafts allow it: text messages
only, no ping, and the 0xFF 0x00 closing handshake on draft-76 only.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from mod_pywebsocket import common
from mod_pywebsocket.common import (BadOperationException,
                                    ConnectionTerminatedException,
                                    ProtocolError)
from mod_pywebsocket.hixie_frame import (CLOSING_HANDSHAKE, EVENT_CLOSE,
                                         HixieFrameParser, build_text_frame)
from mod_pywebsocket.stream import READ_SIZE

_logger = logging.getLogger(__name__)


class StreamHixie75:
    """Message I/O for one draft-75 (`enable_closing_handshake=False`) or
    draft-76 connection. pywebsocket3's class name is kept."""

    def __init__(self, request, enable_closing_handshake: bool = False,
                 max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
                 transport=None,
                 close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT) -> None:
        self._request = request
        self._close_timeout = close_timeout
        transport = transport if transport is not None else request.connection
        self._transport = transport
        self._read = transport.read
        self._write = transport.write
        self._enable_closing_handshake = enable_closing_handshake
        self._parser = HixieFrameParser(max_message_size or None,
                                        enable_closing_handshake)
        self._send_lock = threading.Lock()
        request.client_terminated = False
        request.server_terminated = False
        request.ws_closed_by = None
        self.before_close = None     # as Stream.before_close

    def _drain_before_close(self) -> None:
        if (self.before_close is not None
                and not self._request.server_terminated):
            self.before_close(self._close_timeout)

    def _write_bytes(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self._write(data)
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while sending: %s' % e)

    def send_message(self, message, end: bool = True, binary: bool = False,
                     compress: bool = True) -> None:
        """Send a text message; the drafts have no binary or fragments."""
        if binary or not isinstance(message, str):
            raise BadOperationException(
                'draft-75/76 connections carry text (str) only')
        if not end:
            raise BadOperationException('draft-75/76 have no fragments')
        if self._request.server_terminated:
            raise BadOperationException('cannot send after closing')
        self._write_bytes(build_text_frame(message))

    def send_ping(self, body=b'') -> None:
        raise BadOperationException('draft-75/76 have no ping')

    def receive_message(self) -> Optional[str]:
        """The next text message, or None when the peer closed."""
        request = self._request
        if request.client_terminated:
            raise BadOperationException(
                'receive_message after the peer closed the connection')
        while True:
            try:
                event = self._parser.next_event()
            except ProtocolError as e:
                request.client_terminated = True
                self._terminate()
                raise e
            if event is None:
                if not self._fill():
                    return None         # draft-75: EOF is the normal end
                continue
            kind, text = event
            if kind == EVENT_CLOSE:
                request.client_terminated = True
                if not request.server_terminated:
                    self._drain_before_close()
                    request.ws_closed_by = 'client'
                    request.server_terminated = True
                    self._write_bytes(CLOSING_HANDSHAKE)
                return None
            return text

    def _fill(self) -> bool:
        """Read more bytes; False at a draft-75 EOF (its normal end)."""
        try:
            data = self._read(READ_SIZE)
        except OSError as e:
            raise ConnectionTerminatedException(
                'connection failed while reading: %s' % e)
        if not data:
            self._request.client_terminated = True
            if not self._enable_closing_handshake:
                self._request.ws_closed_by = (self._request.ws_closed_by
                                              or 'client')
                return False
            raise ConnectionTerminatedException(
                'connection closed by the peer without a closing handshake')
        self._parser.feed(data)
        return True

    def _terminate(self) -> None:
        if self._enable_closing_handshake and \
                not self._request.server_terminated:
            self._drain_before_close()
            self._request.server_terminated = True
            try:
                self._write_bytes(CLOSING_HANDSHAKE)
            except ConnectionTerminatedException:
                pass

    def close_connection(self, code=None, reason: str = '',
                         wait_response: bool = True) -> None:
        """draft-76: send 0xFF 0x00 and wait for the peer's; draft-75:
        nothing to send (the host closes the TCP connection)."""
        request = self._request
        if request.server_terminated:
            return
        self._drain_before_close()
        request.server_terminated = True
        if not request.client_terminated:
            request.ws_closed_by = 'server'
        if not self._enable_closing_handshake:
            return
        self._write_bytes(CLOSING_HANDSHAKE)
        if not wait_response or request.client_terminated:
            return
        set_timeout = getattr(self._transport, 'set_read_timeout', None)
        if set_timeout is not None:
            set_timeout(self._close_timeout)
        try:
            while not request.client_terminated:
                event = self._parser.next_event()
                if event is None:
                    if not self._fill():
                        break
                elif event[0] == EVENT_CLOSE:
                    request.client_terminated = True
        except (ConnectionTerminatedException, ProtocolError) as e:
            _logger.debug('closing handshake not completed: %s', e)

