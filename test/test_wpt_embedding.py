"""web-platform-tests' uses of pywebsocket3, against mod_pywebsocket.

1. tools/serve/serve.py's WebSocketDaemon: the standalone server built
   from `_parse_args_and_config`, run in a thread, stopped again.
2. wptserve's HTTP/2 WebSocket path (RFC 8441): a Dispatcher without
   scanning options, a HandshakerBase subclass like its WsH2Handshaker,
   then `transfer_data`.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

from mod_pywebsocket import client

ECHO_URI_HANDLER = '''
def web_socket_do_extra_handshake(request):
    pass

def web_socket_transfer_data(request):
    request.ws_stream.send_message(request.uri)
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        request.ws_stream.send_message(message)
'''


@pytest.fixture
def handlers(tmp_path):
    (tmp_path / 'echo_uri_wsh.py').write_text(ECHO_URI_HANDLER)
    (tmp_path / 'broken_wsh.py').write_text(
        textwrap.dedent('''
        def web_socket_do_extra_handshake(request):
            pass

        def web_socket_transfer_data(request):
            raise ValueError('handler failed')
        ''')
    )
    (tmp_path / 'abort_wsh.py').write_text(
        textwrap.dedent('''
        from pywebsocket3 import handshake

        def web_socket_do_extra_handshake(request):
            raise handshake.AbortedByUserException('no')

        def web_socket_transfer_data(request):
            pass
        ''')
    )
    (tmp_path / 'passive_wsh.py').write_text(
        textwrap.dedent('''
        def web_socket_do_extra_handshake(request):
            pass

        def web_socket_transfer_data(request):
            while request.ws_stream.receive_message() is not None:
                pass

        def web_socket_passive_closing_handshake(request):
            return 4001, 'bye'
        ''')
    )
    return str(tmp_path)


def test_serve_py_websocket_daemon(handlers):
    # The calls WebSocketDaemon makes, in its order.
    from pywebsocket3 import standalone as pywebsocket

    cmd_args = ['-p', '0', '-d', handlers, '-w', handlers]
    cmd_args = ['-H', '127.0.0.1'] + cmd_args
    opts, args = pywebsocket._parse_args_and_config(cmd_args)
    assert args == []
    opts.cgi_directories = []
    opts.is_executable_method = None
    server = pywebsocket.WebSocketServer(opts)
    ports = [item[0].getsockname()[1] for item in server._sockets]
    assert len(ports) == 1 and ports[0] > 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = 'ws://127.0.0.1:%d/echo_uri?x=1' % ports[0]
        with client.connect(url) as ws:
            assert ws.receive() == '/echo_uri?x=1'  # uri keeps the query
            ws.send('hello')
            assert ws.receive() == 'hello'
        # pywebsocket3's close code for RSV bits nothing claims.
        with client.connect(url) as ws:
            assert ws.receive() == '/echo_uri?x=1'
            ws.transport.write(b'\x91\x80' + bytes(4))  # text with RSV3
            assert ws.receive() is None
            assert ws.close_code == 1003
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not thread.is_alive()


def test_pywebsocket3_flags_are_accepted(handlers):
    from pywebsocket3 import standalone

    options, rest = standalone._parse_args_and_config(
        [
            '-p',
            '0',
            '-d',
            handlers,
            '-V',
            'localhost',
            '-P',
            '8880',
            '-x',
            '/cgi-bin,/cgi',
            '-l',
            os.devnull,
            '--log-level',
            'fine',
            '--handler-encoding',
            'utf-8',
            '--log-max',
            '1000',
            '--log-count',
            '2',
            '--deflate-log-level',
            'info',
            '--thread-monitor-interval-in-sec',
            '-1',
            '--unknown-flag',
        ]
    )
    assert options.validation_host == 'localhost'
    assert options.validation_port == 8880
    assert options.cgi_directories == ['/cgi-bin', '/cgi']
    assert options.is_executable_method is None
    assert options.log_file == os.devnull
    assert rest == ['--unknown-flag']  # parse_known_args, as there


def test_parse_args_and_config_defaults_to_pywebsocket3s_close_code(tmp_path):
    from mod_pywebsocket import standalone

    options, _ = standalone._parse_args_and_config([])
    assert options.rsv_close_code == 1003  # pywebsocket3's
    assert standalone.parse_args([]).rsv_close_code == 1002  # ours
    assert standalone.parse_args([], pywebsocket3=True).rsv_close_code == 1003
    # A flag or a config file always wins.
    options, _ = standalone._parse_args_and_config(
        ['--rsv-close-code', '1002']
    )
    assert options.rsv_close_code == 1002
    config = tmp_path / 'server.ini'
    config.write_text('[pywebsocket]\nrsv-close-code = 1002\n')
    options, _ = standalone._parse_args_and_config(['--config', str(config)])
    assert options.rsv_close_code == 1002
    assert (
        standalone.parse_args(['--rsv-close-code', '1003']).rsv_close_code
        == 1003
    )
    # Nothing else differs from our defaults.
    ours = vars(standalone.parse_args([]))
    theirs = vars(standalone._parse_args_and_config([])[0])
    assert {k for k in ours if ours[k] != theirs[k]} == {'rsv_close_code'}


def test_python_m_pywebsocket3_standalone_runs_our_server():
    result = subprocess.run(
        [sys.executable, '-m', 'pywebsocket3.standalone', '--help'],
        stdout=subprocess.PIPE,
        universal_newlines=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert '--validation-host' in result.stdout


class _H2Connection:
    """What wptserve hands the handshaker: write() of the response and
    frames; read(n) of the client's frames."""

    def __init__(self, incoming: bytes = b'') -> None:
        self.incoming = incoming
        self.written = []

    def read(self, length: int) -> bytes:
        data, self.incoming = (self.incoming[:length], self.incoming[length:])
        return data

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _H2Request:
    def __init__(self, path: str, headers: dict, incoming: bytes) -> None:
        self.method = 'CONNECT'
        self.uri = path
        self.unparsed_uri = path
        self.headers_in = headers
        self.connection = _H2Connection(incoming)
        self.protocol = 'HTTP/2'

    def is_https(self) -> bool:
        return True


def _ws_h2_handshaker_class():
    # Shaped after wptserve's ws_h2_handshake.WsH2Handshaker.
    from pywebsocket3 import common
    from pywebsocket3.handshake.base import (
        HandshakeException,
        HandshakerBase,
        get_mandatory_header,
        validate_mandatory_header,
    )

    class WsH2Handshaker(HandshakerBase):
        def __init__(self, request, dispatcher):
            super().__init__(request, dispatcher)
            self.status = None
            self.headers = []

        def _transform_header(self, header):
            return header.lower()

        def _protocol_rfc(self):
            return 'RFC 8441'

        def _validate_request(self):
            if self._request.method != 'CONNECT':
                raise HandshakeException(
                    'method is not CONNECT: %r' % self._request.method
                )
            validate_mandatory_header(self._request, ':protocol', 'websocket')
            get_mandatory_header(self._request, 'authority')

        def _set_accept(self):
            pass  # no Sec-WebSocket-Accept in RFC 8441

        def _send_handshake(self):
            self.status = 200
            if self._request.ws_protocol is not None:
                self.headers.append(
                    ('sec-websocket-protocol', self._request.ws_protocol)
                )
            if self._request.ws_extensions is not None:
                self.headers.append(
                    (
                        'sec-websocket-extensions',
                        common.format_extensions(self._request.ws_extensions),
                    )
                )
            self.headers.extend(self._request.extra_headers)

    return WsH2Handshaker


def _masked(opcode: int, payload: bytes) -> bytes:
    key = b'\x01\x02\x03\x04'
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + body


def _h2_headers(**extra) -> dict:
    headers = {
        ':protocol': 'websocket',
        'authority': 'web-platform.test',
        'sec-websocket-version': '13',
        'origin': 'https://web-platform.test',
    }
    headers.update(extra)
    return headers


def test_ws_h2_handshaker_and_transfer_data(handlers):
    from pywebsocket3 import dispatch

    dispatcher = dispatch.Dispatcher(handlers, None, False)
    assert dispatcher.get_handler_suite('/echo_uri') is not None
    incoming = _masked(0x1, b'over h2') + _masked(0x8, struct.pack('!H', 1000))
    request = _H2Request(
        '/echo_uri?q=1',
        _h2_headers(**{'sec-websocket-extensions': 'permessage-deflate'}),
        incoming,
    )
    handshaker = _ws_h2_handshaker_class()(request, dispatcher)
    handshaker.do_handshake()
    assert handshaker.status == 200
    assert handshaker.headers == [
        ('sec-websocket-extensions', 'permessage-deflate')
    ]
    assert request.ws_resource == '/echo_uri?q=1'
    assert request.ws_origin == 'https://web-platform.test'
    dispatcher.transfer_data(request)
    written = b''.join(request.connection.written)
    # compressed echoes (RSV1), then the close frame echoing 1000
    assert written[0] == 0xC1
    assert written.endswith(b'\x88\x02\x03\xe8')


def test_ws_h2_handshaker_streams_close_unclaimed_rsv_with_1003(handlers):
    # pywebsocket3's handshakers build streams with its close code.
    from pywebsocket3 import dispatch

    dispatcher = dispatch.Dispatcher(handlers, None, False)
    incoming = bytes((0x91,)) + _masked(0x1, b'rsv3')[1:]  # RSV3 set
    request = _H2Request('/echo_uri', _h2_headers(), incoming)
    _ws_h2_handshaker_class()(request, dispatcher).do_handshake()
    try:
        dispatcher.transfer_data(request)
    except Exception:
        pass  # (the handler's receive raised the protocol error)
    written = b''.join(request.connection.written)
    assert written.endswith(b'\x88\x02' + struct.pack('!H', 1003))


def test_ws_h2_handshaker_stream_answers_close_with_passive_handler(
    handlers,
):
    from pywebsocket3 import dispatch

    dispatcher = dispatch.Dispatcher(handlers, None, False)
    incoming = _masked(0x8, struct.pack('!H', 1000))
    request = _H2Request('/passive', _h2_headers(), incoming)
    _ws_h2_handshaker_class()(request, dispatcher).do_handshake()
    dispatcher.transfer_data(request)
    written = b''.join(request.connection.written)
    assert written.endswith(b'\x88\x05' + struct.pack('!H', 4001) + b'bye')


def test_ws_h2_handshaker_errors(handlers):
    from pywebsocket3 import dispatch
    from pywebsocket3.handshake import (
        AbortedByUserException,
        HandshakeException,
    )

    dispatcher = dispatch.Dispatcher(handlers, None, False)
    handshaker_class = _ws_h2_handshaker_class()
    request = _H2Request('/echo_uri', _h2_headers(), b'')
    request.method = 'GET'
    with pytest.raises(HandshakeException):
        handshaker_class(request, dispatcher).do_handshake()
    # offered subprotocols that the handler does not choose: 400
    request = _H2Request(
        '/echo_uri', _h2_headers(**{'sec-websocket-protocol': 'chat'}), b''
    )
    with pytest.raises(HandshakeException) as info:
        handshaker_class(request, dispatcher).do_handshake()
    assert info.value.status == 400
    request = _H2Request('/abort', _h2_headers(), b'')
    with pytest.raises(AbortedByUserException):
        handshaker_class(request, dispatcher).do_handshake()
    # the handler's exception reaches the embedder, after a 1011 close
    request = _H2Request('/broken', _h2_headers(), b'')
    handshaker_class(request, dispatcher).do_handshake()
    with pytest.raises(ValueError, match='handler failed'):
        dispatcher.transfer_data(request)
    assert b''.join(request.connection.written).startswith(b'\x88\x02\x03\xf3')
