"""The RFC 6455 / hybi-08 opening handshake (sans-I/O)."""

import pytest

from core_helpers import (
    RFC6455_ACCEPT,
    RFC6455_KEY,
    hybi_headers,
    parse_response,
)
from mock import MockRequest
from mod_pywebsocket import common
from mod_pywebsocket.common import HandshakeException, VersionException
from mod_pywebsocket.extensions import DeflateSettings
from mod_pywebsocket.handshake import (
    HybiHandshaker,
    is_websocket_upgrade,
    select_handshaker,
)
from mod_pywebsocket.handshake.base import (
    Handshaker,
    format_error_response,
    get_header,
    resource_of,
)
from mod_pywebsocket.handshake.hybi import compute_accept, parse_version


def handshake(uri='/chat', choose=None, deflate_settings=None, **overrides):
    """Validate a request, let `choose(request)` act as the handler's
    extra handshake, and return (request, parsed response)."""
    request = MockRequest(uri, hybi_headers(**overrides))
    handshaker = select_handshaker(request, False, deflate_settings)
    handshaker.validate()
    if choose:
        choose(request)
    response = parse_response(handshaker.build_response())
    request.active_processors = handshaker.active_processors
    return request, response


def failure(uri='/chat', choose=None, **overrides):
    with pytest.raises(HandshakeException) as info:
        handshake(uri, choose, **overrides)
    return info.value


class TestAcceptKey:
    def test_rfc6455_section_1_3_vector(self):
        assert compute_accept(RFC6455_KEY.encode()) == RFC6455_ACCEPT.encode()

    def test_full_handshake_answers_with_the_rfc_accept(self):
        request, (status, headers, body) = handshake()
        assert status == 'HTTP/1.1 101 Switching Protocols'
        assert headers == [
            ('Upgrade', 'websocket'),
            ('Connection', 'Upgrade'),
            ('Sec-WebSocket-Accept', RFC6455_ACCEPT),
        ]
        assert body == b''


class TestRequestAttributes:
    def test_version_13(self):
        request, _ = handshake('/chat?room=1')
        assert request.ws_version == common.VERSION_HYBI13
        assert request.ws_resource == '/chat?room=1'
        assert request.ws_origin == 'http://example.com'
        assert request.ws_protocol is None
        assert request.ws_requested_protocols is None
        assert request.ws_extensions is None
        assert request.ws_requested_extensions is None
        assert request.ws_challenge is None
        assert request.ws_close_code is None
        assert request.extra_headers == []

    def test_version_8_takes_origin_from_sec_websocket_origin(self):
        request, (status, _, _) = handshake(
            sec_websocket_version='8',
            origin=None,
            sec_websocket_origin='http://old.example.com',
        )
        assert status.startswith('HTTP/1.1 101')
        assert request.ws_version == common.VERSION_HYBI08
        assert request.ws_origin == 'http://old.example.com'

    def test_version_13_ignores_sec_websocket_origin(self):
        request, _ = handshake(
            origin=None, sec_websocket_origin='http://x.example'
        )
        assert request.ws_origin is None

    def test_absolute_form_target(self):
        request = MockRequest(
            'http://server.example.com/chat?x=1', hybi_headers()
        )
        select_handshaker(request).validate()
        assert request.ws_resource == '/chat?x=1'
        request = MockRequest('ws://server.example.com', hybi_headers())
        select_handshaker(request).validate()
        assert request.ws_resource == '/'

    def test_resource_falls_back_to_uri(self):
        request = MockRequest('/plain')
        request.unparsed_uri = None
        assert resource_of(request) == '/plain'

    def test_existing_extra_headers_are_kept(self):
        request = MockRequest('/chat', hybi_headers())
        request.extra_headers = [('X-Pre', '1')]
        handshaker = select_handshaker(request)
        handshaker.validate()
        _, headers, _ = parse_response(handshaker.build_response())
        assert headers[-1] == ('X-Pre', '1')


class TestVersion:
    @pytest.mark.parametrize(
        'value',
        ['12', '7', '0', '14', 'abc', '', '13, 8', '\u0661\u0663', '-13'],
    )
    def test_unsupported_version_is_400_with_supported_list(self, value):
        error = failure(sec_websocket_version=value)
        assert isinstance(error, VersionException)
        assert error.status == 400
        assert ('Sec-WebSocket-Version', '13, 8') in error.headers

    def test_version_with_spaces_is_accepted(self):
        request, _ = handshake(sec_websocket_version=' 13 ')
        assert request.ws_version == 13

    def test_parse_version(self):
        assert parse_version('13') == 13
        assert parse_version('8') == 8
        with pytest.raises(VersionException):
            parse_version('9')

    def test_no_version_header_and_no_draft_is_400(self):
        request = MockRequest(
            '/chat', hybi_headers(sec_websocket_version=None)
        )
        with pytest.raises(VersionException) as info:
            select_handshaker(request, allow_draft75=False)
        assert info.value.status == 400
        assert info.value.headers == [('Sec-WebSocket-Version', '13, 8')]


class TestRequestValidation:
    def test_method_must_be_get(self):
        request = MockRequest('/chat', hybi_headers(), method='POST')
        with pytest.raises(HandshakeException) as info:
            select_handshaker(request).validate()
        assert info.value.status == 405
        assert ('Allow', 'GET') in info.value.headers

    def test_missing_host_is_400(self):
        assert failure(host=None).status == 400

    @pytest.mark.parametrize('protocol', ['HTTP/1.0', 'HTTP/0.9'])
    def test_http_before_1_1_is_400(self, protocol):
        request = MockRequest('/chat', hybi_headers(), protocol=protocol)
        with pytest.raises(HandshakeException) as info:
            select_handshaker(request).validate()
        assert info.value.status == 400

    @pytest.mark.parametrize(
        'value', ['websocket', 'WebSocket', 'WEBSOCKET', 'foo, websocket']
    )
    def test_upgrade_is_case_insensitive(self, value):
        _, (status, _, _) = handshake(upgrade=value)
        assert status.startswith('HTTP/1.1 101')

    @pytest.mark.parametrize('value', [None, 'h2c', 'websockets', ''])
    def test_bad_upgrade_is_400(self, value):
        assert failure(upgrade=value).status == 400

    @pytest.mark.parametrize(
        'value',
        ['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade, keep-alive'],
    )
    def test_connection_contains_upgrade_token(self, value):
        _, (status, _, _) = handshake(connection=value)
        assert status.startswith('HTTP/1.1 101')

    @pytest.mark.parametrize('value', [None, 'keep-alive', 'Upgraded', ''])
    def test_connection_without_upgrade_is_400(self, value):
        assert failure(connection=value).status == 400

    @pytest.mark.parametrize(
        'value',
        [
            None,  # missing
            'not base64!',  # not base64
            'AAAAAAAAAAAAAAAAAAAA',  # 15 bytes
            'AAAAAAAAAAAAAAAAAAAAAAAAAA==',  # 19 bytes
            RFC6455_KEY + ', ' + RFC6455_KEY,  # two keys
        ],
    )
    def test_bad_key_is_400(self, value):
        assert failure(sec_websocket_key=value).status == 400

    @pytest.mark.parametrize(
        'value',
        [
            'AAAAAAAAAAAAAAAAAAAAAB==',  # pad bits set: still 16 bytes
            ' dGhlIHNhbXBsZSBub25jZQ== ',  # spaces around
        ],
    )
    def test_unusual_but_valid_keys_are_accepted(self, value):
        _, (status, headers, _) = handshake(sec_websocket_key=value)
        assert status.startswith('HTTP/1.1 101')
        accept = compute_accept(value.strip().encode('ascii')).decode()
        assert ('Sec-WebSocket-Accept', accept) in headers

    @pytest.mark.parametrize(
        'value',
        [
            'dGhlIHNhbXBsZSBub25jZQ!=',  # a character outside base64
            'dGhlIHNhbXBsZSBub25j=Q==',  # padding inside
            'dGhlIHNhbXBsZSBub25jZ\u00e9==',  # not ASCII
        ],
    )
    def test_keys_of_24_characters_that_are_not_base64_are_400(self, value):
        assert failure(sec_websocket_key=value).status == 400

    def test_repeated_key_headers_are_400(self):
        headers = hybi_headers() + [('Sec-WebSocket-Key', RFC6455_KEY)]
        request = MockRequest('/chat', headers)
        with pytest.raises(HandshakeException) as info:
            select_handshaker(request).validate()
        assert info.value.status == 400


class TestSubprotocols:
    def test_requested_protocols_are_parsed(self):
        request, (_, headers, _) = handshake(
            sec_websocket_protocol='chat, superchat'
        )
        assert request.ws_requested_protocols == ['chat', 'superchat']
        assert request.ws_protocol is None
        assert 'Sec-WebSocket-Protocol' not in dict(headers)

    def test_repeated_protocol_headers_are_joined(self):
        headers = hybi_headers(sec_websocket_protocol='chat') + [
            ('Sec-WebSocket-Protocol', 'superchat')
        ]
        request = MockRequest('/chat', headers)
        select_handshaker(request).validate()
        assert request.ws_requested_protocols == ['chat', 'superchat']

    def test_handler_choice_is_answered(self):
        def choose(request):
            request.ws_protocol = request.ws_requested_protocols[1]

        request, (_, headers, _) = handshake(
            sec_websocket_protocol='chat, superchat', choose=choose
        )
        assert ('Sec-WebSocket-Protocol', 'superchat') in headers

    def test_choice_not_offered_fails_the_handshake(self):
        def choose(request):
            request.ws_protocol = 'other'

        error = failure(sec_websocket_protocol='chat', choose=choose)
        assert error.status == 500

    def test_choice_when_nothing_offered_fails_the_handshake(self):
        def choose(request):
            request.ws_protocol = 'chat'

        assert failure(choose=choose).status == 500

    @pytest.mark.parametrize('value', ['chat, super chat', 'a;b', ' , ', ''])
    def test_invalid_protocol_header_is_400(self, value):
        assert failure(sec_websocket_protocol=value).status == 400


class TestExtensionsHeader:
    def test_requested_extensions_are_parsed(self):
        request, (_, headers, _) = handshake(
            sec_websocket_extensions='x-foo; a=1, x-bar'
        )
        assert [e.name() for e in request.ws_requested_extensions] == [
            'x-foo',
            'x-bar',
        ]
        assert request.ws_extensions is None  # unknown: declined
        assert 'Sec-WebSocket-Extensions' not in dict(headers)

    def test_permessage_deflate_is_accepted(self):
        request, (_, headers, _) = handshake(
            sec_websocket_extensions='permessage-deflate; '
            'client_max_window_bits'
        )
        assert ('Sec-WebSocket-Extensions', 'permessage-deflate') in headers
        assert [e.name() for e in request.ws_extensions] == [
            'permessage-deflate'
        ]
        assert len(request.active_processors) == 1

    def test_permessage_deflate_disabled_by_settings(self):
        request, (_, headers, _) = handshake(
            sec_websocket_extensions='permessage-deflate',
            deflate_settings=DeflateSettings(enabled=False),
        )
        assert request.ws_extensions is None
        assert 'Sec-WebSocket-Extensions' not in dict(headers)

    def test_handler_can_remove_processors(self):
        def choose(request):
            request.ws_extension_processors = [None]

        request, (_, headers, _) = handshake(
            sec_websocket_extensions='permessage-deflate', choose=choose
        )
        assert request.ws_extensions is None
        assert request.active_processors == []

    def test_handler_can_deactivate_processors(self):
        def choose(request):
            request.ws_extension_processors[0].set_active(False)

        request, (_, headers, _) = handshake(
            sec_websocket_extensions='permessage-deflate', choose=choose
        )
        assert 'Sec-WebSocket-Extensions' not in dict(headers)

    @pytest.mark.parametrize(
        'value', ['permessage-deflate;', 'a b', '"x"', 'x; a="b c"']
    )
    def test_invalid_extensions_header_is_400(self, value):
        assert failure(sec_websocket_extensions=value).status == 400


class TestResponse:
    def test_extra_headers_go_out_verbatim(self):
        def choose(request):
            request.extra_headers.append(('Set-Cookie', 'a=b; Path=/'))
            request.extra_headers.append(('X-Odd', '  spaced  '))

        _, (_, headers, _) = handshake(choose=choose)
        assert headers[-2:] == [
            ('Set-Cookie', 'a=b; Path=/'),
            ('X-Odd', '  spaced  '),
        ]

    def test_format_error_response(self):
        data = format_error_response(
            400,
            'Bad Request',
            [('Sec-WebSocket-Version', '13, 8')],
            'bad version \u00e9',
        )
        status, headers, body = parse_response(data)
        assert status == 'HTTP/1.1 400 Bad Request'
        assert ('Sec-WebSocket-Version', '13, 8') in headers
        assert ('Connection', 'close') in headers
        assert ('Content-Length', str(len(body))) in headers
        assert body == 'bad version \u00e9'.encode('utf-8')


class TestHelpers:
    def test_is_websocket_upgrade(self):
        assert is_websocket_upgrade(MockRequest('/', hybi_headers()))
        assert is_websocket_upgrade(MockRequest('/', {'Upgrade': 'WebSocket'}))
        assert not is_websocket_upgrade(MockRequest('/', {}))
        assert not is_websocket_upgrade(MockRequest('/', {'Upgrade': 'h2c'}))

    def test_get_header_with_a_mod_python_like_table(self):
        class Table(dict):
            pass

        request = MockRequest('/')
        request.headers_in = Table({'X': ['1', '2'], 'Y': 'y'})
        assert get_header(request, 'X') == '1, 2'
        assert get_header(request, 'Y') == 'y'
        assert get_header(request, 'Z') is None

    def test_base_handshaker_is_abstract(self):
        handshaker = Handshaker(MockRequest('/'))
        with pytest.raises(NotImplementedError):
            handshaker.validate()
        with pytest.raises(NotImplementedError):
            handshaker.build_response()
        with pytest.raises(HandshakeException):
            handshaker.accept_body(b'12345678')

    def test_hybi_handshaker_class(self):
        request = MockRequest('/', hybi_headers())
        assert isinstance(select_handshaker(request), HybiHandshaker)
