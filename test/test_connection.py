"""The sans-I/O connection core (connection.py): bytes in, events out,
bytes to send; state, close bookkeeping, pong coalescing, timers for a
clock the test passes in. No sockets, no threads."""

from __future__ import annotations

import ast
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT_DIR
from core_helpers import client_close, client_frame, client_text, server_frames
from mod_pywebsocket import common
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    InvalidFrameException,
    InvalidUTF8Exception,
    MessageTooBigException,
    ProtocolError,
)
from mod_pywebsocket.connection import (
    CloseReceived,
    HixieConnection,
    Message,
    Ping,
    Pong,
    State,
    WebSocketConnection,
)
from mod_pywebsocket.extensions import Deflater, Inflater
from mod_pywebsocket.frame import FrameParser

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TEXT, BINARY, CONT = (
    common.OPCODE_TEXT,
    common.OPCODE_BINARY,
    common.OPCODE_CONTINUATION,
)
PING, PONG, CLOSE = (
    common.OPCODE_PING,
    common.OPCODE_PONG,
    common.OPCODE_CLOSE,
)


def drain(conn):
    """Every event the bytes fed so far make, and the error (if any)."""
    events = []
    try:
        while True:
            event = conn.next_event()
            if event is None:
                return events, None
            events.append(event)
    except (ProtocolError, ConnectionTerminatedException) as e:
        return events, type(e)


def feed_in_pieces(conn, data, cuts):
    events, error = [], None
    last = 0
    for point in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        piece = data[last:point]
        last = point
        if not piece:
            continue  # b'' would mean: end of stream
        conn.receive_data(piece)
        more, error = drain(conn)
        events += more
        if error:
            break
    return events, error


def sent_frames(conn, allowed_rsv=0):
    return [
        (f.fin, f.opcode, f.payload)
        for f in server_frames(conn.data_to_send(), allowed_rsv)
    ]


# ---- the core does no I/O -----------------------------------------------


def test_the_core_imports_no_io_threads_or_clock():
    """connection.py and the codecs under it: no socket, thread, select,
    time or mod_python import (the drivers own those)."""
    banned = {
        'socket',
        'ssl',
        'threading',
        'select',
        'selectors',
        'time',
        'asyncio',
        'mod_python',
        'subprocess',
        '_thread',
    }
    for name in (
        'connection',
        'frame',
        'message',
        'hixie_frame',
        'masking',
        'masking_openssl',
        'common',
    ):
        path = os.path.join(ROOT_DIR, 'mod_pywebsocket', name + '.py')
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or '']
            else:
                continue
            for module in modules:
                assert module.split('.')[0] not in banned, (name, module)


# ---- events from bytes, in any chunking --------------------------------

MESSAGES = st.lists(
    st.one_of(
        st.text(max_size=300).map(lambda t: ('text', t)),
        st.binary(max_size=300).map(lambda b: ('binary', b)),
        st.binary(max_size=125).map(lambda b: ('ping', b)),
        st.binary(max_size=125).map(lambda b: ('pong', b)),
    ),
    max_size=12,
)


def encode(items, fragment_size):
    data = b''
    for kind, value in items:
        if kind in ('ping', 'pong'):
            data += client_frame(PING if kind == 'ping' else PONG, value)
            continue
        payload = value.encode('utf-8') if kind == 'text' else value
        opcode = TEXT if kind == 'text' else BINARY
        pieces = [
            payload[i : i + fragment_size]
            for i in range(0, len(payload), fragment_size)
        ] or [b'']
        for i, piece in enumerate(pieces):
            data += client_frame(
                opcode if i == 0 else CONT, piece, int(i == len(pieces) - 1)
            )
    return data


def expected_events(items):
    out = []
    for kind, value in items:
        out.append(
            {'text': Message, 'binary': Message, 'ping': Ping, 'pong': Pong}[
                kind
            ](value)
        )
    return out


@SETTINGS
@given(
    MESSAGES, st.integers(1, 400), st.lists(st.integers(0, 10**6), max_size=30)
)
def test_any_chunking_gives_the_same_events(items, fragment_size, cuts):
    data = encode(items, fragment_size) + client_close(1000, b'bye')
    whole = WebSocketConnection()
    whole.receive_data(data)
    events, error = drain(whole)
    assert error is None
    assert events == expected_events(items) + [CloseReceived(1000, 'bye')]
    pieces = WebSocketConnection()
    assert feed_in_pieces(pieces, data, cuts) == (events, None)
    assert pieces.state is State.CLOSING and pieces.closed_by == 'remote'


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(0, 10**6), max_size=20))
def test_garbage_gives_a_close_code_and_the_same_outcome(data, cuts):
    """Random bytes end in events and then (maybe) a ProtocolError whose
    close frame is queued; the split never changes the outcome."""
    whole = WebSocketConnection()
    if data:
        whole.receive_data(data)
    outcome = drain(whole)
    assert feed_in_pieces(WebSocketConnection(), data, cuts) == outcome
    if outcome[1] is not None:
        closes = [f for f in sent_frames(whole) if f[1] == CLOSE]
        assert len(closes) == 1
        code = struct.unpack('!H', closes[0][2][:2])[0]
        assert code in (
            common.STATUS_PROTOCOL_ERROR,
            common.STATUS_INVALID_FRAME_PAYLOAD_DATA,
            common.STATUS_MESSAGE_TOO_BIG,
        )
        assert whole.state is State.CLOSED


@SETTINGS
@given(
    st.lists(
        st.one_of(st.text(max_size=200), st.binary(max_size=200)), max_size=10
    ),
    st.lists(st.integers(0, 10**6), max_size=20),
)
def test_client_to_server_round_trip_with_deflate(messages, cuts):
    client = WebSocketConnection(
        client=True, deflater=Deflater(), inflater=Inflater()
    )
    server = WebSocketConnection(deflater=Deflater(), inflater=Inflater())
    for message in messages:
        client.send_message(message)
    client.close(1000, 'done')
    events, error = feed_in_pieces(server, client.data_to_send(), cuts)
    assert error is None
    assert events == [Message(m) for m in messages] + [
        CloseReceived(1000, 'done')
    ]


# ---- protocol violations -----------------------------------------------


@pytest.mark.parametrize(
    'data, error, code',
    [
        (client_frame(3, b''), InvalidFrameException, 1002),
        (b'\x81\x05hello', InvalidFrameException, 1002),  # unmasked
        (client_frame(TEXT, b'\xff'), InvalidUTF8Exception, 1007),
        (client_frame(CONT, b'x'), InvalidFrameException, 1002),
        (client_frame(CLOSE, b'\x03\xe8\xff'), InvalidFrameException, 1002),
        (client_frame(BINARY, b'x' * 101), MessageTooBigException, 1009),
    ],
)
def test_violations_queue_their_close_and_stop_receiving(data, error, code):
    conn = WebSocketConnection(max_message_size=100)
    conn.receive_data(data + client_text('after'))
    with pytest.raises(error):
        conn.next_event()
    assert sent_frames(conn) == [(1, CLOSE, struct.pack('!H', code))]
    assert conn.state is State.CLOSED and conn.receiving_closed
    assert conn.next_event() is None  # the rest is dropped
    with pytest.raises(BadOperationException):
        conn.send_message('too late')


@pytest.mark.parametrize(
    'rsv_close_code, error',
    [
        (None, InvalidFrameException),  # the default
        (common.STATUS_PROTOCOL_ERROR, InvalidFrameException),
        (common.STATUS_UNSUPPORTED_DATA, common.UnsupportedFrameException),
    ],
)
def test_unclaimed_rsv_bits_close_with_rsv_close_code(rsv_close_code, error):
    kwargs = (
        {} if rsv_close_code is None else {'rsv_close_code': rsv_close_code}
    )
    conn = WebSocketConnection(**kwargs)
    conn.receive_data(client_text('before') + client_frame(TEXT, b'', rsv3=1))
    assert conn.next_event() == Message('before')
    with pytest.raises(error):
        conn.next_event()
    code = rsv_close_code or common.STATUS_PROTOCOL_ERROR
    assert sent_frames(conn) == [(1, CLOSE, struct.pack('!H', code))]
    assert conn.state is State.CLOSED


def test_eof_without_close_is_connection_terminated():
    conn = WebSocketConnection()
    conn.receive_data(client_text('last'))
    conn.receive_data(b'')
    assert conn.next_event() == Message('last')
    with pytest.raises(ConnectionTerminatedException):
        conn.next_event()
    assert conn.state is State.CLOSED


# ---- closing -----------------------------------------------------------


def test_closing_handshake_started_here():
    conn = WebSocketConnection()
    conn.send_message('bye soon')
    assert conn.close(4000, 'app', now=10.0)
    assert not conn.close(1000)  # one close frame only
    assert conn.state is State.CLOSING and conn.closed_by == 'local'
    assert sent_frames(conn) == [
        (1, TEXT, b'bye soon'),
        (1, CLOSE, b'\x0f\xa0app'),
    ]
    conn.receive_data(client_close(4000))
    assert conn.next_event() == CloseReceived(4000, '')
    assert conn.state is State.CLOSED and conn.data_to_send() == b''


def test_reply_to_a_peer_close_echoes_its_code():
    conn = WebSocketConnection()
    conn.receive_data(client_close(1001, b'away'))
    assert conn.next_event() == CloseReceived(1001, 'away')
    assert conn.state is State.CLOSING and conn.closed_by == 'remote'
    assert conn.reply_to_close()
    assert sent_frames(conn) == [(1, CLOSE, b'\x03\xe9')]
    assert conn.state is State.CLOSED


def test_invalid_close_codes_cannot_be_sent():
    conn = WebSocketConnection()
    with pytest.raises(ValueError):
        conn.close(1000, 'x' * 124)
    assert conn.close_sent is None


# ---- pongs -------------------------------------------------------------


def test_at_most_one_pong_waits_for_the_driver():
    conn = WebSocketConnection()
    for i in range(10000):
        conn.send_pong(b'%d' % i)
    assert conn.bytes_to_send < 20  # not 10,000 pongs
    assert sent_frames(conn) == [(1, PONG, b'9999')]
    conn.send_pong(b'x')
    conn.close(1000)
    assert sent_frames(conn) == [(1, PONG, b'x'), (1, CLOSE, b'\x03\xe8')]
    conn.send_pong(b'after close')
    assert conn.data_to_send() == b''


def test_client_side_frames_are_masked():
    conn = WebSocketConnection(client=True)
    conn.send_message('hi')
    parser = FrameParser(expect_masked=True)
    parser.feed(conn.data_to_send())
    assert parser.next_frame().payload == b'hi'


# ---- timers for a given clock ------------------------------------------


def test_keepalive_pings_then_gives_up():
    conn = WebSocketConnection(keepalive_interval=20, keepalive_timeout=5)
    conn.note_received(100.0)
    assert conn.next_deadline() == 120.0
    assert conn.poll_timers(119.9) is None and conn.data_to_send() == b''
    assert conn.poll_timers(120.0) is None
    assert sent_frames(conn) == [(1, PING, b'keepalive')]
    assert conn.next_deadline() == 125.0
    reason = conn.poll_timers(125.0)
    assert reason and 'keepalive' in reason


def test_data_from_the_peer_answers_a_keepalive_ping():
    conn = WebSocketConnection(keepalive_interval=20, keepalive_timeout=5)
    conn.note_received(0.0)
    conn.poll_timers(20.0)
    conn.note_received(21.0)
    assert conn.poll_timers(30.0) is None
    assert conn.next_deadline() == 41.0


def test_the_close_wait_is_bounded_by_the_close_timeout():
    conn = WebSocketConnection(close_timeout=3.0)
    conn.close(1000, now=50.0)
    assert conn.next_deadline() == 53.0
    assert conn.poll_timers(52.9) is None
    reason = conn.poll_timers(53.0)
    assert reason and '3.0 s' in reason


def test_no_timer_runs_without_keepalive_or_close():
    conn = WebSocketConnection()
    assert conn.next_deadline() is None
    assert conn.poll_timers(1e9) is None and conn.data_to_send() == b''


# ---- the hixie drafts behind the same interface ------------------------


def test_draft76_messages_and_closing_handshake():
    conn = HixieConnection(draft76=True)
    conn.receive_data(b'\x00caf\xc3\xa9\xff')
    assert conn.next_event() == Message('caf\u00e9')
    assert conn.next_event() is None
    conn.receive_data(b'\xff\x00')
    assert conn.next_event() == CloseReceived(None, '')
    assert conn.reply_to_close()
    assert conn.data_to_send() == b'\xff\x00'
    assert conn.state is State.CLOSED


def test_draft75_end_of_transport_is_its_close():
    conn = HixieConnection(draft76=False)
    conn.receive_data(b'\x00hi\xff')
    conn.receive_data(b'')
    assert drain(conn) == ([Message('hi'), CloseReceived(None, '')], None)
    with pytest.raises(BadOperationException):
        conn.send_message(b'binary')
