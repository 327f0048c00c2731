"""session: one request from opening handshake to close, over MockRequest,
with the example echo handler and handlers written on the fly."""

import os
import textwrap

import pytest

from conftest import EXAMPLE_DIR
from core_helpers import (
    DRAFT76_KEY3 as KEY3,
    DRAFT76_RESPONSE as RESPONSE,
    RFC6455_ACCEPT,
    client_close,
    client_frame,
    client_text,
    draft76_headers,
    hybi_headers,
    parse_response,
    server_frames,
)
from mock import MockConn, MockRequest
from mod_pywebsocket import common, session
from mod_pywebsocket.common import (
    AbortedByUserException,
    DispatchException,
    HandshakeException,
    VersionException,
)
from mod_pywebsocket.dispatch import Dispatcher
from mod_pywebsocket.extensions import Deflater, Inflater
from mod_pywebsocket.session import ServerOptions, do_handshake, read_exactly
from mod_pywebsocket.stream import Stream
from mod_pywebsocket.stream_hixie import StreamHixie75


def split_response(conn):
    """(status line, headers, bytes after the head) of what was written."""
    data = conn.written_data()
    head, sep, rest = data.partition(b'\r\n\r\n')
    status, headers, _ = parse_response(head + sep)
    return status, headers, rest


@pytest.fixture(scope='module')
def echo_dispatcher():
    return Dispatcher(EXAMPLE_DIR)


def handler_dispatcher(tmp_path, source, name='h'):
    with open(os.path.join(str(tmp_path), name + '_wsh.py'), 'w') as f:
        f.write(textwrap.dedent(source))
    dispatcher = Dispatcher(str(tmp_path))
    assert dispatcher.source_warnings() == []
    return dispatcher


def hybi_request(uri='/echo', data=b'', **overrides):
    conn = MockConn(data)
    return MockRequest(uri, hybi_headers(**overrides), conn), conn


class TestRfc6455Session:
    def test_echo_end_to_end(self, echo_dispatcher):
        data = (
            client_text('Hello')
            + client_frame(common.OPCODE_BINARY, b'\x00\x01')
            + client_close(1000, b'done')
        )
        request, conn = hybi_request('/echo', data)
        do_handshake(request, echo_dispatcher, ServerOptions())
        assert isinstance(request.ws_stream, Stream)
        echo_dispatcher.transfer_data(request)
        status, headers, rest = split_response(conn)
        assert status == 'HTTP/1.1 101 Switching Protocols'
        assert ('Sec-WebSocket-Accept', RFC6455_ACCEPT) in headers
        frames = server_frames(rest)
        assert [(f.opcode, f.payload) for f in frames] == [
            (common.OPCODE_TEXT, b'Hello'),
            (common.OPCODE_BINARY, b'\x00\x01'),
            (common.OPCODE_CLOSE, b'\x03\xe8done'),
        ]
        assert request.ws_close_code == 1000
        assert request.ws_close_reason == 'done'

    def test_echo_passive_close_with_empty_body(self, echo_dispatcher):
        request, conn = hybi_request('/echo', client_close(None))
        do_handshake(request, echo_dispatcher, ServerOptions())
        echo_dispatcher.transfer_data(request)
        _, _, rest = split_response(conn)
        [frame] = server_frames(rest)
        assert frame.opcode == common.OPCODE_CLOSE and frame.payload == b''
        assert request.ws_close_code == 1005

    def test_goodbye_closes_with_1000(self, echo_dispatcher):
        request, conn = hybi_request(
            '/echo', client_text('Goodbye') + client_close(1000)
        )
        do_handshake(request, echo_dispatcher, ServerOptions())
        echo_dispatcher.transfer_data(request)
        _, _, rest = split_response(conn)
        assert [f.opcode for f in server_frames(rest)] == [
            common.OPCODE_TEXT,
            common.OPCODE_CLOSE,
        ]

    def test_missing_handler_is_404_and_nothing_written(self, echo_dispatcher):
        request, conn = hybi_request('/nothing-here')
        with pytest.raises(DispatchException) as info:
            do_handshake(request, echo_dispatcher, ServerOptions())
        assert info.value.status == 404
        assert conn.written == []

    def test_fragment_in_resource_is_400(self, echo_dispatcher):
        request, conn = hybi_request('/echo#frag')
        with pytest.raises(DispatchException) as info:
            do_handshake(request, echo_dispatcher, ServerOptions())
        assert info.value.status == 400
        assert conn.written == []

    def test_query_is_ignored_for_dispatch(self, echo_dispatcher):
        request, conn = hybi_request('/echo?room=1')
        do_handshake(request, echo_dispatcher, ServerOptions())
        assert request.ws_resource == '/echo?room=1'
        assert split_response(conn)[0].startswith('HTTP/1.1 101')

    def test_unsupported_version(self, echo_dispatcher):
        request, conn = hybi_request('/echo', sec_websocket_version='9')
        with pytest.raises(VersionException) as info:
            do_handshake(request, echo_dispatcher, ServerOptions())
        assert info.value.status == 400
        assert ('Sec-WebSocket-Version', '13, 8') in info.value.headers
        assert conn.written == []

    def test_extra_handshake_value_error_is_403(self, tmp_path):
        dispatcher = handler_dispatcher(
            tmp_path,
            '''
            def web_socket_do_extra_handshake(request):
                raise ValueError('no')
            def web_socket_transfer_data(request):
                pass
            ''',
        )
        request, conn = hybi_request('/h')
        with pytest.raises(HandshakeException) as info:
            do_handshake(request, dispatcher, ServerOptions())
        assert info.value.status == 403
        assert conn.written == []

    def test_abort_after_raw_bytes(self, tmp_path):
        dispatcher = handler_dispatcher(
            tmp_path,
            '''
            from mod_pywebsocket import handshake
            def web_socket_do_extra_handshake(request):
                request.connection.write(b'HTTP/1.1 418 Teapot\\r\\n\\r\\n')
                raise handshake.AbortedByUserException('handled it myself')
            def web_socket_transfer_data(request):
                pass
            ''',
        )
        request, conn = hybi_request('/h')
        with pytest.raises(AbortedByUserException):
            do_handshake(request, dispatcher, ServerOptions())
        assert conn.written_data() == b'HTTP/1.1 418 Teapot\r\n\r\n'

    def test_handler_raising_in_transfer_data_is_1011(self, tmp_path):
        dispatcher = handler_dispatcher(
            tmp_path,
            '''
            def web_socket_transfer_data(request):
                request.ws_stream.receive_message()
                raise KeyError('oops')
            ''',
        )
        request, conn = hybi_request(
            '/h', client_text('x') + client_close(1011)
        )
        do_handshake(request, dispatcher, ServerOptions())
        with pytest.raises(KeyError):  # re-raised, as in pywebsocket3
            dispatcher.transfer_data(request)
        _, _, rest = split_response(conn)
        assert [f.payload[:2] for f in server_frames(rest)] == [b'\x03\xf3']

    def test_max_message_size_option(self, echo_dispatcher):
        options = ServerOptions()
        options.max_message_size = 10
        request, conn = hybi_request('/echo', client_text('x' * 11))
        do_handshake(request, echo_dispatcher, options)
        echo_dispatcher.transfer_data(request)
        _, _, rest = split_response(conn)
        [frame] = server_frames(rest)
        assert frame.payload[:2] == b'\x03\xf1'  # 1009

    def test_stream_options_follow_server_options(self, echo_dispatcher):
        options = ServerOptions()
        options.close_timeout = 1.5
        options.keepalive_interval = 20.0
        options.keepalive_timeout = 4.0
        request, _ = hybi_request('/echo')
        do_handshake(request, echo_dispatcher, options)
        stream_options = request.ws_stream._options
        assert stream_options.close_timeout == 1.5
        assert stream_options.keepalive_interval == 20.0
        assert stream_options.keepalive_timeout == 4.0

    def test_explicit_transport(self, echo_dispatcher):
        transport = MockConn(client_text('t') + client_close(1000))
        request = MockRequest('/echo', hybi_headers())
        do_handshake(request, echo_dispatcher, ServerOptions(), transport)
        echo_dispatcher.transfer_data(request)
        assert request.connection.written == []
        assert transport.written_data().startswith(b'HTTP/1.1 101')

    def test_server_options_defaults(self):
        options = ServerOptions()
        assert not options.allow_draft75
        assert options.max_message_size == 64 * 1024 * 1024
        assert options.keepalive_interval is None
        assert options.deflate.enabled


class TestDeflateSession:
    def test_compressed_echo(self, echo_dispatcher):
        client_deflater = Deflater()
        message = 'compress me ' * 50
        data = client_frame(
            common.OPCODE_TEXT,
            client_deflater.compress(message.encode()),
            rsv1=1,
        ) + client_close(1000)
        request, conn = hybi_request(
            '/echo',
            data,
            sec_websocket_extensions='permessage-deflate; '
            'client_max_window_bits',
        )
        do_handshake(request, echo_dispatcher, ServerOptions())
        echo_dispatcher.transfer_data(request)
        status, headers, rest = split_response(conn)
        assert ('Sec-WebSocket-Extensions', 'permessage-deflate') in headers
        text_frame, close_frame = server_frames(rest, allowed_rsv=4)
        assert text_frame.rsv1 == 1
        inflater = Inflater()
        assert (
            inflater.decompress(text_frame.payload, None)
            + inflater.end_message()
        ) == message.encode()
        assert close_frame.rsv1 == 0

    def test_deflate_disabled_in_server_options(self, echo_dispatcher):
        options = ServerOptions()
        options.deflate.enabled = False
        request, conn = hybi_request(
            '/echo',
            client_frame(common.OPCODE_TEXT, b'x', rsv1=1),
            sec_websocket_extensions='permessage-deflate',
        )
        do_handshake(request, echo_dispatcher, options)
        _, headers, _ = split_response(conn)
        assert 'Sec-WebSocket-Extensions' not in dict(headers)
        echo_dispatcher.transfer_data(request)
        # RSV1 without the extension: protocol error.
        _, _, rest = split_response(conn)
        assert [f.payload[:2] for f in server_frames(rest)] == [b'\x03\xea']


class TestDraft76Session:
    def test_echo_with_closing_handshake(self, echo_dispatcher):
        data = KEY3 + b'\x00Hello\xff' + b'\xff\x00'
        conn = MockConn(data)
        request = MockRequest('/echo', draft76_headers(), conn)
        do_handshake(request, echo_dispatcher, ServerOptions())
        assert isinstance(request.ws_stream, StreamHixie75)
        echo_dispatcher.transfer_data(request)
        status, headers, rest = split_response(conn)
        assert status == 'HTTP/1.1 101 WebSocket Protocol Handshake'
        assert rest == RESPONSE + b'\x00Hello\xff' + b'\xff\x00'
        assert ('Sec-WebSocket-Location', 'ws://example.com/echo') in headers

    def test_close_timeout_option_applies(self, echo_dispatcher):
        class TimedConn(MockConn):
            timeouts = []

            def set_read_timeout(self, value):
                self.timeouts.append(value)

        options = ServerOptions()
        options.close_timeout = 1.5
        conn = TimedConn(KEY3 + b'\x00Goodbye\xff\xff\x00')
        request = MockRequest('/echo', draft76_headers(), conn)
        do_handshake(request, echo_dispatcher, options)
        echo_dispatcher.transfer_data(request)
        assert conn.timeouts[0] == 1.5
        assert split_response(conn)[2] == (
            RESPONSE + b'\x00Goodbye\xff' + b'\xff\x00'
        )

    def test_key3_read_in_pieces(self, echo_dispatcher):
        conn = MockConn(KEY3 + b'\xff\x00', chunk=3)
        request = MockRequest('/echo', draft76_headers(), conn)
        do_handshake(request, echo_dispatcher, ServerOptions())
        assert split_response(conn)[2] == RESPONSE

    def test_key3_cut_short_is_400(self, echo_dispatcher):
        conn = MockConn(KEY3[:5])
        request = MockRequest('/echo', draft76_headers(), conn)
        with pytest.raises(HandshakeException) as info:
            do_handshake(request, echo_dispatcher, ServerOptions())
        assert info.value.status == 400
        assert conn.written == []

    def test_read_error_during_key3(self):
        class Broken(MockConn):
            def read(self, n):
                raise ConnectionResetError('reset')

        with pytest.raises(HandshakeException) as info:
            read_exactly(Broken(), 8)
        assert info.value.status == 400


class TestDraft75Session:
    def _headers(self):
        return [
            ('Upgrade', 'WebSocket'),
            ('Connection', 'Upgrade'),
            ('Host', 'example.com'),
            ('Origin', 'http://example.com'),
        ]

    def test_allowed(self, echo_dispatcher):
        options = ServerOptions()
        options.allow_draft75 = True
        conn = MockConn(b'\x00Hi\xff')
        request = MockRequest('/echo', self._headers(), conn)
        do_handshake(request, echo_dispatcher, options)
        assert request.ws_version == common.VERSION_HIXIE75
        echo_dispatcher.transfer_data(request)
        status, _, rest = split_response(conn)
        assert status == 'HTTP/1.1 101 Web Socket Protocol Handshake'
        assert rest == b'\x00Hi\xff'

    def test_refused_by_default(self, echo_dispatcher):
        conn = MockConn()
        request = MockRequest('/echo', self._headers(), conn)
        with pytest.raises(VersionException) as info:
            do_handshake(request, echo_dispatcher, ServerOptions())
        assert info.value.status == 400
        assert conn.written == []


def test_session_module_exports():
    assert session.read_exactly(MockConn(b'12345678'), 8) == b'12345678'
