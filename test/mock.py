"""A mock mod_python request and connection for unit tests."""

from __future__ import annotations

import threading
from typing import List, Optional, Tuple

from mod_pywebsocket.http_header_util import Headers


class MockConn:
    """A connection whose reads come from a script of byte chunks and whose
    writes are recorded. Reading past the script returns b'' (EOF), or
    blocks until `put()` when `block_at_end` is set."""

    def __init__(
        self,
        read_data: bytes = b'',
        block_at_end: bool = False,
        chunk: Optional[int] = None,
    ) -> None:
        self._data = bytearray(read_data)
        self._chunk = chunk
        self._block = block_at_end
        self._cond = threading.Condition()
        self._closed = False
        self.written: List[bytes] = []
        self.remote_addr = ('127.0.0.1', 12345)
        self.client_ip = '127.0.0.1'

    def put(self, data: bytes) -> None:
        with self._cond:
            self._data += data
            self._cond.notify_all()

    def close_input(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, n: int) -> bytes:
        with self._cond:
            while self._block and not self._data and not self._closed:
                self._cond.wait(5)
            size = min(n, len(self._data))
            if self._chunk:
                size = min(size, self._chunk)
            out = bytes(self._data[:size])
            del self._data[:size]
            return out

    def write(self, data) -> None:
        if not isinstance(data, (bytes, str)):
            raise TypeError(
                'mod_python takes bytes or str, not %s' % type(data).__name__
            )
        self.written.append(
            data if isinstance(data, bytes) else data.encode('latin-1')
        )

    def written_data(self) -> bytes:
        return b''.join(self.written)


class MockRequest:
    """The surface of a mod_python request that the package uses."""

    def __init__(
        self,
        uri: str = '/echo',
        headers_in=None,
        connection: Optional[MockConn] = None,
        method: str = 'GET',
        protocol: str = 'HTTP/1.1',
        is_https: bool = False,
        options: Optional[dict] = None,
    ) -> None:
        self.method = method
        self.protocol = protocol
        self.unparsed_uri = uri
        self.uri = uri.split('?', 1)[0]
        self.headers_in = Headers(
            list((headers_in or {}).items())
            if isinstance(headers_in, dict)
            else headers_in or []
        )
        self.headers_out = Headers()
        self.err_headers_out = Headers()
        self.connection = connection or MockConn()
        self._is_https = is_https
        self._options = options or {}
        self.logged: List[Tuple[str, int]] = []

    def is_https(self) -> bool:
        return self._is_https

    def get_options(self) -> dict:
        return self._options

    def log_error(self, message: str, level: int = 0) -> None:
        self.logged.append((message, level))
