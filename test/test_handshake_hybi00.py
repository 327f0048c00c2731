"""The draft-76 (hybi-00) opening handshake."""

import hashlib
import struct

import pytest

from core_helpers import (
    DRAFT76_KEY1,
    DRAFT76_KEY2,
    DRAFT76_KEY3,
    DRAFT76_RESPONSE,
    draft76_headers,
    parse_response,
)
from mock import MockRequest
from mod_pywebsocket import common
from mod_pywebsocket.common import HandshakeException
from mod_pywebsocket.handshake import Hybi00Handshaker, select_handshaker
from mod_pywebsocket.handshake.hybi00 import (
    compute_challenge,
    compute_response,
    key_number,
)

KEY1, KEY2 = DRAFT76_KEY1, DRAFT76_KEY2
KEY3, RESPONSE = DRAFT76_KEY3, DRAFT76_RESPONSE


def run(uri='/demo', key3=KEY3, is_https=False, choose=None, **overrides):
    request = MockRequest(uri, draft76_headers(**overrides), is_https=is_https)
    handshaker = select_handshaker(request)
    assert isinstance(handshaker, Hybi00Handshaker)
    handshaker.validate()
    assert handshaker.body_length == 8
    handshaker.accept_body(key3)
    if choose:
        choose(request)
    return request, parse_response(handshaker.build_response())


def failure(**overrides):
    with pytest.raises(HandshakeException) as info:
        run(**overrides)
    return info.value


def test_draft76_section_1_3_vector():
    assert compute_response(KEY1, KEY2, KEY3) == RESPONSE


def test_key_numbers_of_the_example():
    # 4146546015 / 5 spaces and 1299853100 / 5 spaces (draft-76 §1.3).
    assert key_number(KEY1) == 829309203
    assert key_number(KEY2) == 259970620
    assert (
        compute_challenge(KEY1, KEY2, KEY3)
        == struct.pack('!II', 829309203, 259970620) + KEY3
    )


def test_full_handshake_with_the_draft_example():
    request, (status, headers, body) = run()
    assert status == 'HTTP/1.1 101 WebSocket Protocol Handshake'
    assert headers == [
        ('Upgrade', 'WebSocket'),
        ('Connection', 'Upgrade'),
        ('Sec-WebSocket-Location', 'ws://example.com/demo'),
        ('Sec-WebSocket-Origin', 'http://example.com'),
        ('Sec-WebSocket-Protocol', 'sample'),
    ]
    assert body == RESPONSE
    assert request.ws_version == common.VERSION_HYBI00
    assert request.ws_origin == 'http://example.com'
    assert request.ws_location == 'ws://example.com/demo'
    assert request.ws_protocol == 'sample'
    assert request.ws_requested_protocols == ['sample']
    assert request.ws_challenge == compute_challenge(KEY1, KEY2, KEY3)
    assert (
        request.ws_challenge_md5
        == hashlib.md5(request.ws_challenge).digest()
        == RESPONSE
    )


def test_secure_location_and_query():
    request, (_, headers, _) = run(
        uri='/demo?a=b', is_https=True, sec_websocket_protocol=None
    )
    assert ('Sec-WebSocket-Location', 'wss://example.com/demo?a=b') in headers
    assert 'Sec-WebSocket-Protocol' not in dict(headers)
    assert request.ws_protocol is None
    assert request.ws_requested_protocols is None


def test_extra_headers_follow_the_fixed_ones():
    def choose(request):
        request.extra_headers.append(('X-Extra', 'yes'))

    _, (_, headers, body) = run(choose=choose)
    assert headers[-1] == ('X-Extra', 'yes')
    assert body == RESPONSE


def test_upgrade_compared_case_insensitively():
    _, (status, _, _) = run(upgrade='websocket')
    assert status.startswith('HTTP/1.1 101')


@pytest.mark.parametrize(
    'key',
    [
        '12345',  # no spaces
        'no digits at all',  # no digits
        '1 2 3',  # 123 / 2 spaces: not integral
        '9999999999 9',  # 99999999999 / 1 space: over 32 bits
    ],
)
def test_bad_key_number(key):
    with pytest.raises(HandshakeException) as info:
        key_number(key)
    assert info.value.status == 400


@pytest.mark.parametrize('which', ['sec_websocket_key1', 'sec_websocket_key2'])
def test_bad_key_in_request_is_400(which):
    assert failure(**{which: '1 2 3'}).status == 400


def test_missing_key2_is_400():
    request = MockRequest('/demo', draft76_headers(sec_websocket_key2=None))
    with pytest.raises(HandshakeException) as info:
        select_handshaker(request).validate()
    assert info.value.status == 400


@pytest.mark.parametrize(
    'overrides',
    [
        {'origin': None},
        {'host': None},
        {'upgrade': 'websockets'},
        {'upgrade': None},
        {'connection': 'keep-alive'},
        {'connection': None},
        {'sec_websocket_protocol': 'bad\x01protocol'},
        {'sec_websocket_protocol': 'caf\u00e9'},
        {'sec_websocket_protocol': ''},
    ],
)
def test_invalid_requests_are_400(overrides):
    assert failure(**overrides).status == 400


def test_post_is_405():
    request = MockRequest('/demo', draft76_headers(), method='POST')
    with pytest.raises(HandshakeException) as info:
        select_handshaker(request).validate()
    assert info.value.status == 405


def test_short_key3_is_400():
    assert failure(key3=b'1234567').status == 400


def test_response_without_key3_fails():
    request = MockRequest('/demo', draft76_headers())
    handshaker = select_handshaker(request)
    handshaker.validate()
    with pytest.raises(HandshakeException):
        handshaker.build_response()


def test_key1_alone_selects_draft76():
    request = MockRequest('/demo', draft76_headers(sec_websocket_key2=None))
    assert isinstance(select_handshaker(request), Hybi00Handshaker)
