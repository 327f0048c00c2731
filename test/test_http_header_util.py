"""http_header_util: token lists, the extensions grammar, Headers and HTTP
head parsing."""

import pytest

from mod_pywebsocket.common import ExtensionParameter
from mod_pywebsocket.http_header_util import (
    Headers,
    find_head_end,
    format_extension,
    format_extensions,
    has_token,
    is_token,
    parse_extensions,
    parse_header_lines,
    parse_request_head,
    parse_response_head,
    parse_token_list,
)


class TestTokens:
    @pytest.mark.parametrize(
        'value', ['chat', 'x-y.z', "!#$%&'*+-.^_`|~09AZaz"]
    )
    def test_is_token_accepts_tchars(self, value):
        assert is_token(value)

    @pytest.mark.parametrize(
        'value',
        [
            '',
            'a b',
            'a,b',
            'a;b',
            'a"b',
            'a=b',
            'é',
            'a/b',
            'a\tb',
            '(x)',
            'a\x7f',
        ],
    )
    def test_is_token_refuses_separators_and_non_ascii(self, value):
        assert not is_token(value)

    def test_parse_token_list_splits_and_trims(self):
        assert parse_token_list('chat, superchat ,\tv2') == [
            'chat',
            'superchat',
            'v2',
        ]

    def test_parse_token_list_skips_empty_elements(self):
        assert parse_token_list(',, chat ,,') == ['chat']
        assert parse_token_list('') == []

    @pytest.mark.parametrize(
        'value', ['chat, super chat', 'a;b', '"q"', 'ch\u00e4t']
    )
    def test_parse_token_list_refuses_non_tokens(self, value):
        with pytest.raises(ValueError):
            parse_token_list(value)

    def test_has_token_is_case_insensitive_and_among_others(self):
        assert has_token('keep-alive, Upgrade', 'upgrade')
        assert has_token('UPGRADE', 'upgrade')
        assert has_token('websocket', 'WebSocket')

    def test_has_token_needs_a_whole_element(self):
        assert not has_token('upgrades', 'upgrade')
        assert not has_token('keep-alive', 'upgrade')
        assert not has_token(None, 'upgrade')
        assert not has_token('', 'upgrade')


class TestParseExtensions:
    def test_single_extension_without_parameters(self):
        result = parse_extensions('permessage-deflate')
        assert len(result) == 1
        assert result[0].name() == 'permessage-deflate'
        assert result[0].get_parameters() == []

    def test_parameters_with_and_without_values_in_order(self):
        [ext] = parse_extensions(
            'permessage-deflate; client_max_window_bits; '
            'server_max_window_bits=10'
        )
        assert ext.get_parameters() == [
            ('client_max_window_bits', None),
            ('server_max_window_bits', '10'),
        ]
        assert ext.get_parameter_names() == [
            'client_max_window_bits',
            'server_max_window_bits',
        ]
        assert ext.has_parameter('server_max_window_bits')
        assert not ext.has_parameter('nope')
        assert ext.get_parameter_value('server_max_window_bits') == '10'
        assert ext.get_parameter_value('nope') is None

    def test_quoted_value_is_unquoted(self):
        [ext] = parse_extensions('foo; bar="10"; baz = "a\\bc"')
        assert ext.get_parameters() == [('bar', '10'), ('baz', 'abc')]

    def test_several_extensions_and_spaces(self):
        result = parse_extensions(' foo ;a=1 , bar,\tbaz; q ')
        assert [e.name() for e in result] == ['foo', 'bar', 'baz']
        assert result[0].get_parameters() == [('a', '1')]
        assert result[2].get_parameters() == [('q', None)]

    def test_empty_list_elements_are_allowed(self):
        assert [e.name() for e in parse_extensions(', foo,, bar ,')] == [
            'foo',
            'bar',
        ]

    @pytest.mark.parametrize(
        'value',
        [
            '',
            ' ',
            ',',
            ' , ,',  # no extension at all
            'foo;',
            'foo; ',
            'foo;=1',  # missing parameter name
            'foo; a=',
            'foo; a= ,bar',  # missing value
            'foo bar',  # missing comma
            'foo; a="unterminated',
            'foo; a="trailing backslash\\',
            'foo; a="not a token"',  # quoted value not a token
            'foo; a=""',
            'foo; a="x\x01"',  # control character
            '"foo"',
            'fo\u00e9',
            'foo; a=1 b',
        ],
    )
    def test_syntax_errors_raise_value_error(self, value):
        with pytest.raises(ValueError):
            parse_extensions(value)

    def test_format_round_trip(self):
        text = (
            'permessage-deflate; server_no_context_takeover; '
            'client_max_window_bits=10, x-foo'
        )
        parsed = parse_extensions(text)
        assert format_extensions(parsed) == text
        assert parse_extensions(format_extensions(parsed)) == parsed

    def test_format_extension(self):
        ext = ExtensionParameter('permessage-deflate')
        assert format_extension(ext) == 'permessage-deflate'
        ext.add_parameter('server_max_window_bits', '9')
        ext.add_parameter('client_no_context_takeover', None)
        assert format_extension(ext) == (
            'permessage-deflate; server_max_window_bits=9; '
            'client_no_context_takeover'
        )

    def test_extension_parameter_equality_and_repr(self):
        a = ExtensionParameter('x')
        b = ExtensionParameter('x')
        assert a == b
        a.add_parameter('p', None)
        assert a != b
        assert a != 'x'
        assert 'x' in repr(a) and 'p' in repr(a)


class TestHeaders:
    def test_lookup_is_case_insensitive(self):
        headers = Headers([('Sec-WebSocket-Key', 'abc')])
        assert headers['sec-websocket-key'] == 'abc'
        assert headers.get('SEC-WEBSOCKET-KEY') == 'abc'
        assert 'sec-WebSocket-key' in headers
        assert 42 not in headers

    def test_missing_header(self):
        headers = Headers()
        with pytest.raises(KeyError):
            headers['Host']
        assert headers.get('Host') is None
        assert headers.get('Host', 'x') == 'x'
        assert headers.joined('Host') is None
        assert headers.get_all('Host') == []
        assert len(headers) == 0

    def test_repeated_headers(self):
        headers = Headers([('X', '1'), ('Y', 'y'), ('x', '2')])
        assert headers['X'] == '1'
        assert headers.get_all('x') == ['1', '2']
        assert headers.joined('X') == '1, 2'
        assert headers.keys() == ['X', 'Y', 'x']
        assert list(headers) == ['X', 'Y', 'x']
        assert headers.items() == [('X', '1'), ('Y', 'y'), ('x', '2')]
        assert headers.values() == ['1', 'y', '2']
        assert len(headers) == 3

    def test_setitem_replaces_every_value(self):
        headers = Headers([('X', '1'), ('Y', 'y'), ('x', '2')])
        headers['X'] = '3'
        assert headers.get_all('X') == ['3']
        assert headers.items() == [('Y', 'y'), ('X', '3')]

    def test_delitem(self):
        headers = Headers([('X', '1'), ('Y', 'y')])
        del headers['x']
        assert 'X' not in headers
        assert headers.items() == [('Y', 'y')]
        del headers['missing']  # no error, like mod_python
        assert len(headers) == 1
        assert 'Y' in repr(headers)


class TestHeadParsing:
    def test_header_lines_with_folding(self):
        headers = parse_header_lines(
            ['Host: a', 'X-Long: one', ' two', '\tthree', 'Y:z']
        )
        assert headers['Host'] == 'a'
        assert headers['X-Long'] == 'one two three'
        assert headers['y'] == 'z'

    @pytest.mark.parametrize(
        'lines',
        [
            [' leading continuation'],
            ['no colon here'],
            ['bad name: x'],
            [': empty name'],
        ],
    )
    def test_malformed_header_lines(self, lines):
        with pytest.raises(ValueError):
            parse_header_lines(lines)

    def test_request_head(self):
        method, target, version, headers = parse_request_head(
            b'GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\n'
            b'Upgrade: websocket\r\n\r\n'
        )
        assert (method, target, version) == ('GET', '/chat?x=1', 'HTTP/1.1')
        assert headers['upgrade'] == 'websocket'

    def test_request_head_without_final_blank_line(self):
        method, target, version, headers = parse_request_head(
            b'GET / HTTP/1.0\r\nHost: h'
        )
        assert (method, target, version) == ('GET', '/', 'HTTP/1.0')
        assert headers['Host'] == 'h'

    @pytest.mark.parametrize(
        'head',
        [
            b'GET /\r\n\r\n',
            b'GET  HTTP/1.1\r\n\r\n',
            b'G(T / HTTP/1.1\r\n\r\n',
            b'GET / HTTP/one\r\n\r\n',
            b'GET / HTTP/1.1 extra\r\n\r\n',
            b'GET / HTTP/1.1\r\nbroken\r\n\r\n',
        ],
    )
    def test_malformed_request_head(self, head):
        with pytest.raises(ValueError):
            parse_request_head(head)

    def test_response_head(self):
        status, line, headers = parse_response_head(
            b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'
        )
        assert status == 101
        assert line == 'HTTP/1.1 101 Switching Protocols'
        assert headers['Upgrade'] == 'websocket'
        assert parse_response_head(b'HTTP/1.1 404\r\n\r\n')[0] == 404

    @pytest.mark.parametrize(
        'head',
        [
            b'HTTP/1.1 1011 x\r\n\r\n',
            b'ICY 200 OK\r\n\r\n',
            b'HTTP/1.1 200 OK\r\nbad\r\n\r\n',
        ],
    )
    def test_malformed_response_head(self, head):
        with pytest.raises(ValueError):
            parse_response_head(head)

    def test_find_head_end(self):
        assert find_head_end(b'GET / HTTP/1.1\r\n\r\nbody') == 18
        assert find_head_end(b'GET / HTTP/1.1\r\n') == -1
