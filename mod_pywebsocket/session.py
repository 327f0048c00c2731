"""One WebSocket request from opening handshake to close, for any host.

The hosts (mod_python, standalone) parse HTTP and own the connection;
this module runs the handshaker, the handler's extra handshake, writes the
101, builds `request.ws_stream` and runs the handler. Handshake failures
come out as HandshakeException / DispatchException for the host to turn
into an HTTP response; AbortedByUserException means: drop the connection.
"""

from __future__ import annotations

from typing import Optional, TYPE_CHECKING

from mod_pywebsocket import common, util
from mod_pywebsocket.common import DispatchException, HandshakeException
from mod_pywebsocket.access_policy import AccessRefused, OriginPolicyMap
from mod_pywebsocket.extensions import DeflateSettings
from mod_pywebsocket.handshake import select_handshaker
from mod_pywebsocket.handshake.base import get_header
from mod_pywebsocket.stream import Stream, StreamOptions
from mod_pywebsocket.stream_hixie import StreamHixie75

if TYPE_CHECKING:
    from mod_pywebsocket.dispatch import PassiveClosing


class ServerOptions:
    """What a host may configure for every connection."""

    def __init__(self) -> None:
        self.allow_draft75 = False
        self.max_message_size = common.DEFAULT_MAX_MESSAGE_SIZE
        self.close_timeout = common.DEFAULT_CLOSE_TIMEOUT
        self.keepalive_interval: Optional[float] = None
        self.keepalive_timeout: Optional[float] = None
        # The close code for RSV bits no extension claims: 1002 or 1003.
        self.rsv_close_code = common.STATUS_PROTOCOL_ERROR
        self.deflate = DeflateSettings()
        self.origin_policies: Optional[OriginPolicyMap] = None


def read_exactly(transport, length: int) -> bytes:
    """Read `length` bytes; HandshakeException if the peer stops first."""
    return util.read_exactly(
        transport.read, length, HandshakeException, 'during the handshake'
    )


def make_stream(
    request,
    options: ServerOptions,
    transport,
    active_processors=(),
    passive_closing_handler: Optional[PassiveClosing] = None,
):
    """The stream for the negotiated protocol version; `active_processors`
    are the extension processors the handshake agreed on,
    `passive_closing_handler` is the handler's answer to a peer's close
    (RFC 6455 only: the hixie drafts' close has no code)."""
    version = request.ws_version
    if version in common.SUPPORTED_HYBI_VERSIONS:
        return Stream(
            request,
            _stream_options(options, active_processors),
            transport,
            passive_closing_handler=passive_closing_handler,
        )
    return StreamHixie75(
        request,
        version == common.VERSION_HYBI00,
        options.max_message_size,
        transport,
        options.close_timeout,
    )


# (the server options it was made from, StreamOptions) of the last
# connection without extensions: streams only read their options, so
# such connections share one object while the server options stay equal.
_shared_stream_options: Optional[tuple] = None


def _stream_options(
    options: ServerOptions, active_processors
) -> StreamOptions:
    global _shared_stream_options
    values = (
        options.max_message_size,
        options.close_timeout,
        options.keepalive_interval,
        options.keepalive_timeout,
        options.rsv_close_code,
    )
    shared = _shared_stream_options
    if not active_processors and shared is not None and shared[0] == values:
        return shared[1]
    stream_options = StreamOptions()
    (
        stream_options.max_message_size,
        stream_options.close_timeout,
        stream_options.keepalive_interval,
        stream_options.keepalive_timeout,
        stream_options.rsv_close_code,
    ) = values
    for processor in active_processors:
        stream_options.deflater = processor.make_deflater()
        stream_options.inflater = processor.make_inflater()
    if not active_processors:
        _shared_stream_options = (values, stream_options)
    return stream_options


def check_origin(request, policies: Optional[OriginPolicyMap]) -> None:
    """AccessRefused (403) unless the origin policy of the resource lets
    `request.ws_origin` connect (every protocol version sets it)."""
    policy = policies.policy_for(request.ws_resource) if policies else None
    if policy is None:
        return
    reason = policy.refusal(
        request.ws_origin,
        get_header(request, common.HOST_HEADER),
        request.is_https(),
    )
    if reason is not None:
        raise AccessRefused(reason, common.HTTP_STATUS_FORBIDDEN)


def do_handshake(
    request, dispatcher, options: ServerOptions, transport=None
) -> None:
    """Validate the request, run the handler's extra handshake, send the
    101 and set `request.ws_stream`."""
    transport = transport if transport is not None else request.connection
    handshaker = select_handshaker(
        request, options.allow_draft75, options.deflate
    )
    handshaker.validate()
    if options.origin_policies is not None:
        check_origin(request, options.origin_policies)
    suite = dispatcher.get_handler_suite(request.ws_resource)
    if suite is None:
        raise DispatchException('No handler for %s' % request.ws_resource)
    if handshaker.body_length:
        handshaker.accept_body(read_exactly(transport, handshaker.body_length))
    dispatcher.do_extra_handshake(request)
    response = handshaker.build_response()
    transport.write(response)
    request.ws_stream = make_stream(
        request,
        options,
        transport,
        getattr(handshaker, 'active_processors', ()),
        suite.passive_closing_handshake,
    )
