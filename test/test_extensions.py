"""permessage-deflate (RFC 7692): negotiation, codecs, and compressed
messages through a Stream in both directions."""

import os
import time
import zlib

import pytest

from core_helpers import (
    client_frame,
    hybi_headers,
    make_stream,
    server_frames,
    written_close_codes,
)
from mock import MockRequest
from mod_pywebsocket import common, extensions
from mod_pywebsocket.common import ExtensionParameter, MessageTooBigException
from mod_pywebsocket.extensions import (
    DeflateSettings,
    Deflater,
    ExtensionProcessor,
    Inflater,
    PerMessageDeflateOffer,
    accept_server_response,
    client_offer,
    deflate_fits_8_bit_window,
    inflates_through_8_bit_window,
    processors_for,
)
from mod_pywebsocket.handshake import select_handshaker
from mod_pywebsocket.http_header_util import format_extension, parse_extensions
from mod_pywebsocket.stream import StreamOptions

PMD = 'permessage-deflate'


def negotiate(header, settings=None, adjust=None):
    """The Sec-WebSocket-Extensions answer to `header` (None = declined)
    and the request after a full RFC 6455 handshake."""
    request = MockRequest('/x', hybi_headers(sec_websocket_extensions=header))
    handshaker = select_handshaker(request, False, settings)
    handshaker.validate()
    if adjust:
        adjust(request)
    response = handshaker.build_response().decode('latin-1')
    request.active_processors = handshaker.active_processors
    for line in response.split('\r\n'):
        if line.startswith('Sec-WebSocket-Extensions: '):
            return line.split(': ', 1)[1], request
    return None, request


def answer(header, settings=None, adjust=None):
    return negotiate(header, settings, adjust)[0]


class TestOfferValidation:
    """RFC 7692 section 7: a bad offer is declined (not an error); the
    next offer is then considered."""

    @pytest.mark.parametrize(
        'offer',
        [
            PMD + '; server_no_context_takeover; server_no_context_takeover',
            PMD + '; client_max_window_bits; client_max_window_bits=10',
            PMD + '; server_max_window_bits=10; server_max_window_bits=11',
            PMD + '; unknown_parameter',
            PMD + '; server_max_window_bits',  # needs a value
            PMD + '; server_max_window_bits=7',
            PMD + '; server_max_window_bits=16',
            PMD + '; server_max_window_bits=08',
            PMD + '; server_max_window_bits=abc',
            PMD + '; server_max_window_bits=100',
            PMD + '; client_max_window_bits=7',
            PMD + '; client_max_window_bits=16',
            PMD + '; server_no_context_takeover=1',
            PMD + '; client_no_context_takeover=x',
        ],
    )
    def test_bad_offer_is_declined(self, offer):
        assert answer(offer) is None
        [processor] = processors_for(parse_extensions(offer))
        assert processor.offer is None
        assert processor.decline_reason
        assert processor.get_extension_response() is None

    @pytest.mark.parametrize(
        'bad',
        [
            'server_no_context_takeover; server_no_context_takeover',
            'x_unknown',
            'server_max_window_bits=99',
            'client_max_window_bits=5',
        ],
    )
    def test_next_offer_is_taken_after_a_declined_one(self, bad):
        header = '%s; %s, %s; server_max_window_bits=12' % (PMD, bad, PMD)
        assert answer(header) == PMD + '; server_max_window_bits=12'

    def test_only_the_first_acceptable_offer_is_answered(self):
        header = '%s; server_max_window_bits=10, %s' % (PMD, PMD)
        value, request = negotiate(header)
        assert value == PMD + '; server_max_window_bits=10'
        assert len(request.ws_extensions) == 1
        assert len(request.active_processors) == 1

    def test_unknown_extension_is_ignored(self):
        assert answer('x-webkit-deflate-frame, ' + PMD) == PMD

    @pytest.mark.parametrize('value', ['8', '9', '10', '15', '"10"'])
    def test_valid_window_bits(self, value):
        [offer] = parse_extensions(PMD + '; server_max_window_bits=' + value)
        assert PerMessageDeflateOffer(offer).server_max_window_bits == int(
            value.strip('"')
        )


class TestResponseParameters:
    def test_plain_offer(self):
        assert answer(PMD) == PMD

    def test_server_no_context_takeover_is_echoed(self):
        assert (
            answer(PMD + '; server_no_context_takeover')
            == PMD + '; server_no_context_takeover'
        )

    def test_client_no_context_takeover_is_accepted_and_echoed(self):
        value, request = negotiate(PMD + '; client_no_context_takeover')
        assert value == PMD + '; client_no_context_takeover'
        processor = request.active_processors[0]
        assert processor.make_inflater().no_context_takeover

    def test_server_max_window_bits_is_answered(self):
        assert (
            answer(PMD + '; server_max_window_bits=10')
            == PMD + '; server_max_window_bits=10'
        )

    def test_server_max_window_bits_is_lowered_to_the_offer(self):
        settings = DeflateSettings(server_max_window_bits=12)
        assert (
            answer(PMD + '; server_max_window_bits=10', settings)
            == PMD + '; server_max_window_bits=10'
        )
        assert (
            answer(PMD + '; server_max_window_bits=14', settings)
            == PMD + '; server_max_window_bits=12'
        )

    def test_server_settings_apply_without_offer_parameters(self):
        settings = DeflateSettings(
            server_max_window_bits=11,
            server_no_context_takeover=True,
            client_no_context_takeover=True,
        )
        assert (
            answer(PMD, settings)
            == (  # pywebsocket3's order
                PMD + '; server_max_window_bits=11; server_no_context_takeover'
                '; client_no_context_takeover'
            )
        )

    def test_client_max_window_bits_without_value(self):
        # Without a server preference nothing is answered for it ...
        assert answer(PMD + '; client_max_window_bits') == PMD
        # ... with one, the server may set it.
        settings = DeflateSettings(client_max_window_bits=10)
        assert (
            answer(PMD + '; client_max_window_bits', settings)
            == PMD + '; client_max_window_bits=10'
        )

    def test_client_max_window_bits_with_value(self):
        assert (
            answer(PMD + '; client_max_window_bits=12')
            == PMD + '; client_max_window_bits=12'
        )
        settings = DeflateSettings(client_max_window_bits=10)
        assert (
            answer(PMD + '; client_max_window_bits=12', settings)
            == PMD + '; client_max_window_bits=10'
        )
        settings = DeflateSettings(client_max_window_bits=14)
        assert (
            answer(PMD + '; client_max_window_bits=12', settings)
            == PMD + '; client_max_window_bits=12'
        )

    def test_client_max_window_bits_never_sent_unless_offered(self):
        settings = DeflateSettings(client_max_window_bits=10)
        assert answer(PMD, settings) == PMD

    def test_disabled_settings_decline(self):
        assert answer(PMD, DeflateSettings(enabled=False)) is None

    def test_handler_setters(self):
        def adjust(request):
            processor = request.ws_extension_processors[0]
            assert processor.name() == 'deflate'  # as pywebsocket3's
            assert processor.get_extension_request().name() == PMD
            assert processor.is_active()
            processor.set_response_window_bits(9)
            processor.set_response_no_context_takeover(True)
            processor.set_client_max_window_bits(11)
            processor.set_client_no_context_takeover(True)

        assert answer(PMD + '; client_max_window_bits', adjust=adjust) == (
            PMD + '; server_max_window_bits=9; server_no_context_takeover'
            '; client_max_window_bits=11; client_no_context_takeover'
        )

    def test_handler_client_window_limit_declines_when_not_offered(self):
        # As pywebsocket3: the client did not offer client_max_window_bits,
        # so the limit the handler demands cannot be agreed (RFC 7692
        # 7.1.2.2); the server-wide setting is dropped instead (above).
        def adjust(request):
            request.ws_extension_processors[0].set_client_max_window_bits(10)

        assert answer(PMD, adjust=adjust) is None
        assert (
            answer(PMD + '; client_max_window_bits', adjust=adjust)
            == PMD + '; client_max_window_bits=10'
        )

        def unset(request):
            request.ws_extension_processors[0].set_client_max_window_bits(None)

        assert (
            answer(
                PMD, DeflateSettings(client_max_window_bits=10), adjust=unset
            )
            == PMD
        )

    def test_handler_can_deactivate(self):
        def adjust(request):
            request.ws_extension_processors[0].set_active(False)

        assert answer(PMD, adjust=adjust) is None

    def test_settings_are_copied_per_processor(self):
        settings = DeflateSettings()
        [processor] = processors_for(parse_extensions(PMD), settings)
        processor.set_response_window_bits(9)
        assert settings.server_max_window_bits is None

    def test_base_processor_is_abstract(self):
        processor = ExtensionProcessor(ExtensionParameter('x'))
        assert processor.name() == 'x'
        with pytest.raises(NotImplementedError):
            processor.get_extension_response()


class TestClientSide:
    def test_client_offer(self):
        assert (
            format_extension(client_offer())
            == PMD + '; client_max_window_bits'
        )
        settings = DeflateSettings(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=10,
            client_max_window_bits=12,
        )
        assert format_extension(client_offer(settings)) == (
            PMD + '; server_no_context_takeover; client_no_context_takeover'
            '; server_max_window_bits=10; client_max_window_bits=12'
        )

    def test_client_offer_is_accepted_by_the_server(self):
        settings = DeflateSettings(
            server_no_context_takeover=True, client_max_window_bits=12
        )
        assert answer(format_extension(client_offer(settings))) == (
            PMD + '; server_no_context_takeover; client_max_window_bits=12'
        )

    def test_accept_server_response(self):
        [response] = parse_extensions(
            PMD + '; server_no_context_takeover; client_max_window_bits=10'
        )
        deflater, inflater = accept_server_response(response)
        assert deflater.window_bits == 10
        assert inflater.no_context_takeover

    @pytest.mark.parametrize(
        'response',
        [
            PMD + '; client_max_window_bits',  # needs a value here
            PMD + '; x=1',
            PMD + '; server_max_window_bits=20',
        ],
    )
    def test_bad_server_response_raises(self, response):
        with pytest.raises(ValueError):
            accept_server_response(parse_extensions(response)[0])

    def test_server_raising_client_window_is_refused(self):
        [response] = parse_extensions(PMD + '; client_max_window_bits=12')
        with pytest.raises(ValueError):
            accept_server_response(
                response, DeflateSettings(client_max_window_bits=10)
            )


class TestCodecs:
    def test_tail_is_removed_and_restored(self):
        deflater = Deflater()
        payload = deflater.compress(b'Hello')
        assert not payload.endswith(b'\x00\x00\xff\xff')
        inflater = Inflater()
        assert (
            inflater.decompress(payload, None) + inflater.end_message()
            == b'Hello'
        )

    def test_rfc7692_example_hello(self):
        # RFC 7692 section 7.2.3.1: "Hello" compressed.
        inflater = Inflater()
        data = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
        assert (
            inflater.decompress(data, 100) + inflater.end_message() == b'Hello'
        )

    def test_rfc7692_shared_window_example(self):
        # Section 7.2.3.2: a second "Hello" referring to the first one.
        inflater = Inflater()
        first = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
        second = bytes([0xF2, 0x00, 0x11, 0x00, 0x00])
        assert (
            inflater.decompress(first, None) + inflater.end_message()
            == b'Hello'
        )
        assert (
            inflater.decompress(second, None) + inflater.end_message()
            == b'Hello'
        )

    def test_context_takeover_makes_repeats_smaller(self):
        deflater = Deflater()
        message = b'the same text again and again ' * 3
        first = deflater.compress(message)
        second = deflater.compress(message)
        assert len(second) < len(first)
        inflater = Inflater()
        for payload in (first, second):
            assert (
                inflater.decompress(payload, None) + inflater.end_message()
                == message
            )

    def test_no_context_takeover_makes_messages_independent(self):
        deflater = Deflater(no_context_takeover=True)
        message = b'the same text again and again ' * 3
        first = deflater.compress(message)
        second = deflater.compress(message)
        assert first == second
        for payload in (first, second):
            inflater = Inflater()  # a fresh one each time
            assert (
                inflater.decompress(payload, None) + inflater.end_message()
                == message
            )

    def test_inflater_no_context_takeover_resets(self):
        inflater = Inflater(no_context_takeover=True)
        deflater = Deflater(no_context_takeover=True)
        for _ in range(3):
            assert (
                inflater.decompress(deflater.compress(b'abc'), None)
                + inflater.end_message()
                == b'abc'
            )

    def test_small_windows_are_inflated(self):
        for bits in (9, 10, 12, 15):
            deflater = Deflater(window_bits=bits)
            assert deflater.enabled
            data = bytes(range(256)) * 40
            inflater = Inflater()
            assert (
                inflater.decompress(deflater.compress(data), None)
                + inflater.end_message()
                == data
            )

    def test_message_tail_counts_against_the_limit(self):
        # Found by fuzz/fuzz_deflate.py (corpus: regression-tail-past-
        # limit): a stored block whose length the 4-byte tail supplies,
        # so the tail itself inflates to a byte past a limit of 0.
        inflater = Inflater()
        assert inflater.decompress(b'\xc1\xff', 0) == b''
        with pytest.raises(MessageTooBigException):
            inflater.end_message(0)
        inflater = Inflater()
        assert inflater.decompress(b'\xc1\xff', 1) == b''
        assert inflater.end_message(1) == b'\xff'

    def test_budget_is_asked_piece_by_piece(self):
        data = Deflater().compress(b'abc' * 1000)
        asked = []

        def exactly_the_output(n):
            asked.append(n)
            return 3000 if len(asked) == 1 else 0

        inflater = Inflater()
        assert (
            inflater.decompress(data, 64 << 20, exactly_the_output)
            + inflater.end_message()
            == b'abc' * 1000
        )
        assert asked[0] <= (1 << 20) + 1  # not the whole message limit
        left = [2999]  # a budget one byte too small

        def budget(n):
            granted = min(n, left[0])
            left[0] -= granted
            return granted

        with pytest.raises(MessageTooBigException):
            Inflater().decompress(data, 64 << 20, budget)

    def test_window_of_8_bits_is_compressed_within_256_bytes(self):
        assert not Deflater(enabled=False).enabled
        # 300-byte distances tempt the compressor; a 10-bit window uses
        # them, the 8-bit one must not
        data = os.urandom(300) * 4 + b'-' * 3000 + os.urandom(300) * 4
        wide = zlib.compressobj(6, zlib.DEFLATED, -10)
        assert not inflates_through_8_bit_window(
            wide.compress(data) + wide.flush(zlib.Z_SYNC_FLUSH), data
        )
        for level in (-1, 1, 3, 6, 9):
            assert deflate_fits_8_bit_window(level, 8)
            deflater = Deflater(window_bits=8, level=level)
            assert deflater.enabled
            payload = deflater.compress(data)
            assert len(payload) < len(data) // 2
            assert inflates_through_8_bit_window(
                payload + b'\x00\x00\xff\xff', data
            )

    def test_window_of_8_bits_uncompressed_if_zlib_fails_the_check(
        self, monkeypatch
    ):
        monkeypatch.setattr(extensions, '_EIGHT_BIT_CHECKED', {(3, 8): False})
        assert not Deflater(window_bits=8, level=3).enabled
        assert Deflater(window_bits=9, level=3).enabled

    def test_invalid_data_is_1002(self):
        inflater = Inflater()
        with pytest.raises(common.InvalidFrameException) as info:
            inflater.decompress(b'\xff\xff\xff', 100)
        assert info.value.code == 1002
        inflater = Inflater()
        with pytest.raises(common.InvalidFrameException):
            inflater.decompress(b'\xff\xff\xff', None)

    def test_invalid_data_at_end_is_1002(self):
        inflater = Inflater()
        # A stored block header with LEN=1: the tail then supplies a NLEN
        # that is not its complement.
        assert inflater.decompress(b'\x00\x01\x00', 100) == b''
        with pytest.raises(common.InvalidFrameException) as info:
            inflater.end_message()
        assert info.value.code == 1002

    def test_output_limit(self):
        payload = Deflater().compress(bytes(1000))
        assert len(Inflater().decompress(payload, 1000)) <= 1000
        with pytest.raises(MessageTooBigException):
            Inflater().decompress(payload, 999)


# ---- compressed messages through a Stream --------------------------------


def deflate_stream(data=b'', max_message_size=None, offer=PMD, **kw):
    """A server Stream with permessage-deflate negotiated from `offer`, and
    the client's (deflater, inflater)."""
    [processor] = processors_for(parse_extensions(offer))
    response = processor.get_extension_response()
    options = StreamOptions()
    options.deflater = processor.make_deflater()
    options.inflater = processor.make_inflater()
    if max_message_size is not None:
        options.max_message_size = max_message_size
    request, conn, stream = make_stream(data, options, **kw)
    client_deflater, client_inflater = accept_server_response(response)
    return request, conn, stream, client_deflater, client_inflater


def compressed(opcode, deflater, message, fin=1):
    if isinstance(message, str):
        message = message.encode('utf-8')
    return client_frame(
        opcode, deflater.compress(message, bool(fin)), fin, rsv1=1
    )


def inflate_frames(frames, inflater):
    """Messages the client gets from the server's frames."""
    messages = []
    parts = []
    compressed_message = False
    for frame in frames:
        if frame.opcode in (common.OPCODE_TEXT, common.OPCODE_BINARY):
            compressed_message = bool(frame.rsv1)
            parts = []
        else:
            assert not frame.rsv1
        if compressed_message:
            parts.append(inflater.decompress(frame.payload, None))
            if frame.fin:
                parts.append(inflater.end_message())
        else:
            parts.append(frame.payload)
        if frame.fin:
            messages.append(b''.join(parts))
    return messages


class TestStreamRoundTrip:
    def test_client_to_server(self):
        deflater = extensions.Deflater()
        messages = [
            'Hello',
            'Hello',
            '\u00e9t\u00e9 ' * 200,
            b'\x00' * 5000,
            '',
        ]
        data = b''
        for message in messages:
            opcode = (
                common.OPCODE_TEXT
                if isinstance(message, str)
                else common.OPCODE_BINARY
            )
            data += compressed(opcode, deflater, message)
        _, _, stream, _, _ = deflate_stream(data)
        assert [stream.receive_message() for _ in messages] == messages

    def test_server_to_client(self):
        request, conn, stream, _, client_inflater = deflate_stream()
        messages = ['Hello', 'Hello', 'x' * 10000, b'\x01\x02' * 3000, '', b'']
        for message in messages:
            stream.send_message(message)
        frames = server_frames(conn.written_data(), allowed_rsv=4)
        assert all(f.rsv1 == 1 and f.fin == 1 for f in frames)
        assert len(frames[2].payload) < 200  # really compressed
        assert len(frames) == len(messages)
        got = inflate_frames(frames, client_inflater)
        assert got == [
            m.encode() if isinstance(m, str) else m for m in messages
        ]

    def test_server_no_context_takeover_round_trip(self):
        _, conn, stream, _, client_inflater = deflate_stream(
            offer=PMD + '; server_no_context_takeover'
        )
        assert client_inflater.no_context_takeover
        for _ in range(3):
            stream.send_message('repeat repeat repeat')
        frames = server_frames(conn.written_data(), allowed_rsv=4)
        assert len({f.payload for f in frames}) == 1
        assert (
            inflate_frames(frames, client_inflater)
            == [b'repeat repeat repeat'] * 3
        )

    def test_client_no_context_takeover_round_trip(self):
        client = Deflater(no_context_takeover=True)
        data = b''.join(
            compressed(common.OPCODE_TEXT, client, 'again') for _ in range(3)
        )
        _, _, stream, _, _ = deflate_stream(
            data, offer=PMD + '; client_no_context_takeover'
        )
        assert [stream.receive_message() for _ in range(3)] == ['again'] * 3

    def test_fragmented_compressed_message_from_client(self):
        deflater = Deflater()
        data = (
            compressed(common.OPCODE_TEXT, deflater, 'Hello, ', fin=0)
            + client_frame(common.OPCODE_PING, b'p')
            + client_frame(
                common.OPCODE_CONTINUATION,
                deflater.compress(b'compressed ', False),
                0,
            )
            + client_frame(
                common.OPCODE_CONTINUATION,
                deflater.compress(b'world', True),
                1,
            )
        )
        _, conn, stream, _, _ = deflate_stream(data)
        assert stream.receive_message() == 'Hello, compressed world'
        [pong] = server_frames(conn.written_data(), allowed_rsv=4)
        assert pong.opcode == common.OPCODE_PONG

    def test_fragmented_compressed_message_from_server(self):
        _, conn, stream, _, client_inflater = deflate_stream()
        stream.send_message('part one, ', end=False)
        stream.send_message('part two, ', end=False)
        stream.send_message('end')
        frames = server_frames(conn.written_data(), allowed_rsv=4)
        assert [(f.fin, f.rsv1, f.opcode) for f in frames] == [
            (0, 1, common.OPCODE_TEXT),
            (0, 0, common.OPCODE_CONTINUATION),
            (1, 0, common.OPCODE_CONTINUATION),
        ]
        assert inflate_frames(frames, client_inflater) == [
            b'part one, part two, end'
        ]

    def test_uncompressed_message_on_a_deflate_connection(self):
        data = client_frame(common.OPCODE_TEXT, 'plain')
        _, conn, stream, _, client_inflater = deflate_stream(data)
        assert stream.receive_message() == 'plain'
        stream.send_message('not compressed', compress=False)
        [frame] = server_frames(conn.written_data(), allowed_rsv=4)
        assert frame.rsv1 == 0 and frame.payload == b'not compressed'

    def test_outgoing_compression_can_be_disabled(self):
        [processor] = processors_for(parse_extensions(PMD))
        processor.get_extension_response()
        processor.disable_outgoing_compression()
        options = StreamOptions()
        options.deflater = processor.make_deflater()
        options.inflater = processor.make_inflater()
        _, conn, stream = make_stream(b'', options)
        stream.send_message('plain')
        [frame] = server_frames(conn.written_data(), allowed_rsv=4)
        assert frame.rsv1 == 0 and frame.payload == b'plain'
        processor.enable_outgoing_compression()
        assert processor.make_deflater().enabled

    def test_rsv1_on_continuation_is_1002(self):
        deflater = Deflater()
        data = compressed(
            common.OPCODE_TEXT, deflater, 'ab', fin=0
        ) + client_frame(
            common.OPCODE_CONTINUATION, deflater.compress(b'cd'), 1, rsv1=1
        )
        request, conn, stream, _, _ = deflate_stream(data)
        with pytest.raises(common.InvalidFrameException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1002]

    def test_rsv1_on_control_frame_is_1002(self):
        data = client_frame(common.OPCODE_PING, b'x', rsv1=1)
        _, conn, stream, _, _ = deflate_stream(data)
        with pytest.raises(common.InvalidFrameException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1002]

    def test_rsv2_still_refused(self):
        data = client_frame(common.OPCODE_TEXT, b'x', rsv2=1)
        _, conn, stream, _, _ = deflate_stream(data)
        with pytest.raises(common.InvalidFrameException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1002]

    def test_invalid_compressed_data_is_1002(self):
        data = client_frame(common.OPCODE_BINARY, b'\xff\xff\xff', rsv1=1)
        _, conn, stream, _, _ = deflate_stream(data)
        with pytest.raises(common.InvalidFrameException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1002]

    def test_compressed_invalid_utf8_is_1007(self):
        data = compressed(common.OPCODE_TEXT, Deflater(), b'ok \xc3\x28')
        _, conn, stream, _, _ = deflate_stream(data)
        with pytest.raises(common.InvalidUTF8Exception):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1007]


_real_decompressobj = zlib.decompressobj


class _CountingDecompressor:
    """Wraps a zlib decompressor, recording how much it produced."""

    produced = 0

    def __init__(self, wbits):
        self._inner = _real_decompressobj(wbits)

    def decompress(self, data, max_length=0):
        out = self._inner.decompress(data, max_length)
        _CountingDecompressor.produced += len(out)
        return out


class TestDecompressionBomb:
    def _bomb(self, size):
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = bytes(1024 * 1024)
        data = b''.join(compressor.compress(chunk) for _ in range(size))
        data += compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]

    def test_bomb_is_1009_without_inflating_everything(self, monkeypatch):
        bomb = self._bomb(64)  # 64 MiB of zeros
        assert len(bomb) < 100 * 1024
        _CountingDecompressor.produced = 0
        monkeypatch.setattr(
            extensions.zlib, 'decompressobj', _CountingDecompressor
        )
        data = client_frame(common.OPCODE_BINARY, bomb, rsv1=1)
        started = time.monotonic()
        _, conn, stream, _, _ = deflate_stream(
            data, max_message_size=64 * 1024
        )
        with pytest.raises(MessageTooBigException) as info:
            stream.receive_message()
        assert time.monotonic() - started < 2
        assert info.value.code == 1009
        assert written_close_codes(conn, allowed_rsv=4) == [1009]
        assert _CountingDecompressor.produced <= 64 * 1024 + 1

    def test_small_bomb_of_a_few_kb(self):
        bomb = self._bomb(8)  # 8 MiB in ~8 KB
        assert len(bomb) < 16 * 1024
        data = client_frame(common.OPCODE_BINARY, bomb, rsv1=1)
        _, conn, stream, _, _ = deflate_stream(data, max_message_size=100000)
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1009]

    def test_fragmented_bomb(self):
        bomb = self._bomb(4)
        half = len(bomb) // 2
        data = client_frame(
            common.OPCODE_BINARY, bomb[:half], 0, rsv1=1
        ) + client_frame(common.OPCODE_CONTINUATION, bomb[half:], 1)
        _, conn, stream, _, _ = deflate_stream(
            data, max_message_size=3 * 2**20
        )
        with pytest.raises(MessageTooBigException):
            stream.receive_message()
        assert written_close_codes(conn, allowed_rsv=4) == [1009]

    def test_message_at_the_limit_passes(self):
        message = bytes(100000)
        data = compressed(common.OPCODE_BINARY, Deflater(), message)
        _, _, stream, _, _ = deflate_stream(data, max_message_size=100000)
        assert stream.receive_message() == message
