"""The draft-75 opening handshake (only with allow_draft75)."""

import pytest

from mock import MockRequest
from mod_pywebsocket import common
from mod_pywebsocket.common import HandshakeException, VersionException
from mod_pywebsocket.handshake import Hixie75Handshaker, select_handshaker


def draft75_headers(**overrides):
    headers = {
        'Upgrade': 'WebSocket',
        'Connection': 'Upgrade',
        'Host': 'example.com',
        'Origin': 'http://example.com',
        'WebSocket-Protocol': 'sample',
    }
    for name, value in overrides.items():
        name = '-'.join(p.capitalize() for p in name.split('_')).replace(
            'Websocket', 'WebSocket'
        )
        headers.pop(name, None)
        if value is not None:
            headers[name] = value
    return list(headers.items())


def run(uri='/demo', is_https=False, choose=None, **overrides):
    request = MockRequest(uri, draft75_headers(**overrides), is_https=is_https)
    handshaker = select_handshaker(request, allow_draft75=True)
    assert isinstance(handshaker, Hixie75Handshaker)
    assert handshaker.body_length == 0
    handshaker.validate()
    if choose:
        choose(request)
    return request, handshaker.build_response()


def test_exact_response():
    request, response = run()
    assert response == (
        b'HTTP/1.1 101 Web Socket Protocol Handshake\r\n'
        b'Upgrade: WebSocket\r\n'
        b'Connection: Upgrade\r\n'
        b'WebSocket-Origin: http://example.com\r\n'
        b'WebSocket-Location: ws://example.com/demo\r\n'
        b'WebSocket-Protocol: sample\r\n'
        b'\r\n'
    )
    assert request.ws_version == common.VERSION_HIXIE75
    assert request.ws_protocol == 'sample'
    assert request.ws_requested_protocols == ['sample']
    assert request.ws_origin == 'http://example.com'


def test_secure_without_protocol_with_extra_headers():
    def choose(request):
        request.extra_headers.append(('X-Extra', '1'))

    request, response = run(
        uri='/demo?q', is_https=True, websocket_protocol=None, choose=choose
    )
    assert response == (
        b'HTTP/1.1 101 Web Socket Protocol Handshake\r\n'
        b'Upgrade: WebSocket\r\n'
        b'Connection: Upgrade\r\n'
        b'WebSocket-Origin: http://example.com\r\n'
        b'WebSocket-Location: wss://example.com/demo?q\r\n'
        b'X-Extra: 1\r\n'
        b'\r\n'
    )
    assert request.ws_protocol is None
    assert request.ws_requested_protocols is None


def test_refused_unless_allowed():
    request = MockRequest('/demo', draft75_headers())
    with pytest.raises(VersionException) as info:
        select_handshaker(request, allow_draft75=False)
    assert info.value.status == 400
    assert info.value.headers == [('Sec-WebSocket-Version', '13, 8')]


@pytest.mark.parametrize(
    'overrides',
    [
        {'upgrade': 'websocket'},  # the draft wants the exact value
        {'upgrade': None},
        {'connection': 'upgrade'},
        {'connection': 'keep-alive, Upgrade'},
        {'connection': None},
        {'origin': None},
        {'host': None},
    ],
)
def test_invalid_requests_are_400(overrides):
    with pytest.raises(HandshakeException) as info:
        run(**overrides)
    assert info.value.status == 400


def test_body_is_refused():
    request = MockRequest('/demo', draft75_headers())
    handshaker = select_handshaker(request, allow_draft75=True)
    with pytest.raises(HandshakeException):
        handshaker.accept_body(b'x')
