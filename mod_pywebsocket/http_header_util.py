"""HTTP header helpers: token lists, the Sec-WebSocket-Extensions grammar,
a case-insensitive header table and request/response head parsing.

Everything here is sans-I/O: strings and bytes in, values or ValueError out.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, List, Optional, Tuple

from mod_pywebsocket.common import ExtensionParameter

_SEPARATORS = set('()<>@,;:\\"/[]?={} \t')
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LWS = ' \t'
# Control characters (all but HTAB) are not allowed in field values or the
# request line (RFC 9110 5.5): a bare CR or LF there would become a line.
_CONTROL = re.compile('[\x00-\x08\x0a-\x1f\x7f]')


def is_token(value: str) -> bool:
    """Whether `value` is a non-empty RFC 2616 token."""
    return _TOKEN_RE.fullmatch(value) is not None


def parse_token_list(value: str) -> List[str]:
    """Split a comma-separated list of tokens (RFC 2616 #rule); empty
    elements are skipped. Raises ValueError on anything but tokens."""
    result = []
    for element in value.split(','):
        element = element.strip(_LWS)
        if not element:
            continue
        if not is_token(element):
            raise ValueError('not a token: %r' % element)
        result.append(element)
    return result


def has_token(value: Optional[str], token: str) -> bool:
    """Whether the comma-separated header `value` contains `token`
    (compared case-insensitively); malformed elements are ignored."""
    if not value:
        return False
    token = token.lower()
    if value.lower() == token:  # (the usual header: the token alone)
        return True
    return any(
        element.strip(_LWS).lower() == token for element in value.split(',')
    )


class _Scanner:
    """A cursor over a header value for the extensions grammar."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_spaces(self) -> None:
        # LWS of RFC 2616 (RFC 6455 9.1's grammar): SP, HT, and a CRLF
        # that SP or HT follows (a folded line).
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in _LWS:
                self.pos += 1
            elif text.startswith('\r\n', self.pos) and text[
                self.pos + 2 : self.pos + 3
            ] in (' ', '\t'):
                self.pos += 3
            else:
                break

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ''

    def consume(self, char: str) -> bool:
        self.skip_spaces()
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def token(self) -> str:
        self.skip_spaces()
        match = _TOKEN_RE.match(self.text, self.pos)
        if match is None:
            raise ValueError(
                'expected a token at position %d of %r' % (self.pos, self.text)
            )
        self.pos = match.end()
        return match.group(0)

    def quoted_string(self) -> str:
        # Caller has seen the opening quote.
        self.pos += 1
        chars: List[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return ''.join(chars)
            if char == '\\':
                if self.pos >= len(self.text):
                    break
                char = self.text[self.pos]
                self.pos += 1
            elif ord(char) < 0x20 and char != '\t':
                raise ValueError('control character in quoted string')
            chars.append(char)
        raise ValueError('unterminated quoted string in %r' % self.text)

    def at_end(self) -> bool:
        self.skip_spaces()
        return self.pos >= len(self.text)


def parse_extensions(value: str) -> List[ExtensionParameter]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 section 9.1).

    A quoted parameter value must unquote to a token, as the RFC requires.
    Raises ValueError on any syntax error.
    """
    scanner = _Scanner(value)
    result: List[ExtensionParameter] = []
    while True:
        if scanner.consume(','):  # empty list elements are allowed
            continue
        if scanner.at_end():
            break
        extension = ExtensionParameter(scanner.token())
        while scanner.consume(';'):
            name = scanner.token()
            param_value: Optional[str] = None
            if scanner.consume('='):
                scanner.skip_spaces()
                if scanner.peek() == '"':
                    param_value = scanner.quoted_string()
                    if not is_token(param_value):
                        raise ValueError(
                            'quoted parameter value %r is not '
                            'a token' % param_value
                        )
                else:
                    param_value = scanner.token()
            extension.add_parameter(name, param_value)
        result.append(extension)
        if scanner.at_end():
            break
        if not scanner.consume(','):
            raise ValueError(
                'expected "," at position %d of %r' % (scanner.pos, value)
            )
    if not result:
        raise ValueError('empty extension list')
    return result


def format_extension(extension: ExtensionParameter) -> str:
    """One extension as it goes into a Sec-WebSocket-Extensions header."""
    parts = [extension.name()]
    for name, value in extension.get_parameters():
        parts.append(name if value is None else '%s=%s' % (name, value))
    return '; '.join(parts)


def format_extensions(extensions: List[ExtensionParameter]) -> str:
    """A whole Sec-WebSocket-Extensions header value."""
    return ', '.join(format_extension(e) for e in extensions)


class Headers:
    """An ordered, case-insensitive multi-valued header table with the
    surface of mod_python's `mp_table` that handlers use."""

    def __init__(self, items: Optional[List[Tuple[str, str]]] = None) -> None:
        self._items: List[Tuple[str, str]] = []
        self._index: Dict[str, List[str]] = {}
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    def __setitem__(self, name: str, value: str) -> None:
        self.__delitem__(name)
        self.add(name, value)

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        if key in self._index:
            del self._index[key]
            self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> List[str]:
        return list(self._index.get(name.lower(), []))

    def joined(self, name: str) -> Optional[str]:
        """All values of `name` joined with ', ' (RFC 7230 section 3.2.2)."""
        values = self._index.get(name.lower())
        return ', '.join(values) if values else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> List[str]:
        return [n for n, _ in self._items]

    def values(self) -> List[str]:
        """Every value, one per header line, in order (as
        http.client.HTTPMessage, pywebsocket3's headers_in)."""
        return [v for _, v in self._items]

    def items(self) -> List[Tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return 'Headers(%r)' % self._items


def parse_header_lines(lines: List[str]) -> Headers:
    """Parse header lines (no CRLF) into Headers; obsolete line folding is
    joined to the previous value. Raises ValueError on a malformed line."""
    headers = Headers()
    pending: Optional[Tuple[str, str]] = None
    for line in lines:
        if line[:1] in (' ', '\t'):
            if pending is None:
                raise ValueError('continuation line before any header')
            pending = (pending[0], pending[1] + ' ' + line.strip(_LWS))
            continue
        if pending is not None:
            headers.add(*pending)
        name, colon, value = line.partition(':')
        if not colon or not is_token(name):
            raise ValueError('malformed header line %r' % line[:80])
        if _CONTROL.search(value):
            raise ValueError(
                'control character (CR, LF, NUL...) in the value of %s' % name
            )
        pending = (name, value.strip(_LWS))
    if pending is not None:
        headers.add(*pending)
    return headers


def _split_head(head: bytes) -> List[str]:
    text = head.decode('iso-8859-1')
    if text.endswith('\r\n\r\n'):
        text = text[:-4]
    return text.split('\r\n')


def parse_request_head(head: bytes) -> Tuple[str, str, str, Headers]:
    """Parse an HTTP request head (request line + headers, up to the blank
    line) into (method, target, version, headers). Raises ValueError."""
    lines = _split_head(head)
    parts = lines[0].split(' ')
    if (
        len(parts) != 3
        or not is_token(parts[0])
        or not parts[1]
        or _CONTROL.search(lines[0])
    ):
        raise ValueError('malformed request line %r' % lines[0][:80])
    method, target, version = parts
    if not re.fullmatch(r'HTTP/\d\.\d', version):
        raise ValueError('malformed HTTP version %r' % version)
    return method, target, version, parse_header_lines(lines[1:])


def parse_response_head(head: bytes) -> Tuple[int, str, Headers]:
    """Parse an HTTP response head into (status, status line, headers).
    Raises ValueError."""
    lines = _split_head(head)
    match = re.fullmatch(r'HTTP/\d\.\d (\d{3})(?: (.*))?', lines[0])
    if match is None:
        raise ValueError('malformed status line %r' % lines[0])
    return int(match.group(1)), lines[0], parse_header_lines(lines[1:])


def find_head_end(buffer: bytes) -> int:
    """Index just past the blank line that ends an HTTP head, or -1."""
    end = buffer.find(b'\r\n\r\n')
    return -1 if end < 0 else end + 4


def parse_uri(uri: str) -> Tuple[Optional[str], Optional[int], Optional[str]]:
    """(host, port, resource) of a ws:// or wss:// URI (port 80 / 443
    unless given; resource is path, query and fragment, '/' at least);
    (None, None, uri) for anything else, taken as a relative URI; (None,
    None, None) for a ws URI without host or with an invalid port."""
    scheme, sep, rest = uri.partition('://')
    scheme = scheme.lower()
    if not sep or scheme not in ('ws', 'wss'):
        return None, None, uri
    cut = min(
        [i for i in (rest.find('/'), rest.find('?'), rest.find('#')) if i >= 0]
        or [len(rest)]
    )
    authority, resource = rest[:cut], rest[cut:]
    if not resource.startswith('/'):
        resource = '/' + resource
    host, port = authority.rpartition('@')[2], ''
    if host.startswith('['):  # IPv6 literal
        end = host.find(']')
        if end < 0:
            return None, None, None
        host, port = host[1:end], host[end + 1 :]
        if port and not port.startswith(':'):
            return None, None, None
        port = port[1:]
    elif ':' in host:
        host, port = host.split(':', 1)
    if not host:
        return None, None, None
    if not port:
        return host.lower(), 80 if scheme == 'ws' else 443, resource
    if not (port.isdigit() and port.isascii()) or int(port) > 65535:
        return None, None, None
    return host.lower(), int(port), resource
