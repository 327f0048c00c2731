"""Property tests: random input, any split, gives frames/values or a
documented exception (ProtocolError subclasses, ValueError), nothing else,
and never depends on how the bytes were split."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core_helpers import client_frame
from mock import MockConn, MockRequest
from mod_pywebsocket import common
from mod_pywebsocket.common import (
    BadOperationException,
    ConnectionTerminatedException,
    HandshakeException,
    ProtocolError,
)
from mod_pywebsocket.frame import FrameParser, build_frame, parse_close_body
from mod_pywebsocket.handshake.hybi00 import key_number
from mod_pywebsocket.hixie_frame import HixieFrameParser
from mod_pywebsocket.http_header_util import (
    format_extensions,
    is_token,
    parse_extensions,
    parse_token_list,
)
from mod_pywebsocket.masking import RepeatedXorMasker, mask_pure
from mod_pywebsocket.message import MessageAssembler
from mod_pywebsocket.stream import Stream

# Deterministic (derandomize) and leaving no example database behind.
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def split(data, cuts):
    """`data` cut at the given (sorted, de-duplicated) positions."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


def run_parser(parser, pieces, next_item):
    """Feed pieces, draining after each; the items and the error type."""
    items = []
    try:
        for piece in pieces:
            parser.feed(piece)
            while True:
                item = next_item()
                if item is None:
                    break
                items.append(item)
    except ProtocolError as e:
        assert e.code in (
            common.STATUS_PROTOCOL_ERROR,
            common.STATUS_MESSAGE_TOO_BIG,
        )
        return items, type(e)
    return items, None


def frame_outcome(data, pieces, **kwargs):
    parser = FrameParser(**kwargs)

    def next_item():
        frame = parser.next_frame()
        return (
            None
            if frame is None
            else (
                frame.fin,
                frame.rsv1,
                frame.rsv2,
                frame.rsv3,
                frame.opcode,
                frame.payload,
            )
        )

    return run_parser(parser, pieces, next_item)


parser_options = st.fixed_dictionaries(
    {
        'expect_masked': st.booleans(),
        'allowed_rsv': st.integers(0, 7),
        'max_payload': st.one_of(st.none(), st.integers(0, 300)),
    }
)


@SETTINGS
@given(
    st.binary(max_size=400),
    st.lists(st.integers(0, 400), max_size=8),
    parser_options,
)
def test_frame_parser_random_bytes_any_split(data, cuts, options):
    whole = frame_outcome(data, [data], **options)
    assert frame_outcome(data, split(data, cuts), **options) == whole
    assert frame_outcome(data, [bytes([b]) for b in data], **options) == whole


valid_frame = st.one_of(
    st.tuples(
        st.sampled_from(
            [
                common.OPCODE_TEXT,
                common.OPCODE_BINARY,
                common.OPCODE_CONTINUATION,
            ]
        ),
        st.integers(0, 1),
        st.binary(max_size=70000),
    ),
    st.tuples(
        st.sampled_from(
            [common.OPCODE_PING, common.OPCODE_PONG, common.OPCODE_CLOSE]
        ),
        st.just(1),
        st.binary(max_size=125),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(valid_frame, min_size=1, max_size=4),
    st.binary(min_size=4, max_size=4),
    st.lists(st.integers(0, 300000), max_size=6),
)
def test_valid_frames_round_trip_in_any_split(frames, key, cuts):
    data = b''.join(
        client_frame(opcode, payload, fin, key=key)
        for opcode, fin, payload in frames
    )
    items, error = frame_outcome(data, split(data, cuts), expect_masked=True)
    assert error is None
    assert [(i[0], i[4], i[5]) for i in items] == [
        (fin, opcode, payload) for opcode, fin, payload in frames
    ]
    unmasked = b''.join(
        build_frame(opcode, payload, fin) for opcode, fin, payload in frames
    )
    items, error = frame_outcome(
        unmasked, split(unmasked, cuts), expect_masked=False
    )
    assert error is None and len(items) == len(frames)


def hixie_outcome(pieces, **kwargs):
    parser = HixieFrameParser(**kwargs)
    return run_parser(parser, pieces, parser.next_event)


@SETTINGS
@given(
    st.binary(max_size=300),
    st.lists(st.integers(0, 300), max_size=8),
    st.one_of(st.none(), st.integers(0, 200)),
    st.booleans(),
)
def test_hixie_parser_random_bytes_any_split(data, cuts, limit, draft76):
    kwargs = {'max_message_size': limit, 'enable_closing_handshake': draft76}
    whole = hixie_outcome([data], **kwargs)
    items, _ = whole
    assert all(kind in ('text', 'close') for kind, _ in items)
    assert hixie_outcome(split(data, cuts), **kwargs) == whole
    assert hixie_outcome([bytes([b]) for b in data], **kwargs) == whole


header_text = st.text(
    alphabet=st.sampled_from(list('abcxyz019-_=;,"\\ \t.!~\x01\u00e9')),
    max_size=60,
)


@SETTINGS
@given(st.one_of(header_text, st.text(max_size=60)))
def test_parse_extensions_random_text(text):
    try:
        result = parse_extensions(text)
    except ValueError:
        return
    assert result
    for extension in result:
        assert is_token(extension.name())
        for name, value in extension.get_parameters():
            assert is_token(name)
            assert value is None or is_token(value)
    assert parse_extensions(format_extensions(result)) == result


@SETTINGS
@given(st.one_of(header_text, st.text(max_size=60)))
def test_parse_token_list_random_text(text):
    try:
        tokens = parse_token_list(text)
    except ValueError:
        return
    assert all(is_token(t) for t in tokens)
    assert parse_token_list(', '.join(tokens)) == tokens


@SETTINGS
@given(st.binary(max_size=130))
def test_parse_close_body_random(body):
    try:
        code, reason = parse_close_body(body)
    except ProtocolError as e:
        assert e.code == common.STATUS_PROTOCOL_ERROR
        return
    if not body:
        assert (code, reason) == (None, '')
    else:
        assert code == struct.unpack('!H', body[:2])[0]
        assert common.is_sendable_close_code(code)
        assert reason.encode('utf-8') == body[2:]


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list('0123456789 abc%')), max_size=30))
def test_key_number_random(key):
    try:
        number = key_number(key)
    except HandshakeException as e:
        assert e.status == 400
        return
    assert 0 <= number <= 0xFFFFFFFF
    assert number * key.count(' ') == int(
        ''.join(c for c in key if c.isdigit())
    )


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2]),
            st.integers(0, 1),
            st.binary(max_size=20),
        ),
        max_size=8,
    ),
    st.integers(0, 50),
)
def test_message_assembler_random_frames(frames, limit):
    from mod_pywebsocket.frame import Frame

    assembler = MessageAssembler(max_message_size=limit)
    for opcode, fin, payload in frames:
        try:
            message = assembler.add_frame(
                Frame(fin=fin, opcode=opcode, payload=payload)
            )
        except ProtocolError as e:
            assert e.code in (1002, 1007, 1009)
            continue
        assert message is None or isinstance(message, (str, bytes))
        if message is not None and limit:
            assert (
                len(
                    message if isinstance(message, bytes) else message.encode()
                )
                <= limit
            )


@SETTINGS
@given(st.binary(max_size=300), st.integers(1, 20))
def test_stream_over_random_bytes(data, chunk):
    """A stream fed garbage ends in a close code or a terminated
    connection, never in another exception."""
    conn = MockConn(data, chunk=chunk)
    request = MockRequest(connection=conn)
    stream = Stream(request)
    for _ in range(100):
        try:
            message = stream.receive_message()
        except ProtocolError as e:
            assert e.code in (1002, 1007, 1009)
            assert request.server_terminated
            return
        except (ConnectionTerminatedException, BadOperationException):
            return
        if message is None:
            assert request.client_terminated and request.server_terminated
            return


@SETTINGS
@given(
    st.binary(max_size=2000),
    st.binary(min_size=4, max_size=4),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_masking_matches_reference_in_any_split(data, key, cuts):
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask_pure(data, key) == expected
    masker = RepeatedXorMasker(key)
    assert (
        b''.join(masker.mask(piece) for piece in split(data, cuts)) == expected
    )
