"""Blocking message I/O for draft-75 / draft-76 connections: `Stream`
over the hixie core (connection.HixieConnection). Text messages only; no
ping, no fragments; draft-76 closes with 0xFF 0x00, draft-75 by closing
the transport. pywebsocket3's class name is kept."""

from __future__ import annotations

from typing import Any

from mod_pywebsocket import common
from mod_pywebsocket.connection import HixieConnection
from mod_pywebsocket.stream import Stream, StreamOptions

__all__ = ['StreamHixie75']


class StreamHixie75(Stream):
    """Message I/O for one draft-75 (`enable_closing_handshake=False`) or
    draft-76 connection."""

    def __init__(
        self,
        request: Any,
        enable_closing_handshake: bool = False,
        max_message_size: int = common.DEFAULT_MAX_MESSAGE_SIZE,
        transport: Any = None,
        close_timeout: float = common.DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        options = StreamOptions()
        options.max_message_size = max_message_size
        options.close_timeout = close_timeout
        self._options = options
        self.connection = HixieConnection(
            enable_closing_handshake, max_message_size, close_timeout
        )
        self._init(request, transport, None)
