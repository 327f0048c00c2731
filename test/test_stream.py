"""stream: blocking RFC 6455 message I/O over a MockConn."""

import struct
import threading
import time

import pytest

from core_helpers import (
    client_close,
    client_frame,
    client_text,
    close_code_of,
    make_stream,
    server_frames,
    written_close_codes,
)
from mock import MockConn, MockRequest
from mod_pywebsocket import common, stream as stream_module
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    InvalidFrameException,
    InvalidUTF8Exception,
    MessageTooBigException,
    ProtocolError,
)
from mod_pywebsocket.frame import FrameParser
from mod_pywebsocket.stream import Stream, StreamOptions

TEXT = common.OPCODE_TEXT
BINARY = common.OPCODE_BINARY
CONT = common.OPCODE_CONTINUATION
PING = common.OPCODE_PING
PONG = common.OPCODE_PONG
CLOSE = common.OPCODE_CLOSE


def frames_written(conn):
    return [
        (f.fin, f.opcode, f.payload)
        for f in server_frames(conn.written_data())
    ]


# ---- receiving ------------------------------------------------------------


class TestReceive:
    def test_rfc6455_masked_hello(self):
        data = bytes(
            [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        )
        _, _, stream = make_stream(data)
        assert stream.receive_message() == 'Hello'
        assert stream.get_last_received_opcode() == TEXT

    def test_text_and_binary(self):
        data = (
            client_text('caf\u00e9')
            + client_frame(BINARY, b'\x00\xff')
            + client_text('')
        )
        _, _, stream = make_stream(data)
        assert stream.receive_message() == 'caf\u00e9'
        message = stream.receive_message()
        assert message == b'\x00\xff' and isinstance(message, bytes)
        assert stream.get_last_received_opcode() == BINARY
        assert stream.receive_message() == ''

    def test_fragmented_message_is_reassembled(self):
        data = (
            client_frame(TEXT, 'Hel', 0)
            + client_frame(CONT, '', 0)
            + client_frame(CONT, 'lo')
        )
        _, _, stream = make_stream(data)
        assert stream.receive_message() == 'Hello'
        assert stream.get_last_received_opcode() == TEXT

    def test_fragmented_binary_opcode(self):
        data = client_frame(BINARY, b'a', 0) + client_frame(CONT, b'b')
        _, _, stream = make_stream(data)
        assert stream.receive_message() == b'ab'
        assert stream.get_last_received_opcode() == BINARY

    def test_lengths_through_the_stream(self):
        sizes = [0, 125, 126, 65535, 65536, 100000]
        data = b''.join(
            client_frame(BINARY, bytes([i % 256]) * size)
            for i, size in enumerate(sizes)
        )
        _, _, stream = make_stream(data)
        for i, size in enumerate(sizes):
            assert stream.receive_message() == bytes([i % 256]) * size

    def test_one_byte_at_a_time(self):
        data = (
            client_frame(TEXT, 'Hel', 0)
            + client_frame(PING, b'x')
            + client_frame(CONT, 'lo')
            + client_frame(BINARY, bytes(300))
            + client_close(1000)
        )
        request, conn, stream = make_stream(data, chunk=1)
        assert stream.receive_message() == 'Hello'
        assert stream.receive_message() == bytes(300)
        assert stream.receive_message() is None
        assert request.ws_close_code == 1000

    def test_receive_filtered_frame(self):
        _, _, stream = make_stream(client_frame(TEXT, 'Hel', 0))
        frame = stream.receive_filtered_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (0, TEXT, b'Hel')

    def test_eof_without_close_is_connection_terminated(self):
        _, _, stream = make_stream(client_text('only'))
        assert stream.receive_message() == 'only'
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()

    def test_eof_in_the_middle_of_a_frame(self):
        _, _, stream = make_stream(client_text('Hello')[:-2])
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()

    def test_read_error_is_connection_terminated(self):
        class Broken(MockConn):
            def read(self, n):
                raise ConnectionResetError('reset by peer')

        request = MockRequest(connection=Broken())
        stream = Stream(request)
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()

    def test_read_returning_none_is_eof(self):
        class NoneAtEnd(MockConn):
            def read(self, n):
                return None

        stream = Stream(MockRequest(connection=NoneAtEnd()))
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()

    def test_explicit_transport(self):
        conn = MockConn(client_text('via transport'))
        request = MockRequest(connection=MockConn())
        stream = Stream(request, transport=conn)
        assert stream.receive_message() == 'via transport'
        stream.send_message('back')
        assert conn.written and not request.connection.written


class TestControlFrames:
    def test_ping_is_answered_with_pong(self):
        data = client_frame(PING, b'are you there') + client_text('after')
        _, conn, stream = make_stream(data)
        assert stream.receive_message() == 'after'
        assert frames_written(conn) == [(1, PONG, b'are you there')]

    def test_ping_inside_fragmented_message(self):
        data = (
            client_frame(TEXT, 'a', 0)
            + client_frame(PING, b'1')
            + client_frame(CONT, 'b', 0)
            + client_frame(PING, b'2')
            + client_frame(CONT, 'c')
        )
        _, conn, stream = make_stream(data)
        assert stream.receive_message() == 'abc'
        assert frames_written(conn) == [(1, PONG, b'1'), (1, PONG, b'2')]

    def test_pongs_inside_fragmented_message_are_passed_to_the_hook(self):
        data = (
            client_frame(BINARY, b'a', 0)
            + client_frame(PONG, b'p1')
            + client_frame(CONT, b'b', 0)
            + client_frame(PONG, b'')
            + client_frame(CONT, b'c')
        )
        request, conn, stream = make_stream(data)
        pongs = []
        request.on_pong_handler = lambda req, body: pongs.append((req, body))
        assert stream.receive_message() == b'abc'
        assert pongs == [(request, b'p1'), (request, b'')]
        assert conn.written == []  # a pong is never answered

    def test_unsolicited_pong_without_hook_is_ignored(self):
        _, conn, stream = make_stream(
            client_frame(PONG, b'x') + client_text('t')
        )
        assert stream.receive_message() == 't'
        assert conn.written == []

    def test_on_ping_handler_replaces_the_automatic_pong(self):
        request, conn, stream = make_stream(
            client_frame(PING, b'hi') + client_text('t')
        )
        pings = []
        request.on_ping_handler = lambda req, body: pings.append(body)
        assert stream.receive_message() == 't'
        assert pings == [b'hi']
        assert conn.written == []

    def test_on_ping_handler_may_answer_itself(self):
        request, conn, stream = make_stream(
            client_frame(PING, b'hi') + client_text('t')
        )
        request.on_ping_handler = lambda req, body: req.ws_stream.send_pong(
            body + b'!'
        )
        assert stream.receive_message() == 't'
        assert frames_written(conn) == [(1, PONG, b'hi!')]

    def test_send_ping(self):
        _, conn, stream = make_stream()
        stream.send_ping(b'bytes')
        stream.send_ping('text')
        stream.send_ping()
        stream.send_ping(b'x' * 125)
        assert frames_written(conn) == [
            (1, PING, b'bytes'),
            (1, PING, b'text'),
            (1, PING, b''),
            (1, PING, b'x' * 125),
        ]

    def test_ping_body_over_125_bytes_is_refused(self):
        _, conn, stream = make_stream()
        with pytest.raises(BadOperationException):
            stream.send_ping(b'x' * 126)
        assert conn.written == []


# ---- protocol violations --------------------------------------------------


def fail_with(data, exception=ProtocolError, **kwargs):
    """Feed `data`, expect `exception`; return (request, close codes)."""
    request, conn, stream = make_stream(data, **kwargs)
    with pytest.raises(exception) as info:
        while True:
            stream.receive_message()
    return request, written_close_codes(conn), info.value, stream


class TestProtocolErrors:
    @pytest.mark.parametrize(
        'data',
        [
            client_text('Hello')[:1] + b'\x05Hello',  # unmasked
            client_frame(3, b'x'),  # opcode 3
            client_frame(0xB, b'x'),  # opcode B
            client_frame(PING, b'x', fin=0),  # fragmented
            client_frame(CLOSE, b'\x03\xe8', fin=0),
            client_frame(PONG, bytes(126)),  # > 125
            client_frame(PING, bytes(200)),
            client_frame(CONT, b'x'),  # no start
            client_frame(TEXT, 'a', 0) + client_frame(TEXT, 'b'),  # new msg
            client_frame(TEXT, 'a', 0) + client_frame(BINARY, b'b', 0),
            client_frame(TEXT, 'a', rsv1=1),  # RSV
            client_frame(BINARY, b'a', rsv2=1),
            client_frame(TEXT, 'a', rsv3=1),
            client_frame(CLOSE, b'\x03'),  # 1-byte
            client_close(1004),
            client_close(1005),
            client_close(1006),
            client_close(1015),
            client_close(0),
            client_close(999),
            client_close(5000),
            client_close(65535),
            client_close(1000, b'\xff\xfe'),  # non-UTF-8
        ],
        ids=[
            'unmasked',
            'opcode3',
            'opcodeB',
            'frag-ping',
            'frag-close',
            'big-pong',
            'big-ping',
            'orphan-cont',
            'text-in-text',
            'binary-in-text',
            'rsv1',
            'rsv2',
            'rsv3',
            'close-1-byte',
            'close-1004',
            'close-1005',
            'close-1006',
            'close-1015',
            'close-0',
            'close-999',
            'close-5000',
            'close-65535',
            'close-bad-reason',
        ],
    )
    def test_violation_closes_with_1002(self, data):
        request, codes, error, _ = fail_with(data)
        assert codes == [1002]
        assert error.code == 1002
        assert isinstance(error, InvalidFrameException)
        assert request.server_terminated and request.client_terminated

    def test_unclaimed_rsv_closes_with_the_options_rsv_close_code(self):
        data = client_frame(TEXT, b'', rsv3=1) + client_text('after')
        request, conn, stream = make_stream(data)
        with pytest.raises(InvalidFrameException):
            stream.receive_message()
        assert written_close_codes(conn) == [1002]  # the default
        request, conn, stream = make_stream(data, rsv_close_code=1003)
        with pytest.raises(common.UnsupportedFrameException) as info:
            stream.receive_message()
        assert info.value.code == 1003
        assert written_close_codes(conn) == [1003]
        assert request.server_terminated

    def test_unmasked_frame_from_client_via_builder(self):
        data = stream_module.create_text_frame('Hello')
        _, codes, _, _ = fail_with(data)
        assert codes == [1002]

    def test_invalid_utf8_single_frame_is_1007(self):
        _, codes, error, _ = fail_with(
            client_text(b'\xce\xba\xe1\xbd'), InvalidUTF8Exception
        )
        assert codes == [1007]
        assert error.code == 1007

    def test_invalid_utf8_in_the_middle_of_a_fragmented_message_is_1007(self):
        # The message never ends (the connection stays open): the server
        # must fail as soon as the bad bytes arrive.
        data = client_frame(TEXT, b'\xce\xba', 0) + client_frame(
            CONT, b'\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80', 0
        )
        request, conn, stream = make_stream(data, block_at_end=True)
        with pytest.raises(InvalidUTF8Exception):
            stream.receive_message()
        assert written_close_codes(conn) == [1007]

    def test_message_over_max_size_single_frame_is_1009(self):
        _, codes, error, _ = fail_with(
            client_frame(BINARY, bytes(1025)),
            MessageTooBigException,
            max_message_size=1024,
        )
        assert codes == [1009]
        assert error.code == 1009

    def test_message_over_max_size_detected_from_the_header(self):
        # Only the header of a huge frame arrives: fail at once.
        header = client_frame(BINARY, bytes(70000))[:14]
        request, conn, stream = make_stream(
            header, block_at_end=True, max_message_size=65536
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert written_close_codes(conn) == [1009]

    def test_fragmented_message_over_max_size_is_1009(self):
        data = client_frame(BINARY, bytes(600), 0) + client_frame(
            CONT, bytes(600), 0
        )
        request, conn, stream = make_stream(
            data, block_at_end=True, max_message_size=1024
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert written_close_codes(conn) == [1009]

    def test_default_max_size_is_64_mib(self):
        assert StreamOptions().max_message_size == 64 * 1024 * 1024
        header = (
            client_frame(BINARY, b'')[:1]
            + b'\xff'
            + struct.pack('!Q', 64 * 1024 * 1024 + 1)
        )
        _, codes, _, _ = fail_with(header, MessageTooBigException)
        assert codes == [1009]

    def test_after_a_failure_receive_is_a_bad_operation(self):
        _, _, _, stream = fail_with(client_frame(3, b'x'))
        with pytest.raises(BadOperationException):
            stream.receive_message()
        with pytest.raises(BadOperationException):
            stream.send_message('late')

    def test_failure_when_the_close_cannot_be_written(self):
        class WriteFails(MockConn):
            def write(self, data):
                raise BrokenPipeError('gone')

        request = MockRequest(connection=WriteFails(client_frame(3, b'x')))
        stream = Stream(request)
        with pytest.raises(InvalidFrameException):
            stream.receive_message()
        assert request.client_terminated


# ---- closing --------------------------------------------------------------


class TestPassiveClose:
    def test_peer_close_is_echoed_and_recorded(self):
        request, conn, stream = make_stream(client_close(1001, b'bye'))
        assert stream.receive_message() is None
        assert request.ws_close_code == 1001
        assert request.ws_close_reason == 'bye'
        assert request.client_terminated and request.server_terminated
        assert request.ws_stream.closed_by == 'client'
        [frame] = server_frames(conn.written_data())
        assert frame.opcode == CLOSE
        assert frame.payload == b'\x03\xe9'  # the code, no reason

    def test_empty_close_body_is_1005_and_empty_reply(self):
        request, conn, stream = make_stream(client_close(None))
        assert stream.receive_message() is None
        assert request.ws_close_code == 1005
        assert request.ws_close_reason == ''
        assert frames_written(conn) == [(1, CLOSE, b'')]

    def test_passive_closing_handler_return_value_is_sent(self):
        seen = []

        def passive(req):
            seen.append((req.ws_close_code, req.ws_close_reason))
            return 3001, 'custom \u00e9'

        request, conn, stream = make_stream(
            client_close(1000, b'x'), passive_closing_handler=passive
        )
        assert stream.receive_message() is None
        assert seen == [(1000, 'x')]
        assert frames_written(conn) == [
            (1, CLOSE, b'\x0b\xb9' + 'custom \u00e9'.encode())
        ]

    @pytest.mark.parametrize('reply', [(None, ''), (1005, 'ignored')])
    def test_passive_handler_may_send_an_empty_body(self, reply):
        request, conn, stream = make_stream(
            client_close(1000), passive_closing_handler=lambda req: reply
        )
        assert stream.receive_message() is None
        assert frames_written(conn) == [(1, CLOSE, b'')]

    def test_close_inside_fragmented_message(self):
        data = client_frame(TEXT, 'part', 0) + client_close(1000)
        request, conn, stream = make_stream(data)
        assert stream.receive_message() is None
        assert written_close_codes(conn) == [1000]

    def test_operations_after_peer_close(self):
        request, conn, stream = make_stream(client_close(1000))
        assert stream.receive_message() is None
        with pytest.raises(BadOperationException):
            stream.receive_message()
        with pytest.raises(BadOperationException):
            stream.send_message('late')
        with pytest.raises(BadOperationException):
            stream.send_ping()
        stream.send_pong(b'ignored')  # silently dropped
        stream.close_connection()  # nothing more to do
        assert len(server_frames(conn.written_data())) == 1


class TestActiveClose:
    def test_close_connection_waits_for_the_reply(self):
        request, conn, stream = make_stream(block_at_end=True)
        done = threading.Event()

        def close():
            stream.close_connection(1000, 'bye')
            done.set()

        thread = threading.Thread(target=close)
        thread.start()
        time.sleep(0.1)
        assert not done.is_set()  # still waiting for the peer
        assert frames_written(conn) == [(1, CLOSE, b'\x03\xe8bye')]
        conn.put(client_text('dropped') + client_close(1000, b'ok'))
        thread.join(5)
        assert done.is_set()
        assert request.ws_close_code == 1000
        assert request.ws_close_reason == 'ok'
        assert request.client_terminated and request.server_terminated
        assert request.ws_stream.closed_by == 'server'
        # No second close frame is sent in reply.
        assert len(server_frames(conn.written_data())) == 1

    def test_close_connection_without_waiting(self):
        request, conn, stream = make_stream(block_at_end=True)
        assert request.ws_stream.closed_by is None
        stream.close_connection(wait_response=False)
        assert written_close_codes(conn) == [1000]
        assert request.server_terminated and not request.client_terminated
        assert request.ws_stream.closed_by == 'server'

    def test_close_connection_when_the_peer_vanishes(self):
        request, conn, stream = make_stream(b'')
        stream.close_connection(1001)
        assert written_close_codes(conn) == [1001]
        assert not request.client_terminated

    def test_protocol_error_while_waiting_is_swallowed(self):
        request, conn, stream = make_stream(client_frame(3, b''))
        stream.close_connection(1000)
        assert written_close_codes(conn) == [1000]

    def test_close_connection_twice_sends_one_frame(self):
        _, conn, stream = make_stream(client_close(1000))
        stream.close_connection()
        stream.close_connection()
        assert written_close_codes(conn) == [1000]

    def test_close_with_empty_body(self):
        _, conn, stream = make_stream(client_close(None))
        stream.close_connection(None)
        assert frames_written(conn) == [(1, CLOSE, b'')]

    @pytest.mark.parametrize(
        'args', [(None, 'reason'), (70000, ''), (1000, 'x' * 124)]
    )
    def test_invalid_close_arguments(self, args):
        request, conn, stream = make_stream()
        with pytest.raises(BadOperationException):
            stream.close_connection(*args)
        assert conn.written == []
        assert not request.server_terminated

    def test_read_timeout_is_set_while_waiting(self):
        class TimedConn(MockConn):
            timeouts = []

            def set_read_timeout(self, value):
                self.timeouts.append(value)

        conn = TimedConn(client_close(1000))
        request = MockRequest(connection=conn)
        options = StreamOptions()
        options.close_timeout = 3.5
        stream = Stream(request, options)
        stream.close_connection()
        assert conn.timeouts == [3.5, None]

    def test_peer_reply_after_our_close_is_not_answered(self):
        request, conn, stream = make_stream(
            client_text('late message') + client_close(1000, b'reply')
        )
        stream.close_connection(1001, wait_response=False)
        # The handler may keep reading until the peer's close arrives.
        assert stream.receive_message() == 'late message'
        assert stream.receive_message() is None
        assert request.ws_close_code == 1000
        assert written_close_codes(conn) == [1001]


# ---- sending --------------------------------------------------------------


class _RefusingTransport(MockConn):
    """A non-blocking transport whose socket takes nothing while
    `refuse` is set (a peer that stopped reading)."""

    nonblocking_writes = True

    def __init__(self) -> None:
        super().__init__()
        self.refuse = True

    def try_write(self, data) -> int:
        if self.refuse:
            return 0
        self.write(bytes(data))
        return len(data)


class TestReceiveBytes:
    """pywebsocket3's Stream.receive_bytes: raw bytes, no framing."""

    def test_raw_bytes_after_a_message_in_the_same_read(self):
        # A message and raw bytes arrive in one read: the message is
        # parsed, the raw bytes are not lost.
        data = client_text('hi') + b'raw-bytes' + client_text('after')
        conn = MockConn(data)
        stream = Stream(
            MockRequest(connection=conn), StreamOptions(), transport=conn
        )
        assert stream.receive_message() == 'hi'
        assert stream.connection.input_pending()  # all of it was read
        assert stream.receive_bytes(3) == b'raw'
        assert stream.receive_bytes(6) == b'-bytes'
        assert stream.receive_message() == 'after'

    def test_reads_until_it_has_them_all(self):
        _, _, stream = make_stream(b'abcdefgh', chunk=3)
        assert stream.receive_bytes(8) == b'abcdefgh'

    def test_the_peer_closing_first_ends_it(self):
        _, _, stream = make_stream(b'abc')
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_bytes(4)


class TestTryFlush:
    def test_pongs_coalesce_while_the_peer_is_not_reading(self):
        conn = _RefusingTransport()
        stream = Stream(
            MockRequest(connection=conn), StreamOptions(), transport=conn
        )
        for payload in (b'1', b'2', b'3'):
            stream.connection.send_pong(payload)
            assert stream.try_flush() is False
        conn.refuse = False
        assert stream.try_flush() is True
        # The first was taken before the socket refused; the later ones
        # waited in the core, where the newest replaced the older.
        assert frames_written(conn) == [(1, PONG, b'1'), (1, PONG, b'3')]


class TestSend:
    def test_text_and_binary(self):
        _, conn, stream = make_stream()
        stream.send_message('Hello')
        stream.send_message(b'\x00\x01')
        stream.send_message(bytearray(b'ba'))
        stream.send_message(memoryview(b'mv'))
        stream.send_message(b'bin', binary=True)
        stream.send_message('\u00e9')
        assert frames_written(conn) == [
            (1, TEXT, b'Hello'),
            (1, BINARY, b'\x00\x01'),
            (1, BINARY, b'ba'),
            (1, BINARY, b'mv'),
            (1, BINARY, b'bin'),
            (1, TEXT, '\u00e9'.encode()),
        ]
        # One write per frame, unmasked, exactly the RFC bytes.
        assert conn.written[0] == bytes([0x81, 0x05]) + b'Hello'

    def test_large_messages_use_the_right_length_encoding(self):
        _, conn, stream = make_stream()
        for size in (125, 126, 65535, 65536):
            stream.send_message(bytes(size))
        heads = [w[:2] for w in conn.written]
        assert heads == [b'\x82\x7d', b'\x82\x7e', b'\x82\x7e', b'\x82\x7f']

    def test_fragmented_send(self):
        _, conn, stream = make_stream()
        stream.send_message('Hel', end=False)
        stream.send_message('', end=False)
        stream.send_message('lo', end=True)
        stream.send_message(b'a', end=False)
        stream.send_message(b'b')
        assert frames_written(conn) == [
            (0, TEXT, b'Hel'),
            (0, CONT, b''),
            (1, CONT, b'lo'),
            (0, BINARY, b'a'),
            (1, CONT, b'b'),
        ]

    def test_changing_type_mid_message_is_refused(self):
        _, conn, stream = make_stream()
        stream.send_message('text', end=False)
        with pytest.raises(BadOperationException):
            stream.send_message(b'binary')
        assert frames_written(conn) == [(0, TEXT, b'text')]

    def test_str_with_binary_flag_is_refused(self):
        _, conn, stream = make_stream()
        with pytest.raises(BadOperationException):
            stream.send_message('text', binary=True)
        assert conn.written == []

    @pytest.mark.parametrize('message', [42, None, ['a'], 1.5])
    def test_other_types_are_refused(self, message):
        _, conn, stream = make_stream()
        with pytest.raises(BadOperationException):
            stream.send_message(message)
        assert conn.written == []

    def test_send_after_close_is_refused(self):
        _, conn, stream = make_stream()
        stream.close_connection(wait_response=False)
        with pytest.raises(BadOperationException):
            stream.send_message('late')
        with pytest.raises(BadOperationException):
            stream.send_ping()

    def test_write_error_is_connection_terminated(self):
        class WriteFails(MockConn):
            def write(self, data):
                raise BrokenPipeError('gone')

        stream = Stream(MockRequest(connection=WriteFails()))
        with pytest.raises(ConnectionTerminatedException):
            stream.send_message('x')

    def test_client_stream_masks_and_expects_unmasked(self):
        options = StreamOptions()
        options.mask_send = True
        options.expect_masked = False
        incoming = stream_module.create_text_frame('from server')
        request, conn, stream = make_stream(incoming, options)
        assert stream.receive_message() == 'from server'
        stream.send_message('from client')
        stream.send_ping(b'p')
        parser = FrameParser(expect_masked=True)
        parser.feed(conn.written_data())
        assert parser.next_frame().payload == b'from client'
        assert parser.next_frame().opcode == PING

    def test_legacy_private_senders(self):
        request, conn, stream = make_stream()
        stream._send_frame(TEXT, b'raw')
        stream._send_closing_handshake(1000, 'bye')
        assert frames_written(conn) == [
            (1, TEXT, b'raw'),
            (1, CLOSE, b'\x03\xe8bye'),
        ]
        assert request.server_terminated


class _ByteByByteConn(MockConn):
    """A transport whose write hands each byte over separately, so that
    two unsynchronised writers would interleave their frames."""

    def write(self, data):
        for i in range(len(data)):
            self.written.append(data[i : i + 1])
            if i % 7 == 0:
                time.sleep(0)


class TestThreadSafety:
    def test_send_from_another_thread_while_receive_blocks(self):
        request, conn, stream = make_stream(block_at_end=True)
        received = []
        receiver = threading.Thread(
            target=lambda: received.append(stream.receive_message())
        )
        receiver.start()
        time.sleep(0.05)
        assert receiver.is_alive()  # blocked in receive
        stream.send_message('while blocked')
        stream.send_ping(b'p')
        assert frames_written(conn) == [
            (1, TEXT, b'while blocked'),
            (1, PING, b'p'),
        ]
        conn.put(client_text('wake up'))
        receiver.join(5)
        assert received == ['wake up']

    def test_no_data_frame_after_the_close_reply(self):
        # Sender threads keep sending while the receiving thread answers
        # the peer's close: no data frame may follow the close frame, and
        # every send after it fails.
        request, conn, stream = make_stream(block_at_end=True)
        started = threading.Barrier(5)
        refused = []

        def send(t):
            started.wait(5)
            deadline = time.monotonic() + 10
            i = 0
            while time.monotonic() < deadline:
                i += 1
                try:
                    stream.send_message('t%d %d' % (t, i))
                except BadOperationException:
                    refused.append(t)
                    return

        senders = [threading.Thread(target=send, args=(t,)) for t in range(4)]
        for sender in senders:
            sender.start()
        started.wait(5)
        conn.put(client_close(1000))
        assert stream.receive_message() is None  # close answered
        for sender in senders:
            sender.join(10)
        opcodes = [f.opcode for f in server_frames(conn.written_data())]
        assert opcodes.count(CLOSE) == 1 and opcodes[-1] == CLOSE
        assert sorted(refused) == [0, 1, 2, 3]

    def test_one_close_frame_when_both_sides_close_at_once(self):
        for _ in range(20):
            request, conn, stream = make_stream(block_at_end=True)
            closer = threading.Thread(
                target=lambda: stream.close_connection(
                    1001, 'racing close', wait_response=False
                )
            )
            conn.put(client_close(1000))
            closer.start()
            assert stream.receive_message() is None  # close answered
            closer.join(5)
            codes = written_close_codes(conn)
            assert codes in ([1000], [1001]), codes

    def test_concurrent_senders_keep_frames_whole(self):
        conn = _ByteByByteConn()
        request = MockRequest(connection=conn)
        stream = Stream(request)
        threads = []
        for t in range(4):

            def run(t=t):
                for i in range(40):
                    stream.send_message(
                        'thread %d message %d %s' % (t, i, 'x' * (i * 5))
                    )

            threads.append(threading.Thread(target=run))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        messages = [
            f.payload.decode() for f in server_frames(conn.written_data())
        ]
        assert len(messages) == 160
        for t in range(4):
            mine = [m for m in messages if m.startswith('thread %d ' % t)]
            assert mine == [
                'thread %d message %d %s' % (t, i, 'x' * (i * 5))
                for i in range(40)
            ]


# ---- keepalive ------------------------------------------------------------


class _TimeoutConn(MockConn):
    """A transport whose reads can time out, like a socket with
    SO_RCVTIMEO: `script` says, read by read, whether it times out (True)
    or returns the next scripted bytes (False). Read timeouts set by the
    stream are recorded in `timeouts`."""

    def __init__(self, data, script):
        super().__init__(data)
        self._script = list(script)
        self.timeouts = []

    def set_read_timeout(self, value):
        self.timeouts.append(value)

    def read(self, n):
        if self._script and self._script.pop(0):
            raise TimeoutError('read timed out')
        return super().read(n)


class TestKeepalive:
    def _stream(self, conn, interval=30.0, timeout=5.0):
        options = StreamOptions()
        options.keepalive_interval = interval
        options.keepalive_timeout = timeout
        request = MockRequest(connection=conn)
        return request, Stream(request, options)

    def test_vanished_peer_ends_receive(self):
        conn = _TimeoutConn(b'', [True, True])
        _, stream = self._stream(conn)
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()
        # The interval bounds the first read, the pong timeout the second.
        assert conn.timeouts == [30.0, 5.0]
        assert frames_written(conn) == [(1, PING, b'keepalive')]

    def test_answered_keepalive_continues(self):
        conn = _TimeoutConn(
            client_frame(PONG, b'keepalive') + client_text('later'),
            [True, False],
        )
        _, stream = self._stream(conn)
        assert stream.receive_message() == 'later'
        assert frames_written(conn) == [(1, PING, b'keepalive')]
        # Data arrived: back to the ping interval.
        assert conn.timeouts == [30.0, 5.0, 30.0]

    def test_timeout_defaults_to_the_interval(self):
        conn = _TimeoutConn(b'', [True, True])
        _, stream = self._stream(conn, interval=2.0, timeout=None)
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()
        assert conn.timeouts == [2.0, 2.0]

    def test_transport_without_read_timeouts_just_reads(self):
        _, stream = self._stream(MockConn(client_text('plain')))
        assert stream.receive_message() == 'plain'

    def test_timeout_without_keepalive_ends_the_connection(self):
        conn = _TimeoutConn(b'', [True])
        request = MockRequest(connection=conn)
        stream = Stream(request, StreamOptions())
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()
        assert frames_written(conn) == []

    def test_close_wait_is_not_broken_by_keepalive(self):
        # The peer takes longer than the keepalive interval to answer our
        # close: no ping may go out after the close frame, close_connection
        # must not raise, and the wait is bounded by the close timeout (the
        # transport's read timeout), not by the keepalive interval.
        conn = _TimeoutConn(client_close(1000), [False])
        request, stream = self._stream(conn)
        stream.close_connection()
        assert request.client_terminated
        assert request.ws_close_code == 1000
        assert frames_written(conn) == [(1, CLOSE, b'\x03\xe8')]
        assert conn.timeouts == [30.0, common.DEFAULT_CLOSE_TIMEOUT, None]

    def test_close_reply_that_never_comes_is_bounded(self):
        conn = _TimeoutConn(b'', [True])
        request, stream = self._stream(conn)
        stream.close_connection()  # returns, no ping sent
        assert not request.client_terminated
        assert frames_written(conn) == [(1, CLOSE, b'\x03\xe8')]

    def test_no_keepalive_ping_after_our_close(self):
        conn = _TimeoutConn(
            client_text('late') + client_close(1000), [False, False, False]
        )
        request, stream = self._stream(conn)
        stream.close_connection(wait_response=False)
        assert stream.receive_message() == 'late'
        assert stream.receive_message() is None
        assert frames_written(conn) == [(1, CLOSE, b'\x03\xe8')]

    def test_off_by_default(self):
        options = StreamOptions()
        assert options.keepalive_interval is None
        assert options.keepalive_timeout is None


# ---- builders handlers use ------------------------------------------------


class TestBuilders:
    def test_create_text_frame(self):
        assert stream_module.create_text_frame('Hello') == b'\x81\x05Hello'
        assert stream_module.create_text_frame(b'raw') == b'\x81\x03raw'
        assert stream_module.create_text_frame('Hel', fin=0) == b'\x01\x03Hel'
        assert (
            stream_module.create_text_frame('lo', opcode=CONT) == b'\x80\x02lo'
        )
        masked = stream_module.create_text_frame('Hello', mask=True)
        parser = FrameParser(expect_masked=True)
        parser.feed(masked)
        assert parser.next_frame().payload == b'Hello'

    def test_other_builders(self):
        assert stream_module.create_binary_frame(b'\x00') == b'\x82\x01\x00'
        assert stream_module.create_binary_frame(b'a', fin=0) == b'\x02\x01a'
        assert stream_module.create_ping_frame(b'p') == b'\x89\x01p'
        assert stream_module.create_pong_frame(b'p') == b'\x8a\x01p'
        assert (
            stream_module.create_close_frame(b'\x03\xe8')
            == b'\x88\x02\x03\xe8'
        )
        assert (
            stream_module.create_closing_handshake_body(1000, 'bye')
            == b'\x03\xe8bye'
        )
        assert stream_module.create_closing_handshake_body(None, '') == b''
        assert (
            stream_module.create_header(TEXT, 5, 1, 0, 0, 0, False)
            == b'\x81\x05'
        )
        assert stream_module.create_length_header(5, True) == b'\x85'
        assert (
            close_code_of(
                server_frames(stream_module.create_close_frame(b'\x03\xe9'))[0]
            )
            == 1001
        )
