"""hixie_frame: draft-75/76 framing."""

import pytest

from mod_pywebsocket.common import MessageTooBigException, ProtocolError
from mod_pywebsocket.hixie_frame import (
    CLOSING_HANDSHAKE,
    EVENT_CLOSE,
    EVENT_TEXT,
    HixieFrameParser,
    build_text_frame,
)


def events(data: bytes, step=None, **kwargs):
    parser = HixieFrameParser(**kwargs)
    result = []
    chunks = (
        [data]
        if step is None
        else [data[i : i + step] for i in range(0, len(data), step)]
    )
    for chunk in chunks:
        parser.feed(chunk)
        while True:
            event = parser.next_event()
            if event is None:
                break
            result.append(event)
    return result


def test_build_text_frame():
    assert build_text_frame('Hello') == b'\x00Hello\xff'
    assert build_text_frame('\u00e9') == b'\x00\xc3\xa9\xff'
    assert build_text_frame('') == b'\x00\xff'


def test_text_frames():
    assert events(b'\x00Hello\xff\x00\xff\x00\xc3\xa9\xff') == [
        (EVENT_TEXT, 'Hello'),
        (EVENT_TEXT, ''),
        (EVENT_TEXT, '\u00e9'),
    ]


def test_any_split_gives_the_same_events():
    data = (
        b'\x00Hello\xff'
        + b'\x80\x03abc'
        + b'\x00\xe2\x82\xac\xff'
        + b'\x81\x81\x00'
        + bytes(128)
        + b'\x00x\xff'
        + CLOSING_HANDSHAKE
    )
    whole = events(data)
    assert whole == [
        (EVENT_TEXT, 'Hello'),
        (EVENT_TEXT, '\u20ac'),
        (EVENT_TEXT, 'x'),
        (EVENT_CLOSE, None),
    ]
    for step in (1, 2, 3, 5):
        assert events(data, step=step) == whole


def test_length_prefixed_frames_are_discarded():
    # 0x80 type, length 0x81 0x00 = 128 in 7-bit groups.
    data = b'\x80\x81\x00' + bytes(128) + b'\x00after\xff'
    assert events(data) == [(EVENT_TEXT, 'after')]
    assert events(b'\x80\x00\x00ok\xff') == [(EVENT_TEXT, 'ok')]


def test_other_sentinel_types_are_discarded():
    assert events(b'\x01ignored\xff\x7fignored too\xff\x00kept\xff') == [
        (EVENT_TEXT, 'kept')
    ]


def test_closing_handshake_draft76():
    assert events(CLOSING_HANDSHAKE) == [(EVENT_CLOSE, None)]


def test_0xff_0x00_is_an_empty_discarded_frame_on_draft75():
    # draft-75 has no closing handshake: 0xFF 0x00 is a length-prefixed
    # frame of length 0, read and discarded.
    assert events(
        CLOSING_HANDSHAKE + b'\x00after\xff', enable_closing_handshake=False
    ) == [(EVENT_TEXT, 'after')]


def test_0xff_with_a_length_is_discarded_not_a_close():
    assert events(b'\xff\x02ab\x00x\xff') == [(EVENT_TEXT, 'x')]
    # 0xFF with a two-byte length of zero is not the closing handshake.
    assert events(b'\xff\x80\x00\x00y\xff') == [(EVENT_TEXT, 'y')]


def test_invalid_utf8_is_replaced():
    assert events(b'\x00a\xfeb\xff') == [(EVENT_TEXT, 'a\ufffdb')]


def test_incomplete_frames_wait():
    parser = HixieFrameParser()
    parser.feed(b'\x00Hel')
    assert parser.next_event() is None
    parser.feed(b'lo')
    assert parser.next_event() is None
    parser.feed(b'\xff\x80')
    assert parser.next_event() == (EVENT_TEXT, 'Hello')
    assert parser.next_event() is None
    parser.feed(b'\x02a')
    assert parser.next_event() is None
    parser.feed(b'b')
    assert parser.next_event() is None
    assert parser.next_event() is None


def test_text_frame_over_limit_is_1009():
    parser = HixieFrameParser(max_message_size=4)
    parser.feed(b'\x00abcd\xff')
    assert parser.next_event() == (EVENT_TEXT, 'abcd')
    parser.feed(b'\x00abcde\xff')
    with pytest.raises(MessageTooBigException) as info:
        parser.next_event()
    assert info.value.code == 1009


def test_unterminated_text_frame_over_limit_fails_without_the_end():
    parser = HixieFrameParser(max_message_size=4)
    parser.feed(b'\x00abcd')
    assert parser.next_event() is None
    parser.feed(b'e')
    with pytest.raises(MessageTooBigException):
        parser.next_event()


def test_length_prefixed_frame_over_limit_is_1009():
    parser = HixieFrameParser(max_message_size=100)
    parser.feed(b'\x80\x81\x00')  # 128 bytes announced
    with pytest.raises(MessageTooBigException) as info:
        parser.next_event()
    assert info.value.code == 1009


def test_errors_are_protocol_errors():
    assert issubclass(MessageTooBigException, ProtocolError)
