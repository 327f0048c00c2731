"""pywebsocket3's handshaker classes: `HandshakerBase(request, dispatcher)`
and its RFC 6455 subclass (`handshake.hybi.Handshaker`).

They run a whole opening handshake over `request.connection`: validate,
negotiate subprotocol and extensions, call the dispatcher's
`do_extra_handshake`, build `request.ws_stream` and write the 101. Code
that embeds the protocol core subclasses HandshakerBase; web-platform-
tests' HTTP/2 WebSocket handshaker (RFC 8441) overrides
`_transform_header`, `_protocol_rfc`, `_validate_request`, `_set_accept`
and `_send_handshake`. Our own hosts use the sans-I/O handshakers of
base.py, hybi.py, hybi00.py and hixie75.py instead.

Reachable as `mod_pywebsocket.handshake.base.HandshakerBase` and
`mod_pywebsocket.handshake.hybi.Handshaker` (and under pywebsocket3's
names); imported lazily there, as this module needs the stream.
"""

from __future__ import annotations

import base64
import binascii
from typing import List, Optional, TYPE_CHECKING

from mod_pywebsocket import common, util
from mod_pywebsocket.common import HandshakeException, VersionException
from mod_pywebsocket.extensions import get_extension_processor
from mod_pywebsocket.handshake.base import (
    get_mandatory_header,
    parse_token_list,
    validate_mandatory_header,
    validate_subprotocol,
)
from mod_pywebsocket.handshake.hybi import compute_accept
from mod_pywebsocket.http_header_util import has_token
from mod_pywebsocket.stream import Stream, StreamOptions

if TYPE_CHECKING:
    from mod_pywebsocket.dispatch import PassiveClosing


class HandshakerBase:
    """One opening handshake; subclasses say how headers are named,
    validated, answered and sent (see the module docstring)."""

    def __init__(self, request, dispatcher) -> None:
        self._logger = util.get_class_logger(self)
        self._request = request
        self._dispatcher = dispatcher

    # The five methods a subclass implements.

    def _protocol_rfc(self) -> str:
        """The name of the specification the subclass implements."""
        raise NotImplementedError

    def _transform_header(self, header: str) -> str:
        """The name to look `header` up by (HTTP/2: lower case)."""
        raise NotImplementedError

    def _validate_request(self) -> None:
        """Check the request line and mandatory headers."""
        raise NotImplementedError

    def _set_accept(self) -> None:
        """Compute what the response needs (e.g. Sec-WebSocket-Accept)."""
        raise NotImplementedError

    def _send_handshake(self) -> None:
        """Write the response to the client."""
        raise NotImplementedError

    def do_handshake(self) -> None:
        """Run the handshake. Errors in validating the request or version
        propagate as they are (HandshakeException, VersionException);
        a HandshakeException after that without an explicit status gets
        400. Whatever the dispatcher's do_extra_handshake raises passes
        through unchanged (AbortedByUserException included)."""
        request = self._request
        request.ws_close_code = None
        request.ws_close_reason = None
        self._validate_request()
        request.ws_resource = request.uri
        request.ws_version = self._check_version()
        try:
            self._get_origin()
            self._set_protocol()
            self._parse_extensions()
            self._set_accept()
            self._logger.debug('protocol: %s', self._protocol_rfc())
            request.ws_extension_processors = (
                self._get_extension_processors_requested()
            )
            request.extra_headers = []
            self._dispatcher.do_extra_handshake(request)
            stream_options = StreamOptions()
            # pywebsocket3's API, pywebsocket3's close code for RSV bits
            # nothing claims (see docs/migrating-from-pywebsocket3.md).
            stream_options.rsv_close_code = common.STATUS_UNSUPPORTED_DATA
            self._process_extensions(stream_options)
            request.ws_stream = Stream(
                request,
                stream_options,
                passive_closing_handler=self._passive_closing_handler(),
            )
            self._check_chosen_protocol()
            self._send_handshake()
        except HandshakeException as e:
            if not getattr(e, 'status', None):
                e.status = common.HTTP_STATUS_BAD_REQUEST
            raise

    def _passive_closing_handler(self) -> Optional[PassiveClosing]:
        """The handler's web_socket_passive_closing_handshake, when the
        dispatcher is ours and the handler defines one."""
        find_suite = getattr(self._dispatcher, 'get_handler_suite', None)
        suite = find_suite(self._request.ws_resource) if find_suite else None
        return getattr(suite, 'passive_closing_handshake', None)

    def _header(self, name: str) -> Optional[str]:
        return self._request.headers_in.get(self._transform_header(name))

    def _check_version(self) -> int:
        name = self._transform_header(common.SEC_WEBSOCKET_VERSION_HEADER)
        version = get_mandatory_header(self._request, name)
        if version == str(common.VERSION_HYBI_LATEST):
            return common.VERSION_HYBI_LATEST
        if ',' in version:
            raise HandshakeException(
                'more than one version (%r) in %s' % (version, name),
                common.HTTP_STATUS_BAD_REQUEST,
            )
        raise VersionException(
            'unsupported version %r in %s' % (version, name),
            str(common.VERSION_HYBI_LATEST),
        )

    def _get_origin(self) -> None:
        self._request.ws_origin = self._header(common.ORIGIN_HEADER)

    def _set_protocol(self) -> None:
        request = self._request
        request.ws_protocol = None
        value = self._header(common.SEC_WEBSOCKET_PROTOCOL_HEADER)
        request.ws_requested_protocols = (
            None if value is None else parse_token_list(value)
        )

    def _parse_extensions(self) -> None:
        request = self._request
        value = self._header(common.SEC_WEBSOCKET_EXTENSIONS_HEADER)
        if not value:
            request.ws_requested_extensions = None
            return
        try:
            request.ws_requested_extensions = common.parse_extensions(value)
        except common.ExtensionParsingException as e:
            raise HandshakeException(
                'invalid Sec-WebSocket-Extensions header: %s' % e
            )

    def _get_extension_processors_requested(self) -> list:
        processors = []
        for offer in self._request.ws_requested_extensions or []:
            processor = get_extension_processor(offer)
            if processor is not None:  # unknown offers are ignored
                processors.append(processor)
        return processors

    def _process_extensions(self, stream_options: StreamOptions) -> None:
        """Accept the first acceptable offer (the handler may have
        changed or removed processors) and configure the stream for it."""
        request = self._request
        processors = [
            p for p in request.ws_extension_processors or [] if p is not None
        ]
        for processor in reversed(processors):
            if processor.is_active():
                processor.check_consistency_with_other_processors(processors)
        accepted: List[common.ExtensionParameter] = []
        for processor in processors:
            if not processor.is_active() or accepted:
                continue  # one compression extension
            response = processor.get_extension_response()
            if response is None:
                continue
            accepted.append(response)
            processor.setup_stream_options(stream_options)
        request.ws_extensions = accepted or None

    def _check_chosen_protocol(self) -> None:
        request = self._request
        if request.ws_requested_protocols is not None:
            if request.ws_protocol is None:
                raise HandshakeException(
                    'the client offered subprotocols %r and '
                    'do_extra_handshake chose none (set ws_protocol)'
                    % (request.ws_requested_protocols,)
                )
            validate_subprotocol(request.ws_protocol)
        elif request.ws_protocol is not None:
            raise HandshakeException(
                'ws_protocol must stay None when the client offered no '
                'subprotocol'
            )


def check_request_line(request) -> None:
    """RFC 6455 4.1: method GET, HTTP/1.1."""
    if request.method != 'GET':
        raise HandshakeException('method is not GET: %r' % request.method)
    if request.protocol != 'HTTP/1.1':
        raise HandshakeException(
            'version is not HTTP/1.1: %r' % request.protocol
        )


def format_header(name: str, value: str) -> str:
    return '%s: %s\r\n' % (name, value)


class Handshaker(HandshakerBase):
    """pywebsocket3's RFC 6455 handshaker over request.connection."""

    def _transform_header(self, header: str) -> str:
        return header

    def _protocol_rfc(self) -> str:
        return 'RFC 6455'

    def _validate_request(self) -> None:
        request = self._request
        check_request_line(request)
        validate_mandatory_header(
            request, common.UPGRADE_HEADER, common.WEBSOCKET_UPGRADE_TYPE
        )
        connection = get_mandatory_header(request, common.CONNECTION_HEADER)
        if not has_token(connection, common.UPGRADE_CONNECTION_TYPE):
            raise HandshakeException(
                '%s header does not contain "%s"'
                % (common.CONNECTION_HEADER, common.UPGRADE_CONNECTION_TYPE)
            )
        get_mandatory_header(request, common.HOST_HEADER)

    def _set_accept(self) -> None:
        key = get_mandatory_header(
            self._request, common.SEC_WEBSOCKET_KEY_HEADER
        )
        self._request._accept = compute_accept(_validated_key(key))

    def _send_handshake(self) -> None:
        request = self._request
        lines = [
            'HTTP/1.1 101 Switching Protocols\r\n',
            format_header(
                common.UPGRADE_HEADER, common.WEBSOCKET_UPGRADE_TYPE
            ),
            format_header(
                common.CONNECTION_HEADER, common.UPGRADE_CONNECTION_TYPE
            ),
            format_header(
                common.SEC_WEBSOCKET_ACCEPT_HEADER,
                request._accept.decode('ascii'),
            ),
        ]
        if request.ws_protocol is not None:
            lines.append(
                format_header(
                    common.SEC_WEBSOCKET_PROTOCOL_HEADER, request.ws_protocol
                )
            )
        if request.ws_extensions:
            lines.append(
                format_header(
                    common.SEC_WEBSOCKET_EXTENSIONS_HEADER,
                    common.format_extensions(request.ws_extensions),
                )
            )
        for name, value in request.extra_headers:
            lines.append(format_header(name, value))
        lines.append('\r\n')
        request.connection.write(''.join(lines).encode('utf-8'))


def _validated_key(key: str) -> bytes:
    """The Sec-WebSocket-Key as bytes, if it is one base64 value of 16
    bytes in canonical form (RFC 4648: zero padding bits)."""
    if ',' in key:
        raise HandshakeException(
            'more than one %s: %r' % (common.SEC_WEBSOCKET_KEY_HEADER, key)
        )
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b''
    if len(decoded) != 16 or base64.b64encode(decoded).decode() != key:
        raise HandshakeException(
            'invalid %s: %r' % (common.SEC_WEBSOCKET_KEY_HEADER, key)
        )
    return key.encode('ascii')


def do_handshake(request, dispatcher) -> None:
    """pywebsocket3's handshake.do_handshake: an RFC 6455 handshake over
    request.connection (HandshakeException carries the HTTP status)."""
    Handshaker(request, dispatcher).do_handshake()
