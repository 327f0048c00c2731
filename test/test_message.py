"""message: reassembly, fragmentation rules, incremental UTF-8, size limit."""

import pytest

from mod_pywebsocket import common
from mod_pywebsocket.common import (
    InvalidFrameException,
    InvalidUTF8Exception,
    MessageTooBigException,
)
from mod_pywebsocket.extensions import Deflater, Inflater
from mod_pywebsocket.frame import Frame
from mod_pywebsocket.message import Inflater as InflaterInterface
from mod_pywebsocket.message import MessageAssembler

TEXT = common.OPCODE_TEXT
BINARY = common.OPCODE_BINARY
CONT = common.OPCODE_CONTINUATION


def frame(opcode, payload, fin=1, rsv1=0):
    return Frame(fin=fin, rsv1=rsv1, opcode=opcode, payload=payload)


def test_single_frames():
    assembler = MessageAssembler()
    assert assembler.add_frame(frame(TEXT, b'Hello')) == 'Hello'
    assert assembler.add_frame(frame(BINARY, b'\x00\xff')) == b'\x00\xff'
    assert assembler.add_frame(frame(TEXT, b'')) == ''
    assert assembler.add_frame(frame(BINARY, b'')) == b''
    assert not assembler.in_message


def test_fragmented_text_is_reassembled():
    assembler = MessageAssembler()
    assert assembler.add_frame(frame(TEXT, b'Hel', fin=0)) is None
    assert assembler.in_message
    assert assembler.opcode == TEXT
    assert assembler.add_frame(frame(CONT, b'', fin=0)) is None
    assert assembler.add_frame(frame(CONT, b'lo')) == 'Hello'
    assert not assembler.in_message
    assert assembler.opcode is None


def test_fragmented_binary_is_reassembled():
    assembler = MessageAssembler()
    assert assembler.add_frame(frame(BINARY, b'\x01', fin=0)) is None
    assert assembler.add_frame(frame(CONT, b'\x02', fin=0)) is None
    assert assembler.add_frame(frame(CONT, b'\x03')) == b'\x01\x02\x03'


def test_utf8_character_split_across_fragments():
    data = '\u00e9\u20ac\U0001f600'.encode('utf-8')
    assembler = MessageAssembler()
    for i in range(len(data) - 1):
        assert (
            assembler.add_frame(
                frame(CONT if i else TEXT, data[i : i + 1], fin=0)
            )
            is None
        )
    assert (
        assembler.add_frame(frame(CONT, data[-1:])) == '\u00e9\u20ac\U0001f600'
    )


def test_continuation_without_start_is_1002():
    with pytest.raises(InvalidFrameException) as info:
        MessageAssembler().add_frame(frame(CONT, b'x'))
    assert info.value.code == common.STATUS_PROTOCOL_ERROR


def test_new_message_inside_fragmented_one_is_1002():
    assembler = MessageAssembler()
    assembler.add_frame(frame(TEXT, b'a', fin=0))
    with pytest.raises(InvalidFrameException) as info:
        assembler.add_frame(frame(BINARY, b'b'))
    assert info.value.code == common.STATUS_PROTOCOL_ERROR


def test_rsv1_without_inflater_is_1002():
    with pytest.raises(InvalidFrameException) as info:
        MessageAssembler().add_frame(frame(TEXT, b'x', rsv1=1))
    assert info.value.code == common.STATUS_PROTOCOL_ERROR


def test_rsv1_on_continuation_is_1002():
    assembler = MessageAssembler(inflater=Inflater())
    assembler.add_frame(
        frame(TEXT, Deflater().compress(b'ab', end=False), fin=0, rsv1=1)
    )
    with pytest.raises(InvalidFrameException) as info:
        assembler.add_frame(frame(CONT, b'', rsv1=1))
    assert info.value.code == common.STATUS_PROTOCOL_ERROR


def test_invalid_utf8_single_frame_is_1007():
    with pytest.raises(InvalidUTF8Exception) as info:
        MessageAssembler().add_frame(frame(TEXT, b'\xce\xba\xff'))
    assert info.value.code == common.STATUS_INVALID_FRAME_PAYLOAD_DATA


def test_invalid_utf8_fails_in_the_middle_of_a_fragmented_message():
    assembler = MessageAssembler()
    assert assembler.add_frame(frame(TEXT, b'\xce\xba', fin=0)) is None
    # A UTF-16 surrogate (ED A0 80) can never be valid: fail now, before
    # the message ends.
    with pytest.raises(InvalidUTF8Exception) as info:
        assembler.add_frame(frame(CONT, b'\xed\xa0\x80', fin=0))
    assert info.value.code == common.STATUS_INVALID_FRAME_PAYLOAD_DATA
    assert not assembler.in_message


def test_invalid_utf8_detected_on_first_bad_byte():
    assembler = MessageAssembler()
    with pytest.raises(InvalidUTF8Exception):
        assembler.add_frame(frame(TEXT, b'ok\xf4\x90', fin=0))


def test_truncated_utf8_at_message_end_is_1007():
    assembler = MessageAssembler()
    assert assembler.add_frame(frame(TEXT, b'\xe2\x82', fin=0)) is None
    with pytest.raises(InvalidUTF8Exception) as info:
        assembler.add_frame(frame(CONT, b''))
    assert info.value.code == 1007


def test_binary_is_not_utf8_checked():
    assembler = MessageAssembler()
    assembler.add_frame(frame(BINARY, b'\xff', fin=0))
    assert assembler.add_frame(frame(CONT, b'\xfe')) == b'\xff\xfe'


def test_single_frame_over_max_size_is_1009():
    assembler = MessageAssembler(max_message_size=4)
    assert assembler.add_frame(frame(BINARY, b'1234')) == b'1234'
    with pytest.raises(MessageTooBigException) as info:
        assembler.add_frame(frame(TEXT, b'12345'))
    assert info.value.code == common.STATUS_MESSAGE_TOO_BIG


def test_fragmented_message_over_max_size_is_1009_before_it_ends():
    assembler = MessageAssembler(max_message_size=10)
    assembler.add_frame(frame(BINARY, b'123456', fin=0))
    with pytest.raises(MessageTooBigException) as info:
        assembler.add_frame(frame(CONT, b'78901', fin=0))
    assert info.value.code == common.STATUS_MESSAGE_TOO_BIG
    assert not assembler.in_message


def test_zero_max_size_means_no_limit():
    assembler = MessageAssembler(max_message_size=0)
    assert len(assembler.add_frame(frame(BINARY, bytes(100000)))) == 100000
    assembler.add_frame(frame(BINARY, bytes(100000), fin=0))
    assert len(assembler.add_frame(frame(CONT, bytes(5)))) == 100005


def test_assembler_recovers_after_an_error():
    assembler = MessageAssembler(max_message_size=3)
    with pytest.raises(MessageTooBigException):
        assembler.add_frame(frame(BINARY, b'1234'))
    assert assembler.add_frame(frame(TEXT, b'ok')) == 'ok'


class TestCompressed:
    def test_compressed_single_frame(self):
        deflater = Deflater()
        assembler = MessageAssembler(inflater=Inflater())
        payload = deflater.compress(('Hello ' * 100).encode())
        assert len(payload) < 100
        assert (
            assembler.add_frame(frame(TEXT, payload, rsv1=1)) == 'Hello ' * 100
        )

    def test_compressed_fragments_with_context_takeover(self):
        deflater = Deflater()
        assembler = MessageAssembler(inflater=Inflater())
        for _ in range(3):
            first = deflater.compress(b'abcabc', end=False)
            second = deflater.compress(b'abcabc', end=True)
            assert (
                assembler.add_frame(frame(BINARY, first, fin=0, rsv1=1))
                is None
            )
            assert assembler.add_frame(frame(CONT, second)) == b'abcabc' * 2

    def test_uncompressed_message_with_inflater_present(self):
        assembler = MessageAssembler(inflater=Inflater())
        assert assembler.add_frame(frame(TEXT, b'plain')) == 'plain'

    def test_compressed_invalid_utf8_is_1007(self):
        payload = Deflater().compress(b'\xff\xfe')
        with pytest.raises(InvalidUTF8Exception):
            MessageAssembler(inflater=Inflater()).add_frame(
                frame(TEXT, payload, rsv1=1)
            )

    def test_garbage_compressed_data_is_1002(self):
        with pytest.raises(InvalidFrameException) as info:
            MessageAssembler(inflater=Inflater()).add_frame(
                frame(BINARY, b'\xff\xff\xff\xff', rsv1=1)
            )
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_inflated_size_limit_is_1009(self):
        payload = Deflater().compress(bytes(100000))
        assert len(payload) < 1000
        assembler = MessageAssembler(
            max_message_size=50000, inflater=Inflater()
        )
        with pytest.raises(MessageTooBigException) as info:
            assembler.add_frame(frame(BINARY, payload, rsv1=1))
        assert info.value.code == common.STATUS_MESSAGE_TOO_BIG
        assert not assembler.in_message

    def test_inflated_size_limit_across_fragments(self):
        deflater = Deflater()
        first = deflater.compress(bytes(30000), end=False)
        second = deflater.compress(bytes(30000), end=True)
        assembler = MessageAssembler(
            max_message_size=50000, inflater=Inflater()
        )
        assert assembler.add_frame(frame(BINARY, first, fin=0, rsv1=1)) is None
        with pytest.raises(MessageTooBigException):
            assembler.add_frame(frame(CONT, second))

    def test_inflater_interface_is_abstract(self):
        with pytest.raises(NotImplementedError):
            InflaterInterface().decompress(b'', None)
        with pytest.raises(NotImplementedError):
            InflaterInterface().end_message()
