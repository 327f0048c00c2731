"""stream_hixie: draft-75 / draft-76 message I/O over a MockConn."""

import threading
import time

import pytest

from mock import MockConn, MockRequest
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    MessageTooBigException,
)
from mod_pywebsocket.stream_hixie import StreamHixie75

CLOSE = b'\xff\x00'


def make(
    data=b'',
    draft76=True,
    max_message_size=64 * 1024 * 1024,
    conn=None,
    **conn_kwargs,
):
    conn = conn or MockConn(data, **conn_kwargs)
    request = MockRequest(connection=conn)
    stream = StreamHixie75(request, draft76, max_message_size)
    request.ws_stream = stream
    return request, conn, stream


class TestReceive:
    def test_text_messages(self):
        _, _, stream = make(b'\x00Hello\xff\x00\xc3\xa9\xff\x00\xff')
        assert stream.receive_message() == 'Hello'
        assert stream.receive_message() == '\u00e9'
        assert stream.receive_message() == ''

    def test_one_byte_at_a_time(self):
        data = b'\x00Hello\xff\x80\x02ab\x00bye\xff' + CLOSE
        request, conn, stream = make(data, chunk=1)
        assert stream.receive_message() == 'Hello'
        assert stream.receive_message() == 'bye'
        assert stream.receive_message() is None

    def test_discarded_frames(self):
        _, _, stream = make(b'\x80\x03abc\x05junk\xff\x00kept\xff')
        assert stream.receive_message() == 'kept'

    def test_draft76_closing_handshake_is_answered(self):
        request, conn, stream = make(b'\x00last\xff' + CLOSE)
        assert stream.receive_message() == 'last'
        assert stream.receive_message() is None
        assert conn.written_data() == CLOSE
        assert request.client_terminated and request.server_terminated
        with pytest.raises(BadOperationException):
            stream.receive_message()
        with pytest.raises(BadOperationException):
            stream.send_message('late')

    def test_draft76_eof_without_close_is_connection_terminated(self):
        _, _, stream = make(b'\x00x\xff')
        assert stream.receive_message() == 'x'
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()

    def test_draft75_eof_is_the_normal_end(self):
        request, conn, stream = make(b'\x00x\xff', draft76=False)
        assert stream.receive_message() == 'x'
        assert stream.receive_message() is None
        assert request.client_terminated
        assert conn.written == []

    def test_draft75_has_no_closing_handshake(self):
        request, conn, stream = make(CLOSE + b'\x00after\xff', draft76=False)
        assert stream.receive_message() == 'after'
        assert conn.written == []

    def test_read_error_is_connection_terminated(self):
        class Broken(MockConn):
            def read(self, n):
                raise ConnectionResetError('reset')

        _, _, stream = make(conn=Broken())
        with pytest.raises(ConnectionTerminatedException):
            stream.receive_message()


class TestLimits:
    def test_too_big_draft76_sends_closing_handshake(self):
        request, conn, stream = make(
            b'\x00' + b'x' * 20 + b'\xff', max_message_size=10
        )
        with pytest.raises(MessageTooBigException) as info:
            stream.receive_message()
        assert info.value.code == 1009
        assert conn.written_data() == CLOSE
        assert request.client_terminated and request.server_terminated

    def test_too_big_unterminated_frame(self):
        request, conn, stream = make(
            b'\x00' + b'x' * 20, max_message_size=10, block_at_end=True
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert conn.written_data() == CLOSE

    def test_too_big_draft75_sends_nothing(self):
        request, conn, stream = make(
            b'\x80\x7f', draft76=False, max_message_size=10
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert conn.written == []

    def test_too_big_when_the_close_cannot_be_written(self):
        class WriteFails(MockConn):
            def write(self, data):
                raise BrokenPipeError('gone')

        request, _, stream = make(
            conn=WriteFails(b'\x80\x7f'), max_message_size=10
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert request.server_terminated


class TestSend:
    def test_text(self):
        _, conn, stream = make()
        stream.send_message('Hello')
        stream.send_message('\u00e9')
        assert conn.written == [b'\x00Hello\xff', b'\x00\xc3\xa9\xff']

    @pytest.mark.parametrize(
        'args,kwargs',
        [
            ((b'bytes',), {}),
            (('text',), {'binary': True}),
            (('text',), {'end': False}),
            ((42,), {}),
        ],
    )
    def test_refused(self, args, kwargs):
        _, conn, stream = make()
        with pytest.raises(BadOperationException):
            stream.send_message(*args, **kwargs)
        assert conn.written == []

    def test_no_ping(self):
        _, _, stream = make()
        with pytest.raises(BadOperationException):
            stream.send_ping(b'x')

    def test_write_error_is_connection_terminated(self):
        class WriteFails(MockConn):
            def write(self, data):
                raise BrokenPipeError('gone')

        _, _, stream = make(conn=WriteFails())
        with pytest.raises(ConnectionTerminatedException):
            stream.send_message('x')

    def test_send_while_another_thread_receives(self):
        _, conn, stream = make(block_at_end=True)
        got = []
        thread = threading.Thread(
            target=lambda: got.append(stream.receive_message())
        )
        thread.start()
        time.sleep(0.05)
        stream.send_message('while blocked')
        assert conn.written == [b'\x00while blocked\xff']
        conn.put(b'\x00wake\xff')
        thread.join(5)
        assert got == ['wake']


class TestClose:
    def test_draft76_close_waits_for_the_peer(self):
        request, conn, stream = make(block_at_end=True)
        done = threading.Event()

        def close():
            stream.close_connection()
            done.set()

        thread = threading.Thread(target=close)
        thread.start()
        time.sleep(0.05)
        assert not done.is_set()
        assert conn.written_data() == CLOSE
        conn.put(b'\x00dropped\xff' + CLOSE)
        thread.join(5)
        assert done.is_set()
        assert request.client_terminated and request.server_terminated
        assert conn.written_data() == CLOSE

    def test_draft76_close_when_peer_vanishes(self):
        request, conn, stream = make(b'')
        stream.close_connection()
        assert conn.written_data() == CLOSE

    def test_draft76_close_with_a_bad_frame_while_waiting(self):
        request, conn, stream = make(b'\x80\x7f', max_message_size=10)
        stream.close_connection()
        assert conn.written_data() == CLOSE

    def test_draft76_close_without_waiting_and_twice(self):
        request, conn, stream = make(block_at_end=True)
        stream.close_connection(wait_response=False)
        stream.close_connection()
        assert conn.written_data() == CLOSE
        assert request.server_terminated and not request.client_terminated

    def test_peer_close_after_ours_is_not_answered(self):
        request, conn, stream = make(b'\x00late\xff' + CLOSE)
        stream.close_connection(wait_response=False)
        assert stream.receive_message() == 'late'
        assert stream.receive_message() is None
        assert conn.written_data() == CLOSE

    def test_read_timeout_is_set_while_waiting(self):
        class TimedConn(MockConn):
            timeouts = []

            def set_read_timeout(self, value):
                self.timeouts.append(value)

        conn = TimedConn(CLOSE)
        request, _, stream = make(conn=conn)
        stream.close_connection()
        assert conn.timeouts[0] == 10.0
        assert request.client_terminated

    def test_draft75_close_sends_nothing(self):
        request, conn, stream = make(b'', draft76=False)
        stream.close_connection()
        assert conn.written == []
        assert request.server_terminated
        with pytest.raises(BadOperationException):
            stream.send_message('late')
