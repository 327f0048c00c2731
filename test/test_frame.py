"""frame: the incremental RFC 6455 parser and the frame builders."""

import os
import struct

import pytest

from core_helpers import client_frame
from mod_pywebsocket import common
from mod_pywebsocket.common import (
    InvalidFrameException,
    MessageTooBigException,
    ProtocolError,
)
from mod_pywebsocket.frame import (
    RSV1,
    RSV2,
    RSV3,
    Frame,
    FrameParser,
    build_close_body,
    build_frame,
    create_header,
    create_length_header,
    is_control_opcode,
    parse_close_body,
)

HELLO = b'Hello'
# RFC 6455 section 5.7.
UNMASKED_HELLO = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
MASKED_HELLO = bytes(
    [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
)
FRAGMENTED_HEL = bytes([0x01, 0x03, 0x48, 0x65, 0x6C])
FRAGMENTED_LO = bytes([0x80, 0x02, 0x6C, 0x6F])
UNMASKED_PING = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
MASKED_PONG = bytes(
    [0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
)
BINARY_256_HEADER = bytes([0x82, 0x7E, 0x01, 0x00])
BINARY_64K_HEADER = bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])


def parse_all(data: bytes, expect_masked=False, step=None, **kwargs):
    parser = FrameParser(expect_masked=expect_masked, **kwargs)
    frames = []
    chunks = (
        [data]
        if step is None
        else [data[i : i + step] for i in range(0, len(data), step)]
    )
    for chunk in chunks:
        parser.feed(chunk)
        while True:
            frame = parser.next_frame()
            if frame is None:
                break
            frames.append(frame)
    assert parser.buffered() == 0
    return frames


def as_tuple(frame: Frame):
    return (
        frame.fin,
        frame.rsv1,
        frame.rsv2,
        frame.rsv3,
        frame.opcode,
        frame.payload,
    )


class TestRfc6455Examples:
    def test_single_frame_unmasked_text(self):
        [frame] = parse_all(UNMASKED_HELLO)
        assert as_tuple(frame) == (1, 0, 0, 0, common.OPCODE_TEXT, HELLO)

    def test_single_frame_masked_text(self):
        [frame] = parse_all(MASKED_HELLO, expect_masked=True)
        assert as_tuple(frame) == (1, 0, 0, 0, common.OPCODE_TEXT, HELLO)

    def test_fragmented_unmasked_text(self):
        first, second = parse_all(FRAGMENTED_HEL + FRAGMENTED_LO)
        assert as_tuple(first) == (0, 0, 0, 0, common.OPCODE_TEXT, b'Hel')
        assert as_tuple(second) == (
            1,
            0,
            0,
            0,
            common.OPCODE_CONTINUATION,
            b'lo',
        )

    def test_unmasked_ping_and_masked_pong(self):
        [ping] = parse_all(UNMASKED_PING)
        assert as_tuple(ping) == (1, 0, 0, 0, common.OPCODE_PING, HELLO)
        [pong] = parse_all(MASKED_PONG, expect_masked=True)
        assert as_tuple(pong) == (1, 0, 0, 0, common.OPCODE_PONG, HELLO)

    def test_256_bytes_binary_uses_16_bit_length(self):
        payload = os.urandom(256)
        [frame] = parse_all(BINARY_256_HEADER + payload)
        assert frame.opcode == common.OPCODE_BINARY
        assert frame.payload == payload

    def test_64k_binary_uses_64_bit_length(self):
        payload = os.urandom(65536)
        [frame] = parse_all(BINARY_64K_HEADER + payload)
        assert frame.opcode == common.OPCODE_BINARY
        assert frame.payload == payload

    def test_builders_produce_the_rfc_bytes(self):
        assert build_frame(common.OPCODE_TEXT, HELLO) == UNMASKED_HELLO
        assert client_frame(common.OPCODE_TEXT, HELLO) == MASKED_HELLO
        assert build_frame(common.OPCODE_TEXT, b'Hel', fin=0) == FRAGMENTED_HEL
        assert build_frame(common.OPCODE_CONTINUATION, b'lo') == FRAGMENTED_LO
        assert build_frame(common.OPCODE_PING, HELLO) == UNMASKED_PING
        assert client_frame(common.OPCODE_PONG, HELLO) == MASKED_PONG
        assert (
            build_frame(common.OPCODE_BINARY, bytes(256))[:4]
            == BINARY_256_HEADER
        )
        assert (
            build_frame(common.OPCODE_BINARY, bytes(65536))[:10]
            == BINARY_64K_HEADER
        )


class TestLengthEncodings:
    @pytest.mark.parametrize(
        'length,header_size',
        [
            (0, 2),
            (1, 2),
            (125, 2),
            (126, 4),
            (127, 4),
            (65535, 4),
            (65536, 10),
            (65537, 10),
            (200000, 10),
        ],
    )
    def test_round_trip_at_boundaries(self, length, header_size):
        payload = os.urandom(length)
        data = build_frame(common.OPCODE_BINARY, payload)
        assert len(data) == header_size + length
        [frame] = parse_all(data)
        assert frame.payload == payload
        masked = client_frame(common.OPCODE_BINARY, payload)
        assert len(masked) == header_size + 4 + length
        [frame] = parse_all(masked, expect_masked=True)
        assert frame.payload == payload

    def test_create_length_header(self):
        assert create_length_header(125, False) == b'\x7d'
        assert create_length_header(125, True) == b'\xfd'
        assert create_length_header(126, False) == b'\x7e\x00\x7e'
        assert create_length_header(65536, True) == b'\xff' + struct.pack(
            '!Q', 65536
        )
        with pytest.raises(ValueError):
            create_length_header(1 << 63, False)

    def test_create_header_sets_every_bit(self):
        assert (
            create_header(common.OPCODE_TEXT, 5, 1, 1, 1, 1, True)
            == b'\xf1\x85'
        )
        assert (
            create_header(common.OPCODE_CONTINUATION, 0, 0, 0, 0, 0, False)
            == b'\x00\x00'
        )
        with pytest.raises(ValueError):
            create_header(0x10, 0, 1, 0, 0, 0, False)
        with pytest.raises(ValueError):
            create_header(-1, 0, 1, 0, 0, 0, False)

    def test_non_minimal_16_bit_length_is_refused(self):
        parser = FrameParser(expect_masked=False)
        parser.feed(b'\x82\x7e\x00\x05hello')
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_non_minimal_64_bit_length_is_refused(self):
        parser = FrameParser(expect_masked=False)
        parser.feed(b'\x82\x7f' + struct.pack('!Q', 300) + bytes(300))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_64_bit_length_with_top_bit_set_is_refused(self):
        parser = FrameParser(expect_masked=False)
        parser.feed(b'\x82\x7f' + struct.pack('!Q', 1 << 63))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR


class TestIncrementalParsing:
    def _stream(self):
        return b''.join(
            [
                client_frame(common.OPCODE_TEXT, 'Hel', fin=0),
                client_frame(common.OPCODE_PING, b'ping!'),
                client_frame(common.OPCODE_CONTINUATION, 'lo'),
                client_frame(common.OPCODE_BINARY, os.urandom(300)),
                client_frame(common.OPCODE_BINARY, os.urandom(70000)),
                client_frame(common.OPCODE_TEXT, ''),
                client_frame(common.OPCODE_CLOSE, b'\x03\xe8bye'),
            ]
        )

    def test_one_byte_at_a_time_gives_the_same_frames(self):
        data = self._stream()
        whole = [as_tuple(f) for f in parse_all(data, expect_masked=True)]
        assert len(whole) == 7
        for step in (1, 2, 3, 7, 126, 4096):
            assert [
                as_tuple(f)
                for f in parse_all(data, expect_masked=True, step=step)
            ] == whole

    def test_incomplete_frame_waits(self):
        parser = FrameParser(expect_masked=True)
        parser.feed(MASKED_HELLO[:1])
        assert parser.next_frame() is None
        parser.feed(MASKED_HELLO[1:3])
        assert parser.next_frame() is None
        parser.feed(MASKED_HELLO[3:-1])
        assert parser.next_frame() is None
        assert parser.buffered() == len(MASKED_HELLO) - 1
        parser.feed(MASKED_HELLO[-1:])
        assert parser.next_frame().payload == HELLO
        assert parser.next_frame() is None

    def test_extended_length_waits_for_all_its_bytes(self):
        data = build_frame(common.OPCODE_BINARY, bytes(70000))
        parser = FrameParser(expect_masked=False)
        for start, end in ((0, 2), (2, 3), (3, 9)):
            parser.feed(data[start:end])
            assert parser.next_frame() is None
        parser.feed(data[9:])
        assert len(parser.next_frame().payload) == 70000

    def test_take_buffer_returns_unparsed_bytes(self):
        parser = FrameParser(expect_masked=False)
        parser.feed(UNMASKED_HELLO + b'\x81')
        assert parser.next_frame().payload == HELLO
        assert parser.take_buffer() == b'\x81'
        assert parser.buffered() == 0


class TestMasking:
    def test_server_refuses_unmasked_client_frame(self):
        parser = FrameParser(expect_masked=True)
        parser.feed(UNMASKED_HELLO)
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_client_refuses_masked_server_frame(self):
        parser = FrameParser(expect_masked=False)
        parser.feed(MASKED_HELLO)
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_build_frame_with_mask_uses_a_fresh_key(self):
        a = build_frame(common.OPCODE_TEXT, HELLO, mask=True)
        b = build_frame(common.OPCODE_TEXT, HELLO, mask=True)
        assert a[1] == 0x85
        [frame] = parse_all(a, expect_masked=True)
        assert frame.payload == HELLO
        # Two 4-byte random keys are equal once in 2**32.
        assert a[2:6] != b[2:6]

    def test_build_frame_accepts_bytearray_and_memoryview(self):
        assert (
            build_frame(common.OPCODE_TEXT, bytearray(HELLO)) == UNMASKED_HELLO
        )
        assert (
            build_frame(common.OPCODE_TEXT, memoryview(HELLO))
            == UNMASKED_HELLO
        )


class TestHeaderRules:
    @pytest.mark.parametrize(
        'opcode', [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
    )
    def test_unknown_opcodes_are_refused_with_1002(self, opcode):
        parser = FrameParser(expect_masked=True)
        parser.feed(client_frame(opcode, b'x'))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    @pytest.mark.parametrize(
        'opcode', [common.OPCODE_CLOSE, common.OPCODE_PING, common.OPCODE_PONG]
    )
    def test_fragmented_control_frame_is_refused(self, opcode):
        parser = FrameParser(expect_masked=True)
        parser.feed(client_frame(opcode, b'', fin=0))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    @pytest.mark.parametrize(
        'opcode', [common.OPCODE_CLOSE, common.OPCODE_PING, common.OPCODE_PONG]
    )
    def test_control_frame_over_125_bytes_is_refused(self, opcode):
        parser = FrameParser(expect_masked=True)
        parser.feed(client_frame(opcode, bytes(126)))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_control_frame_of_125_bytes_is_fine(self):
        [frame] = parse_all(
            client_frame(common.OPCODE_PING, bytes(125)), expect_masked=True
        )
        assert frame.payload == bytes(125)

    def test_control_frame_refused_before_its_payload_arrives(self):
        parser = FrameParser(expect_masked=True)
        parser.feed(client_frame(common.OPCODE_PING, bytes(126))[:4])
        with pytest.raises(InvalidFrameException):
            parser.next_frame()

    @pytest.mark.parametrize(
        'rsv', [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    )
    def test_rsv_bits_refused_without_extension(self, rsv):
        parser = FrameParser(expect_masked=True)
        parser.feed(client_frame(common.OPCODE_TEXT, b'x', 1, *rsv))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_rsv1_allowed_when_an_extension_claims_it(self):
        [frame] = parse_all(
            client_frame(common.OPCODE_TEXT, b'x', 1, 1),
            expect_masked=True,
            allowed_rsv=RSV1,
        )
        assert (frame.rsv1, frame.rsv2, frame.rsv3) == (1, 0, 0)
        [frame] = parse_all(
            client_frame(common.OPCODE_CONTINUATION, b'x', 1, 1),
            expect_masked=True,
            allowed_rsv=RSV1,
        )
        assert frame.rsv1 == 1

    def test_only_the_claimed_rsv_bits_are_allowed(self):
        parser = FrameParser(expect_masked=True, allowed_rsv=RSV1)
        parser.feed(client_frame(common.OPCODE_TEXT, b'x', 1, 1, 1))
        with pytest.raises(InvalidFrameException):
            parser.next_frame()
        [frame] = parse_all(
            client_frame(common.OPCODE_BINARY, b'x', 1, 0, 1, 1),
            expect_masked=True,
            allowed_rsv=RSV2 | RSV3,
        )
        assert (frame.rsv2, frame.rsv3) == (1, 1)

    def test_rsv_on_control_frame_refused_even_when_claimed(self):
        parser = FrameParser(expect_masked=True, allowed_rsv=RSV1)
        parser.feed(client_frame(common.OPCODE_PING, b'x', 1, 1))
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    @pytest.mark.parametrize(
        'opcode, rsv',
        [
            (common.OPCODE_TEXT, (0, 0, 1)),  # pywebsocket3's own test
            (common.OPCODE_BINARY, (0, 1, 0)),
            (common.OPCODE_CONTINUATION, (1, 1, 1)),
            (common.OPCODE_PING, (1, 0, 0)),  # never claimed
        ],
    )
    def test_unclaimed_rsv_bits_with_rsv_close_code_1003(self, opcode, rsv):
        parser = FrameParser(
            expect_masked=True,
            rsv_close_code=common.STATUS_UNSUPPORTED_DATA,
        )
        parser.feed(client_frame(opcode, b'x', 1, *rsv))
        with pytest.raises(common.UnsupportedFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_UNSUPPORTED_DATA

    def test_rsv_close_code_1003_leaves_claimed_bits_and_other_errors(self):
        [frame] = parse_all(
            client_frame(common.OPCODE_TEXT, b'x', 1, 1),
            expect_masked=True,
            allowed_rsv=RSV1,
            rsv_close_code=common.STATUS_UNSUPPORTED_DATA,
        )
        assert frame.rsv1 == 1
        parser = FrameParser(
            expect_masked=True,
            rsv_close_code=common.STATUS_UNSUPPORTED_DATA,
        )
        parser.feed(client_frame(0x3, b'x'))  # a reserved opcode: still 1002
        with pytest.raises(InvalidFrameException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    @pytest.mark.parametrize('code', [1000, 1007, '1003', None])
    def test_rsv_close_code_is_1002_or_1003(self, code):
        with pytest.raises(ValueError):
            FrameParser(rsv_close_code=code)

    def test_max_payload_refused_from_header_alone_with_1009(self):
        parser = FrameParser(expect_masked=True, max_payload=1000)
        parser.feed(client_frame(common.OPCODE_BINARY, bytes(1001))[:8])
        with pytest.raises(MessageTooBigException) as info:
            parser.next_frame()
        assert info.value.code == common.STATUS_MESSAGE_TOO_BIG
        [frame] = parse_all(
            client_frame(common.OPCODE_BINARY, bytes(1000)),
            expect_masked=True,
            max_payload=1000,
        )
        assert len(frame.payload) == 1000

    def test_is_control_opcode(self):
        assert not is_control_opcode(common.OPCODE_CONTINUATION)
        assert not is_control_opcode(common.OPCODE_BINARY)
        assert is_control_opcode(common.OPCODE_CLOSE)
        assert is_control_opcode(common.OPCODE_PONG)

    def test_frame_repr(self):
        text = repr(Frame(opcode=common.OPCODE_TEXT, payload=b'abc'))
        assert '0x1' in text and '3 bytes' in text
        assert 'opcode=0' in repr(Frame())


class TestCloseBody:
    def test_build(self):
        assert build_close_body(None) == b''
        assert build_close_body(1000) == b'\x03\xe8'
        assert build_close_body(1001, 'bye') == b'\x03\xe9bye'
        assert build_close_body(4000, '\u00e9') == b'\x0f\xa0\xc3\xa9'
        assert build_close_body(1000, b'raw') == b'\x03\xe8raw'

    @pytest.mark.parametrize(
        'args', [(None, 'reason'), (-1, ''), (65536, ''), (1000, 'x' * 124)]
    )
    def test_build_refuses(self, args):
        with pytest.raises(ValueError):
            build_close_body(*args)

    def test_build_accepts_123_byte_reason(self):
        assert len(build_close_body(1000, 'x' * 123)) == 125

    def test_parse(self):
        assert parse_close_body(b'') == (None, '')
        assert parse_close_body(b'\x03\xe8') == (1000, '')
        assert parse_close_body(b'\x03\xe9bye') == (1001, 'bye')
        assert parse_close_body(b'\x0f\xa0\xc3\xa9') == (4000, '\u00e9')

    @pytest.mark.parametrize(
        'code',
        [
            1000,
            1001,
            1002,
            1003,
            1007,
            1008,
            1009,
            1010,
            1011,
            1012,
            1013,
            1014,
            3000,
            3999,
            4000,
            4999,
        ],
    )
    def test_valid_codes(self, code):
        assert parse_close_body(struct.pack('!H', code))[0] == code

    @pytest.mark.parametrize(
        'code',
        [
            0,
            1,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            1100,
            2000,
            2999,
            5000,
            65535,
        ],
    )
    def test_invalid_codes_are_1002(self, code):
        with pytest.raises(InvalidFrameException) as info:
            parse_close_body(struct.pack('!H', code))
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_one_byte_body_is_1002(self):
        with pytest.raises(InvalidFrameException) as info:
            parse_close_body(b'\x03')
        assert info.value.code == common.STATUS_PROTOCOL_ERROR

    def test_non_utf8_reason_is_1002(self):
        with pytest.raises(InvalidFrameException) as info:
            parse_close_body(b'\x03\xe8\xff\xfe')
        assert info.value.code == common.STATUS_PROTOCOL_ERROR


def test_protocol_error_codes_are_the_rfc_ones():
    assert ProtocolError('x').code == 1002
    assert ProtocolError('x', 1011).code == 1011
    assert common.InvalidUTF8Exception('x').code == 1007
    assert MessageTooBigException('x').code == 1009
    assert common.UnsupportedFrameException('x').code == 1003
    assert common.STATUS_NAMES[1011] == 'Internal Server Error'
    assert common.StatusCode.INTERNAL_SERVER_ERROR == 1011
    assert common.StatusCode.MESSAGE_TOO_BIG == 1009


def test_wanted_says_how_much_of_a_large_frame_is_missing():
    from mod_pywebsocket.frame import FrameParser, build_frame

    frame = build_frame(2, bytes(100000), mask=True)
    parser = FrameParser()
    assert parser.wanted() == 0
    parser.feed(frame[:8192])
    assert parser.next_frame() is None
    assert parser.wanted() == len(frame) - 8192
    parser.feed(frame[8192:50000])
    assert parser.next_frame() is None
    assert parser.wanted() == len(frame) - 50000
    parser.feed(frame[50000:])
    assert parser.next_frame().payload == bytes(100000)
    assert parser.wanted() == 0
