"""msgutil: the function API and the helper threads."""

import queue
import threading
import time

import pytest

from core_helpers import (
    client_close,
    client_frame,
    client_text,
    make_stream,
    server_frames,
    written_close_codes,
)
from mod_pywebsocket import common, msgutil, stream
from mod_pywebsocket.common import BadOperationException


def test_functions_go_through_ws_stream():
    request, conn, _ = make_stream(client_text('in') + client_close(1000))
    msgutil.send_message(request, 'text')
    msgutil.send_message(request, b'bin')
    msgutil.send_message(request, 'frag', end=False)
    msgutil.send_message(request, 'ment')
    msgutil.send_ping(request, b'ping')
    assert msgutil.receive_message(request) == 'in'
    msgutil.close_connection(request)
    frames = [
        (f.fin, f.opcode, f.payload)
        for f in server_frames(conn.written_data())
    ]
    assert frames == [
        (1, common.OPCODE_TEXT, b'text'),
        (1, common.OPCODE_BINARY, b'bin'),
        (0, common.OPCODE_TEXT, b'frag'),
        (1, common.OPCODE_CONTINUATION, b'ment'),
        (1, common.OPCODE_PING, b'ping'),
        (1, common.OPCODE_CLOSE, b'\x03\xe8'),
    ]
    assert request.ws_close_code == 1000


def test_send_message_binary_flag():
    request, conn, _ = make_stream()
    msgutil.send_message(request, b'bin', binary=True)
    with pytest.raises(BadOperationException):
        msgutil.send_message(request, 'str', binary=True)
    assert server_frames(conn.written_data())[0].opcode == common.OPCODE_BINARY


def test_close_connection_with_code_and_reason():
    request, conn, _ = make_stream(client_close(1000))
    msgutil.close_connection(request, 4000, 'app')
    [frame] = server_frames(conn.written_data())
    assert frame.payload == b'\x0f\xa0app'


def test_receive_none_after_peer_close():
    request, conn, _ = make_stream(client_close(1000))
    assert msgutil.receive_message(request) is None


def test_builders_are_reexported():
    for name in (
        'create_text_frame',
        'create_binary_frame',
        'create_close_frame',
        'create_closing_handshake_body',
        'create_header',
        'create_ping_frame',
        'create_pong_frame',
    ):
        assert getattr(msgutil, name) is getattr(stream, name)


class TestMessageReceiver:
    def test_queue_mode(self):
        data = (
            client_text('one')
            + client_frame(common.OPCODE_BINARY, b'2')
            + client_close(1000)
        )
        request, conn, _ = make_stream(data)
        receiver = msgutil.MessageReceiver(request)
        assert receiver.receive(timeout=5) == 'one'
        assert receiver.receive(timeout=5) == b'2'
        assert receiver.receive(timeout=5) is None
        receiver.join(5)
        assert not receiver.is_alive()
        assert receiver.error is None
        assert written_close_codes(conn) == [1000]

    def test_receive_nowait(self):
        request, conn, _ = make_stream(block_at_end=True)
        receiver = msgutil.MessageReceiver(request)
        assert receiver.receive_nowait() is None
        conn.put(client_text('later'))
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = receiver.receive_nowait()
            time.sleep(0.01)
        assert message == 'later'
        with pytest.raises(queue.Empty):
            receiver.receive(timeout=0.01)
        conn.put(client_close(1000))
        receiver.join(5)
        assert not receiver.is_alive()

    def test_onmessage_mode(self):
        data = client_text('a') + client_text('b') + client_close(1001)
        request, conn, _ = make_stream(data)
        got = []
        finished = threading.Event()

        def onmessage(message):
            got.append(message)
            if message is None:
                finished.set()

        receiver = msgutil.MessageReceiver(request, onmessage)
        assert finished.wait(5)
        receiver.join(5)
        assert got == ['a', 'b', None]
        with pytest.raises(BadOperationException):
            receiver.receive()
        with pytest.raises(BadOperationException):
            receiver.receive_nowait()
        assert written_close_codes(conn) == [1001]

    def test_error_is_surfaced_and_queue_ends(self):
        request, conn, _ = make_stream(client_frame(3, b'bad'))
        receiver = msgutil.MessageReceiver(request)
        assert receiver.receive(timeout=5) is None
        receiver.join(5)
        assert isinstance(receiver.error, common.InvalidFrameException)
        assert written_close_codes(conn) == [1002]

    def test_error_with_onmessage(self):
        request, conn, _ = make_stream(b'')  # EOF at once
        got = []
        receiver = msgutil.MessageReceiver(request, got.append)
        receiver.join(5)
        assert isinstance(receiver.error, common.ConnectionTerminatedException)
        assert got == []

    def test_stop_closes_after_the_current_message(self):
        request, conn, _ = make_stream(block_at_end=True)
        receiver = msgutil.MessageReceiver(request)
        receiver.stop()
        conn.put(client_text('last') + client_close(1000))
        receiver.join(5)
        assert not receiver.is_alive()
        assert receiver.receive(timeout=1) == 'last'
        assert written_close_codes(conn) == [1000]


class TestMessageSender:
    def test_send_waits_and_keeps_order(self):
        request, conn, _ = make_stream()
        sender = msgutil.MessageSender(request)
        sender.send('first')
        assert len(conn.written) == 1
        sender.send_nowait(b'second')
        sender.send_nowait('third')
        sender.stop()
        sender.join(5)
        assert not sender.is_alive()
        assert [
            (f.opcode, f.payload) for f in server_frames(conn.written_data())
        ] == [
            (common.OPCODE_TEXT, b'first'),
            (common.OPCODE_BINARY, b'second'),
            (common.OPCODE_TEXT, b'third'),
        ]

    def test_send_raises_what_sending_raised(self):
        request, conn, stream_ = make_stream()
        stream_.close_connection(wait_response=False)
        sender = msgutil.MessageSender(request)
        with pytest.raises(BadOperationException):
            sender.send('after close')
        sender.send_nowait('ignored')  # error swallowed
        sender.stop()
        sender.join(5)
        assert not sender.is_alive()
