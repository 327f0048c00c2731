"""Handlers written for the original mod_pywebsocket (and pywebsocket3, as
web-platform-tests has them) run unchanged through session.do_handshake and
dispatcher.transfer_data with mock requests."""

import importlib
import os
import textwrap
import threading
import time

import pytest

from core_helpers import (
    RFC6455_ACCEPT,
    RFC6455_KEY,
    client_close,
    client_frame,
    client_text,
    hybi_headers,
    server_frames,
)
from mock import MockConn, MockRequest
from mod_pywebsocket import common
from mod_pywebsocket.common import (
    AbortedByUserException,
    DispatchException,
    HandshakeException,
)
from mod_pywebsocket.dispatch import Dispatcher
from mod_pywebsocket.session import ServerOptions, do_handshake

HANDLERS = {
    # The original example echo handler, with its passive closing handshake.
    'echo': '''
        from mod_pywebsocket import common

        _GOODBYE_MESSAGE = u'Goodbye'


        def web_socket_do_extra_handshake(request):
            # This example handler accepts any request.
            pass  # Always accept.


        def web_socket_transfer_data(request):
            while True:
                line = request.ws_stream.receive_message()
                if line is None:
                    return
                if isinstance(line, str):
                    request.ws_stream.send_message(line, binary=False)
                    if line == _GOODBYE_MESSAGE:
                        return
                else:
                    request.ws_stream.send_message(line, binary=True)


        def web_socket_passive_closing_handshake(request):
            # Echo close status code and reason
            code, reason = request.ws_close_code, request.ws_close_reason

            # pywebsocket sets pseudo code for receiving an empty body close
            # frame.
            if code == common.STATUS_NO_STATUS_RECEIVED:
                code = None
                reason = ''
            return code, reason
        ''',
    # Subprotocol choice, as web-platform-tests' echo handler does it.
    'protocol': '''
        from mod_pywebsocket import msgutil


        def web_socket_do_extra_handshake(request):
            if request.ws_requested_protocols:
                if 'echo' in request.ws_requested_protocols:
                    request.ws_protocol = 'echo'


        def web_socket_transfer_data(request):
            msgutil.send_message(request,
                                 u'protocol: %s' % request.ws_protocol)
            line = msgutil.receive_message(request)
        ''',
    # The original origin check: a ValueError rejects the handshake.
    'origin_check': '''
        def web_socket_do_extra_handshake(request):
            if request.ws_origin == 'http://example.com':
                return
            raise ValueError('Unacceptable origin: %r' % request.ws_origin)


        def web_socket_transfer_data(request):
            request.connection.write('origin_check_wsh.py is called for %s, %s'
                                     % (request.ws_resource,
                                        request.ws_protocol))
        ''',
    # Origin check that drops the connection without any response.
    'origin_abort': '''
        from mod_pywebsocket import handshake


        def web_socket_do_extra_handshake(request):
            if request.ws_origin != 'http://example.com':
                raise handshake.AbortedByUserException(
                    'Aborted in web_socket_do_extra_handshake')


        def web_socket_transfer_data(request):
            raise handshake.AbortedByUserException(
                'Aborted in web_socket_transfer_data')
        ''',
    # Origin check with an explicit HTTP status.
    'origin_status': '''
        from mod_pywebsocket import handshake


        def web_socket_do_extra_handshake(request):
            if request.ws_origin != 'http://example.com':
                raise handshake.HandshakeException('origin not allowed', 403)


        def web_socket_transfer_data(request):
            pass
        ''',
    # The original close handler: "code reason" starts a closing handshake.
    'close': '''
        from mod_pywebsocket import common


        def web_socket_do_extra_handshake(request):
            pass


        def web_socket_transfer_data(request):
            while True:
                line = request.ws_stream.receive_message()
                if line is None:
                    return
                code, reason = line.split(' ', 1)
                if code is None or reason is None:
                    return
                request.ws_stream.close_connection(int(code), reason)


        def web_socket_passive_closing_handshake(request):
            code, reason = request.ws_close_code, request.ws_close_reason
            if code == common.STATUS_NO_STATUS_RECEIVED:
                code = None
                reason = ''
            return code, reason
        ''',
    # web-platform-tests: no extension, and raw frames written by hand.
    'no_extension_raw': '''
        from mod_pywebsocket import common, msgutil, stream


        def web_socket_do_extra_handshake(request):
            request.ws_extension_processors = []


        def web_socket_transfer_data(request):
            request.connection.write(stream.create_text_frame('raw text'))
            request.connection.write(stream.create_binary_frame(b'\\x00\\x01'))
            body = stream.create_closing_handshake_body(1000, '')
            request.connection.write(stream.create_close_frame(body))
            request.server_terminated = True
            msgutil.receive_message(request)
        ''',
    # web-platform-tests: a raw 101 written by the handler itself.
    'handshake_raw': '''
        from mod_pywebsocket import common
        from mod_pywebsocket.handshake import AbortedByUserException, hybi


        def web_socket_do_extra_handshake(request):
            msg = (b'HTTP/1.1 101 Switching Protocols:\\x0D\\x0A'
                   b'Connection: Upgrade\\x0D\\x0A'
                   b'Upgrade: WebSocket\\x0D\\x0A'
                   b'Sec-WebSocket-Accept: %s\\x0D\\x0A\\x0D\\x0A') % (
                hybi.compute_accept_from_unicode(
                    request.headers_in.get(common.SEC_WEBSOCKET_KEY_HEADER)))
            request.connection.write(msg)
            raise AbortedByUserException('Abort the connection')


        def web_socket_transfer_data(request):
            pass
        ''',
    # Exceptions caught through msgutil, constants from common.
    'status': '''
        from mod_pywebsocket import common, msgutil

        EVENTS = []


        def web_socket_transfer_data(request):
            try:
                while True:
                    line = msgutil.receive_message(request)
                    if line is None:
                        return
                    if line == 'app-close':
                        request.ws_stream.close_connection(
                            common.STATUS_USER_PRIVATE_BASE + 1, 'app')
                        return
                    msgutil.send_message(request, line)
            except msgutil.ConnectionTerminatedException:
                EVENTS.append('terminated')
            except msgutil.InvalidFrameException:
                EVENTS.append('invalid frame')
        ''',
    # Helper threads from msgutil.
    'threads': '''
        from mod_pywebsocket import msgutil


        def web_socket_transfer_data(request):
            receiver = msgutil.MessageReceiver(request)
            sender = msgutil.MessageSender(request)
            while True:
                message = receiver.receive()
                if message is None:
                    break
                sender.send(message.upper())
            sender.stop()
        ''',
}


@pytest.fixture(scope='module')
def dispatcher(tmp_path_factory):
    root = tmp_path_factory.mktemp('legacy')
    for name, source in HANDLERS.items():
        with open(os.path.join(str(root), name + '_wsh.py'), 'w') as f:
            f.write(textwrap.dedent(source))
    dispatcher = Dispatcher(str(root))
    assert dispatcher.source_warnings() == []
    return dispatcher


def run(dispatcher, resource, data=b'', **header_overrides):
    """Handshake + transfer; (request, status line, response headers,
    bytes after the response head)."""
    conn = MockConn(data)
    request = MockRequest(resource, hybi_headers(**header_overrides), conn)
    do_handshake(request, dispatcher, ServerOptions())
    dispatcher.transfer_data(request)
    written = conn.written_data()
    head, _, rest = written.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = [tuple(line.split(': ', 1)) for line in lines[1:]]
    return request, lines[0], headers, rest


def frames(rest):
    return [(f.opcode, f.payload) for f in server_frames(rest)]


class TestEcho:
    def test_echo_and_passive_close(self, dispatcher):
        data = (
            client_text('Hello')
            + client_frame(common.OPCODE_BINARY, b'\xff')
            + client_close(1001, b'bye')
        )
        request, status, headers, rest = run(dispatcher, '/echo', data)
        assert status == 'HTTP/1.1 101 Switching Protocols'
        assert ('Sec-WebSocket-Accept', RFC6455_ACCEPT) in headers
        assert frames(rest) == [
            (common.OPCODE_TEXT, b'Hello'),
            (common.OPCODE_BINARY, b'\xff'),
            (common.OPCODE_CLOSE, b'\x03\xe9bye'),
        ]

    def test_empty_close_gets_empty_close(self, dispatcher):
        _, _, _, rest = run(dispatcher, '/echo', client_close(None))
        assert frames(rest) == [(common.OPCODE_CLOSE, b'')]

    def test_goodbye(self, dispatcher):
        _, _, _, rest = run(
            dispatcher, '/echo', client_text('Goodbye') + client_close(1000)
        )
        assert frames(rest) == [
            (common.OPCODE_TEXT, b'Goodbye'),
            (common.OPCODE_CLOSE, b'\x03\xe8'),
        ]

    def test_hybi08_client(self, dispatcher):
        request, status, _, rest = run(
            dispatcher,
            '/echo',
            client_text('old') + client_close(1000),
            sec_websocket_version='8',
            origin=None,
            sec_websocket_origin='http://example.com',
        )
        assert request.ws_version == 8
        assert frames(rest)[0] == (common.OPCODE_TEXT, b'old')


class TestSubprotocol:
    def test_offered_protocol_is_chosen(self, dispatcher):
        request, status, headers, rest = run(
            dispatcher,
            '/protocol',
            client_close(1000),
            sec_websocket_protocol='chat, echo',
        )
        assert request.ws_requested_protocols == ['chat', 'echo']
        assert ('Sec-WebSocket-Protocol', 'echo') in headers
        assert frames(rest)[0] == (common.OPCODE_TEXT, b'protocol: echo')

    def test_no_protocol_offered(self, dispatcher):
        request, _, headers, rest = run(
            dispatcher, '/protocol', client_close(1000)
        )
        assert request.ws_protocol is None
        assert 'Sec-WebSocket-Protocol' not in dict(headers)
        assert frames(rest)[0] == (common.OPCODE_TEXT, b'protocol: None')

    def test_other_protocols_only(self, dispatcher):
        _, _, headers, _ = run(
            dispatcher,
            '/protocol',
            client_close(1000),
            sec_websocket_protocol='chat',
        )
        assert 'Sec-WebSocket-Protocol' not in dict(headers)


class TestOriginCheck:
    def test_accepted_origin(self, dispatcher):
        request, status, _, rest = run(
            dispatcher, '/origin_check', client_close(1000)
        )
        assert status.startswith('HTTP/1.1 101')
        assert rest.startswith(
            b'origin_check_wsh.py is called for /origin_check, None'
        )

    def test_rejected_origin_is_403(self, dispatcher):
        conn = MockConn()
        request = MockRequest(
            '/origin_check', hybi_headers(origin='http://evil.example'), conn
        )
        with pytest.raises(HandshakeException) as info:
            do_handshake(request, dispatcher, ServerOptions())
        assert info.value.status == 403
        assert conn.written == []

    def test_handshake_exception_with_status(self, dispatcher):
        request = MockRequest(
            '/origin_status', hybi_headers(origin='http://evil.example')
        )
        with pytest.raises(HandshakeException) as info:
            do_handshake(request, dispatcher, ServerOptions())
        assert info.value.status == 403

    def test_aborted_by_user_drops_the_connection(self, dispatcher):
        conn = MockConn()
        request = MockRequest(
            '/origin_abort', hybi_headers(origin='http://evil.example'), conn
        )
        with pytest.raises(AbortedByUserException):
            do_handshake(request, dispatcher, ServerOptions())
        assert conn.written == []

    def test_aborted_in_transfer_data(self, dispatcher):
        conn = MockConn()
        request = MockRequest('/origin_abort', hybi_headers(), conn)
        do_handshake(request, dispatcher, ServerOptions())
        with pytest.raises(AbortedByUserException):
            dispatcher.transfer_data(request)
        # Only the 101: no close frame.
        assert conn.written_data().endswith(b'\r\n\r\n')


class TestOtherLegacyHandlers:
    def test_close_handler(self, dispatcher):
        request, _, _, rest = run(
            dispatcher,
            '/close',
            client_text('4000 going now') + client_close(4000, b'ok'),
        )
        assert frames(rest) == [(common.OPCODE_CLOSE, b'\x0f\xa0going now')]
        assert request.ws_close_code == 4000

    def test_extensions_removed_by_handler(self, dispatcher):
        request, _, headers, rest = run(
            dispatcher,
            '/no_extension_raw',
            client_close(1000),
            sec_websocket_extensions='permessage-deflate',
        )
        assert 'Sec-WebSocket-Extensions' not in dict(headers)
        assert request.ws_extensions is None
        assert frames(rest) == [
            (common.OPCODE_TEXT, b'raw text'),
            (common.OPCODE_BINARY, b'\x00\x01'),
            (common.OPCODE_CLOSE, b'\x03\xe8'),
        ]

    def test_raw_handshake_written_by_the_handler(self, dispatcher):
        conn = MockConn()
        request = MockRequest('/handshake_raw', hybi_headers(), conn)
        with pytest.raises(AbortedByUserException):
            do_handshake(request, dispatcher, ServerOptions())
        assert conn.written_data() == (
            b'HTTP/1.1 101 Switching Protocols:\r\n'
            b'Connection: Upgrade\r\nUpgrade: WebSocket\r\n'
            b'Sec-WebSocket-Accept: ' + RFC6455_ACCEPT.encode() + b'\r\n\r\n'
        )

    def test_msgutil_threads(self, dispatcher):
        # The peer waits for each answer before sending on, as a real
        # client would (a close sent at once would be answered first).
        conn = MockConn(block_at_end=True)
        request = MockRequest('/threads', hybi_headers(), conn)
        do_handshake(request, dispatcher, ServerOptions())
        head = len(conn.written_data())
        thread = threading.Thread(
            target=dispatcher.transfer_data, args=(request,)
        )
        thread.start()

        def wait_for_frames(count):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                got = frames(conn.written_data()[head:])
                if len(got) >= count:
                    return got
                time.sleep(0.01)
            raise AssertionError('no answer from the handler')

        conn.put(client_text('one'))
        wait_for_frames(1)
        conn.put(client_text('two'))
        wait_for_frames(2)
        conn.put(client_close(1000))
        thread.join(5)
        assert not thread.is_alive()
        assert frames(conn.written_data()[head:]) == [
            (common.OPCODE_TEXT, b'ONE'),
            (common.OPCODE_TEXT, b'TWO'),
            (common.OPCODE_CLOSE, b'\x03\xe8'),
        ]

    def test_exceptions_caught_through_msgutil(self, dispatcher):
        events = dispatcher.get_handler_suite(
            '/status'
        ).transfer_data.__globals__['EVENTS']
        del events[:]
        _, _, _, rest = run(dispatcher, '/status', client_text('a'))
        assert events == ['terminated']
        _, _, _, rest = run(dispatcher, '/status', client_frame(3, b''))
        assert events == ['terminated', 'invalid frame']
        assert frames(rest) == [(common.OPCODE_CLOSE, b'\x03\xea')]

    def test_application_close_code(self, dispatcher):
        request, _, _, rest = run(
            dispatcher,
            '/status',
            client_text('app-close') + client_close(4001),
        )
        assert frames(rest) == [(common.OPCODE_CLOSE, b'\x0f\xa1app')]
        assert request.ws_close_code == 4001

    def test_original_constants(self):
        assert common.STATUS_USER_REGISTERED_BASE == 3000
        assert common.STATUS_USER_REGISTERED_MAX == 3999
        assert common.STATUS_USER_PRIVATE_BASE == 4000
        assert common.STATUS_USER_PRIVATE_MAX == 4999
        assert common.STATUS_INTERNAL_SERVER_ERROR == 1011
        assert common.STATUS_NORMAL == 1000
        assert common.STATUS_UNSUPPORTED == 1003
        assert common.STATUS_CODE_NOT_AVAILABLE == 1005
        assert common.STATUS_ABNORMAL_CLOSE == 1006
        assert common.STATUS_INVALID_FRAME_PAYLOAD == 1007
        assert common.STATUS_MANDATORY_EXT == 1010
        assert (
            common.WEBSOCKET_ACCEPT_UUID
            == b'258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
        )  # bytes in Python 3
        assert common.is_control_opcode(common.OPCODE_PING)
        assert common.is_control_opcode(common.OPCODE_CLOSE)
        assert not common.is_control_opcode(common.OPCODE_TEXT)
        assert not common.is_control_opcode(0x10)

    def test_names_handlers_import(self):
        from mod_pywebsocket import handshake, msgutil, stream
        from mod_pywebsocket.handshake import hybi

        assert handshake.AbortedByUserException is AbortedByUserException
        assert handshake.HandshakeException is HandshakeException
        assert (
            hybi.compute_accept_from_unicode(RFC6455_KEY)
            == RFC6455_ACCEPT.encode()
        )
        for name in (
            'send_message',
            'receive_message',
            'close_connection',
            'send_ping',
            'MessageReceiver',
            'MessageSender',
        ):
            assert callable(getattr(msgutil, name))
        assert (
            msgutil.ConnectionTerminatedException
            is common.ConnectionTerminatedException
        )
        assert msgutil.InvalidFrameException is common.InvalidFrameException
        assert msgutil.BadOperationException is common.BadOperationException
        assert (
            msgutil.UnsupportedFrameException
            is common.UnsupportedFrameException
        )
        assert msgutil.InvalidUTF8Exception is common.InvalidUTF8Exception
        assert stream.Stream and stream.StreamOptions
        for name in (
            'STATUS_NORMAL_CLOSURE',
            'STATUS_NO_STATUS_RECEIVED',
            'SEC_WEBSOCKET_KEY_HEADER',
            'OPCODE_TEXT',
            'VERSION_HYBI_LATEST',
        ):
            assert hasattr(common, name)
        assert common.DispatchException is DispatchException

    def test_util_module_handlers_import(self):
        # web-platform-tests handlers start with
        # "from mod_pywebsocket import common, msgutil, util".
        util = importlib.import_module('mod_pywebsocket.util')
        assert b''.join(util.pack_byte(i) for i in range(256)) == bytes(
            range(256)
        )
        assert util.unpack_byte(b'\x7f') == 127
        assert util.hexify(b'\x01\xab') == '01 ab'
        masker = util.RepeatedXorMasker(b'\x01\x02\x03\x04')
        assert masker.mask(b'\x00\x00') + masker.mask(b'\x00\x00') == (
            b'\x01\x02\x03\x04'
        )
