"""WebSocket extensions: permessage-deflate (RFC 7692), sans-I/O.

During the handshake every offer becomes an extension processor in
`request.ws_extension_processors`; a handler may change, deactivate or
remove processors in `web_socket_do_extra_handshake`. The first acceptable
offer of each extension is then answered and its processor gives the
stream a compressor and a decompressor.
"""

from __future__ import annotations

import random
import types
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

from mod_pywebsocket import common
from mod_pywebsocket.common import ExtensionParameter, MessageTooBigException

_TAIL = b'\x00\x00\xff\xff'
_PIECE = 1 << 20  # inflated at a time
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15


class DeflateSettings:
    """Server-side permessage-deflate settings (see README for how they
    were chosen): every field can be set from the command line, from
    PythonOptions or per handler on the processor."""

    def __init__(
        self,
        enabled: bool = True,
        compression_level: int = 3,
        memory_level: int = 8,
        server_max_window_bits: Optional[int] = None,
        server_no_context_takeover: bool = False,
        client_max_window_bits: Optional[int] = None,
        client_no_context_takeover: bool = False,
    ) -> None:
        self.enabled = enabled
        self.compression_level = compression_level
        self.memory_level = memory_level
        self.server_max_window_bits = server_max_window_bits
        self.server_no_context_takeover = server_no_context_takeover
        self.client_max_window_bits = client_max_window_bits
        self.client_no_context_takeover = client_no_context_takeover

    def copy(self) -> 'DeflateSettings':
        return DeflateSettings(**vars(self))


class ExtensionProcessor:
    """Base of the processors: one offer, and what to answer."""

    def __init__(self, request: ExtensionParameter) -> None:
        self._request = request
        self._active = True

    def name(self) -> str:
        return self._request.name()

    def get_extension_request(self) -> ExtensionParameter:
        return self._request

    def is_active(self) -> bool:
        return self._active

    def set_active(self, active: bool) -> None:
        self._active = active

    def get_extension_response(self) -> Optional[ExtensionParameter]:
        """The accepted parameters, or None to decline this offer."""
        raise NotImplementedError

    # pywebsocket3's processor interface, for code that negotiates itself
    # (handshake.base.HandshakerBase and its subclasses).
    def check_consistency_with_other_processors(self, processors) -> None:
        """Deactivate processors that cannot run alongside this one
        (there is one kind of extension here, so: none)."""

    def setup_stream_options(self, stream_options) -> None:
        """Configure a stream.StreamOptions for the accepted response."""


def _parse_window_bits(value: Optional[str]) -> int:
    if (
        value is None
        or not value.isdigit()
        or len(value) > 2
        or value.startswith('0')
    ):
        raise ValueError('window bits must be a number from 8 to 15')
    bits = int(value)
    if not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
        raise ValueError('window bits %d out of range' % bits)
    return bits


class PerMessageDeflateOffer:
    """The parameters of one permessage-deflate offer (RFC 7692 §7),
    validated: ValueError for an unknown, duplicated or bad parameter."""

    def __init__(
        self, offer: ExtensionParameter, from_server: bool = False
    ) -> None:
        seen = set()
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits: Optional[int] = None
        self.client_max_window_bits: Optional[int] = None
        self.client_max_window_bits_offered = False
        for name, value in offer.get_parameters():
            if name in seen:
                raise ValueError('duplicated parameter %s' % name)
            seen.add(name)
            if name in (
                'server_no_context_takeover',
                'client_no_context_takeover',
            ):
                if value is not None:
                    raise ValueError('%s takes no value' % name)
                setattr(self, name, True)
            elif name == 'server_max_window_bits':
                self.server_max_window_bits = _parse_window_bits(value)
            elif name == 'client_max_window_bits':
                self.client_max_window_bits_offered = True
                if value is not None or from_server:
                    self.client_max_window_bits = _parse_window_bits(value)
            else:
                raise ValueError('unknown parameter %s' % name)


class PerMessageDeflateExtensionProcessor(ExtensionProcessor):
    """Server side of permessage-deflate for one offer."""

    # Parameter names, as pywebsocket3 code reads them from this class.
    _SERVER_MAX_WINDOW_BITS_PARAM = 'server_max_window_bits'
    _SERVER_NO_CONTEXT_TAKEOVER_PARAM = 'server_no_context_takeover'
    _CLIENT_MAX_WINDOW_BITS_PARAM = 'client_max_window_bits'
    _CLIENT_NO_CONTEXT_TAKEOVER_PARAM = 'client_no_context_takeover'

    def __init__(
        self,
        request: ExtensionParameter,
        settings: Optional[DeflateSettings] = None,
    ) -> None:
        super().__init__(request)
        self.settings = (settings or DeflateSettings()).copy()
        self.offer: Optional[PerMessageDeflateOffer]
        try:
            self.offer = PerMessageDeflateOffer(request)
            self.decline_reason: Optional[str] = None
        except ValueError as e:
            self.offer = None
            self.decline_reason = str(e)
        self.compress_outgoing = True
        self.agreed: Optional[PerMessageDeflateOffer] = None
        # set_client_max_window_bits() was called: a demand, not a wish.
        self._client_window_demanded = False

    def name(self) -> str:
        """'deflate', as in pywebsocket3 and the original mod_pywebsocket
        (handlers look processors up by it); the extension's own name is
        get_extension_request().name()."""
        return 'deflate'

    # Setters named as in pywebsocket3, for handlers written against it.
    def set_response_window_bits(self, bits: Optional[int]) -> None:
        self.settings.server_max_window_bits = bits

    def set_response_no_context_takeover(self, value: bool) -> None:
        self.settings.server_no_context_takeover = value

    def set_client_max_window_bits(self, bits: Optional[int]) -> None:
        """Limit the client's window to `bits`. As in pywebsocket3, the
        offer is then declined when the client did not offer
        client_max_window_bits (RFC 7692 7.1.2.2 forbids answering it, so
        the limit cannot be had); the server-wide setting
        (DeflateSettings.client_max_window_bits) only asks, and is left
        out of the answer then."""
        self.settings.client_max_window_bits = bits
        self._client_window_demanded = bits is not None

    def set_client_no_context_takeover(self, value: bool) -> None:
        self.settings.client_no_context_takeover = value

    def enable_outgoing_compression(self) -> None:
        self.compress_outgoing = True

    def disable_outgoing_compression(self) -> None:
        self.compress_outgoing = False

    def get_extension_response(self) -> Optional[ExtensionParameter]:
        offer = self.offer
        if not self._active or offer is None or not self.settings.enabled:
            return None
        settings = self.settings
        response = ExtensionParameter(common.PERMESSAGE_DEFLATE_EXTENSION)
        agreed = PerMessageDeflateOffer(ExtensionParameter('x'))
        # Parameters in pywebsocket3's order: server_max_window_bits,
        # server_no_context_takeover, client_max_window_bits,
        # client_no_context_takeover.
        server_bits = settings.server_max_window_bits
        if offer.server_max_window_bits is not None:
            server_bits = min(
                server_bits or MAX_WINDOW_BITS, offer.server_max_window_bits
            )
        if server_bits is not None:
            agreed.server_max_window_bits = server_bits
            response.add_parameter('server_max_window_bits', str(server_bits))
        if (
            offer.server_no_context_takeover
            or settings.server_no_context_takeover
        ):
            agreed.server_no_context_takeover = True
            response.add_parameter('server_no_context_takeover', None)
        client_bits = settings.client_max_window_bits
        if client_bits is not None:
            if not offer.client_max_window_bits_offered:
                if self._client_window_demanded:
                    return None
                client_bits = None  # the client cannot limit itself
            elif offer.client_max_window_bits is not None:
                client_bits = min(client_bits, offer.client_max_window_bits)
        elif offer.client_max_window_bits is not None:
            client_bits = offer.client_max_window_bits
        if client_bits is not None:
            agreed.client_max_window_bits = client_bits
            response.add_parameter('client_max_window_bits', str(client_bits))
        if (
            offer.client_no_context_takeover
            or settings.client_no_context_takeover
        ):
            agreed.client_no_context_takeover = True
            response.add_parameter('client_no_context_takeover', None)
        self.agreed = agreed
        return response

    def setup_stream_options(self, stream_options) -> None:
        """After get_extension_response() accepted: compress and
        decompress on the stream built with `stream_options`."""
        self._stream_deflater = self.make_deflater()
        stream_options.deflater = self._stream_deflater
        stream_options.inflater = self.make_inflater()

    def set_bfinal(self, value: bool) -> None:
        """pywebsocket3's testing knob: end every frame sent through the
        stream set up by setup_stream_options() with a BFINAL block (a
        fresh DEFLATE stream each; RFC 7692 7.2.3.3)."""
        deflater = getattr(self, '_stream_deflater', None)
        if deflater is not None:
            deflater.bfinal = value

    @property
    def _rfc1979_deflater(self):
        """The agreed compressor parameters under pywebsocket3's private
        names (_window_bits, _no_context_takeover), which its tests read
        after get_extension_response()."""
        deflater = self.make_deflater()
        return types.SimpleNamespace(
            _window_bits=deflater.window_bits,
            _no_context_takeover=deflater.no_context_takeover,
        )

    def make_deflater(self) -> 'Deflater':
        agreed = self.agreed
        assert agreed is not None
        return Deflater(
            agreed.server_max_window_bits or MAX_WINDOW_BITS,
            agreed.server_no_context_takeover,
            self.settings.compression_level,
            self.settings.memory_level,
            enabled=self.compress_outgoing,
        )

    def make_inflater(self) -> 'Inflater':
        agreed = self.agreed
        assert agreed is not None
        return Inflater(agreed.client_no_context_takeover)


_EIGHT_BIT_CHECKED: Dict[Tuple[int, int], bool] = {}


def deflate_fits_8_bit_window(level: int, memory_level: int) -> bool:
    """Whether zlib's deflate, given a 9-bit window (its smallest), only
    makes back-references an 8-bit (256-byte) window can resolve. zlib
    never looks further back than the window size minus 262 bytes (its
    MAX_DIST), 250 here; checked once per (level, memory level) with a
    probe that invites 300-byte distances, inflated through an 8-bit
    window with a small output buffer (so the window, not the output,
    must hold what is referenced)."""
    key = (level, memory_level)
    known = _EIGHT_BIT_CHECKED.get(key)
    if known is not None:
        return known
    probe = random.Random(8).randbytes(300) * 3
    try:
        compressor = zlib.compressobj(
            level, zlib.DEFLATED, -(MIN_WINDOW_BITS + 1), memory_level
        )
        fits = inflates_through_8_bit_window(
            compressor.compress(probe) + compressor.flush(zlib.Z_SYNC_FLUSH),
            probe,
        )
    except (zlib.error, ValueError):
        fits = False
    _EIGHT_BIT_CHECKED[key] = fits
    return fits


def inflates_through_8_bit_window(data: bytes, expected: bytes) -> bool:
    """Whether raw DEFLATE `data` inflates to `expected` through a 256-byte
    window: the output is taken 16 bytes at a time, so a back-reference
    further than the window is an error rather than a look into the
    output buffer."""
    inflater = zlib.decompressobj(-MIN_WINDOW_BITS)
    out = []
    try:
        while True:
            chunk = inflater.decompress(data, 16)
            out.append(chunk)
            data = inflater.unconsumed_tail
            if not data and not chunk:
                break
    except zlib.error:
        return False
    return b''.join(out) == expected


class Deflater:
    """Compresses outgoing messages; created zlib state lazily so idle
    connections cost nothing. A window of 8 bits, which zlib's deflate
    does not take, is compressed with its 9-bit window, whose
    back-references stay within 256 bytes (deflate_fits_8_bit_window());
    if that check fails, messages go out uncompressed, as RFC 7692
    allows."""

    def __init__(
        self,
        window_bits: int = MAX_WINDOW_BITS,
        no_context_takeover: bool = False,
        level: int = 6,
        memory_level: int = 8,
        enabled: bool = True,
    ) -> None:
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.level = level
        self.memory_level = memory_level
        self.enabled = enabled and (
            window_bits > MIN_WINDOW_BITS
            or deflate_fits_8_bit_window(level, memory_level)
        )
        self._zlib_bits = -max(window_bits, MIN_WINDOW_BITS + 1)
        self.bfinal = False
        self._compressor: Optional[Any] = None  # zlib compress object

    def compress(self, data: bytes, end: bool = True) -> bytes:
        """Compressed payload for one fragment (all of a message when
        `end` and it is the first); the §7.2.1 tail is removed at the end."""
        if self.bfinal:  # see set_bfinal(): own stream
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, self._zlib_bits, self.memory_level
            )
            return (
                compressor.compress(data)
                + compressor.flush(zlib.Z_FINISH)
                + b'\x00'
            )
        if self._compressor is None:
            self._compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, self._zlib_bits, self.memory_level
            )
        out = self._compressor.compress(data) + self._compressor.flush(
            zlib.Z_SYNC_FLUSH
        )
        if end:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.no_context_takeover:
                self._compressor = None
        return out


class Inflater:
    """Decompresses incoming messages with a bounded output, so a
    decompression bomb ends in MessageTooBigException with memory bounded
    by the message size limit. Always inflates with a 15-bit window, which
    reads every smaller window too."""

    def __init__(self, no_context_takeover: bool = False) -> None:
        self.no_context_takeover = no_context_takeover
        self._decompressor: Optional[Any] = None  # zlib decompress object

    def decompress(
        self,
        data: bytes,
        max_length: Optional[int],
        reserve: Optional[Callable[[int], int]] = None,
    ) -> bytes:
        """Inflate one fragment; MessageTooBigException past `max_length`
        bytes of output (None = no limit) or when `reserve(n)`, asked
        before each piece of output, grants nothing."""
        # Inflated in pieces of at most _PIECE bytes, so what a bomb holds
        # is what the limit lets through plus one piece (not zlib's
        # growing output buffer and its final copy besides), and what is
        # reserved for it grows with what it produces.
        parts: List[bytes] = []
        size = 0
        while True:
            if self._decompressor is None:
                self._decompressor = zlib.decompressobj(-MAX_WINDOW_BITS)
            decompressor = self._decompressor
            while True:
                piece_size = (
                    _PIECE
                    if max_length is None
                    else min(_PIECE, max_length + 1 - size)
                )
                if reserve is not None:
                    piece_size = reserve(piece_size)
                # (no room granted: only whether any output is left)
                room = piece_size or 1
                try:
                    piece = decompressor.decompress(data, room)
                except zlib.error as e:
                    raise common.InvalidFrameException(
                        'invalid compressed data: %s' % e
                    )
                if piece and not piece_size:
                    parts.clear()
                    raise MessageTooBigException('no room to inflate more')
                parts.append(piece)
                size += len(piece)
                if max_length is not None and size > max_length:
                    parts.clear()  # (not kept alive by a traceback)
                    raise MessageTooBigException(
                        'decompressed message too big'
                    )
                data = decompressor.unconsumed_tail
                if not data and (len(piece) < room or decompressor.eof):
                    break
            if not decompressor.eof:
                break
            # A block with BFINAL set ended the DEFLATE stream (RFC 7692
            # 7.2.3.3 lets senders flush that way): what follows starts
            # a new stream.
            data = decompressor.unused_data
            self._decompressor = None
            if not data:
                break
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def end_message(self, max_length: Optional[int] = None) -> bytes:
        """Inflate the 4-byte tail RFC 7692 strips; the bytes it
        completes count against `max_length` like decompress()'s."""
        if self._decompressor is None:  # the stream ended with BFINAL
            return b''
        decompressor = self._decompressor
        try:
            if max_length is None:
                out = decompressor.decompress(_TAIL)
            else:
                out = decompressor.decompress(_TAIL, max_length + 1)
        except zlib.error as e:
            raise common.InvalidFrameException(
                'invalid compressed data: %s' % e
            )
        if max_length is not None and len(out) > max_length:
            self._decompressor = None  # the message is refused
            raise MessageTooBigException('decompressed message too big')
        if self.no_context_takeover or decompressor.eof:
            self._decompressor = None
        return out


def processors_for(
    offers: List[ExtensionParameter],
    settings: Optional[DeflateSettings] = None,
) -> List[ExtensionProcessor]:
    """A processor for each offer this server knows (unknown ones are
    silently declined, as RFC 6455 says)."""
    processors: List[ExtensionProcessor] = []
    for offer in offers:
        if offer.name() == common.PERMESSAGE_DEFLATE_EXTENSION:
            processors.append(
                PerMessageDeflateExtensionProcessor(offer, settings)
            )
    return processors


def client_offer(
    settings: Optional[DeflateSettings] = None,
) -> ExtensionParameter:
    """The permessage-deflate offer our client sends."""
    settings = settings or DeflateSettings()
    offer = ExtensionParameter(common.PERMESSAGE_DEFLATE_EXTENSION)
    if settings.server_no_context_takeover:
        offer.add_parameter('server_no_context_takeover', None)
    if settings.client_no_context_takeover:
        offer.add_parameter('client_no_context_takeover', None)
    if settings.server_max_window_bits is not None:
        offer.add_parameter(
            'server_max_window_bits', str(settings.server_max_window_bits)
        )
    offer.add_parameter(
        'client_max_window_bits',
        None
        if settings.client_max_window_bits is None
        else str(settings.client_max_window_bits),
    )
    return offer


def accept_server_response(
    response: ExtensionParameter, settings: Optional[DeflateSettings] = None
):
    """For our client: (deflater, inflater) from the server's answer, or
    ValueError if the answer breaks RFC 7692 §7.1."""
    settings = settings or DeflateSettings()
    agreed = PerMessageDeflateOffer(response, from_server=True)
    if (
        agreed.client_max_window_bits is not None
        and settings.client_max_window_bits is not None
        and agreed.client_max_window_bits > settings.client_max_window_bits
    ):
        raise ValueError('server raised client_max_window_bits')
    deflater = Deflater(
        agreed.client_max_window_bits or MAX_WINDOW_BITS,
        agreed.client_no_context_takeover,
        settings.compression_level,
        settings.memory_level,
    )
    inflater = Inflater(agreed.server_no_context_takeover)
    return deflater, inflater


def get_extension_processor(
    extension_request: ExtensionParameter,
    settings: Optional[DeflateSettings] = None,
) -> Optional[ExtensionProcessor]:
    """The processor for one offer, or None for an unknown extension
    (pywebsocket3's name; processors_for() does a whole header)."""
    if extension_request.name() == common.PERMESSAGE_DEFLATE_EXTENSION:
        return PerMessageDeflateExtensionProcessor(extension_request, settings)
    return None


class _PerMessageDeflateFramer:
    """The compressing side of permessage-deflate for code that builds
    its own stream (pywebsocket3's client examples): compress with
    `window_bits` (None: 15) and `no_context_takeover`, inflate what the
    peer sends."""

    def __init__(
        self, window_bits: Optional[int], no_context_takeover: bool
    ) -> None:
        self._window_bits = window_bits or MAX_WINDOW_BITS
        self._no_context_takeover = no_context_takeover
        self._compress_outgoing = True

    def set_compress_outgoing_enabled(self, enabled: bool) -> None:
        self._compress_outgoing = enabled

    def setup_stream_options(self, stream_options) -> None:
        stream_options.deflater = Deflater(
            self._window_bits,
            self._no_context_takeover,
            enabled=self._compress_outgoing,
        )
        stream_options.inflater = Inflater()
