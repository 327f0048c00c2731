"""Server-side access policy (sans-I/O): which Origins may open a
WebSocket, how many WebSockets one client address may hold, how fast it
may open handshakes, and how often a refusal is logged.

No sockets, no threads started, no clock reads: callers pass `now`
(`time.monotonic()`). The tables lock themselves, so one instance serves
every connection thread of a host. The standalone server uses the tables
here; under Apache, `shared_limits` keeps the same counts in a file that
every child process sees and decides with the functions here.
"""

from __future__ import annotations

import ipaddress
import math
import re
import threading
from typing import Dict, List, Optional, Pattern, Sequence, Set, Tuple

from mod_pywebsocket.common import HandshakeException

DEFAULT_IPV6_PREFIX_LENGTH = 64
# Retry-After of a 503 for a cap: nothing tells when a slot frees up.
CAP_RETRY_AFTER = 5
DEFAULT_LOG_INTERVAL = 60.0
DEFAULT_MAX_ADDRESSES = 65536  # per-address rate / log table entries

_DEFAULT_PORTS = {'http': 80, 'ws': 80, 'https': 443, 'wss': 443}
_SCHEME = re.compile(r'[a-z][a-z0-9+.-]*\Z')
_HOST = re.compile(r'(\[[0-9a-f:.]+\]|[a-z0-9._~-]+)(?::([0-9]{1,5}))?\Z')


class PolicyError(ValueError):
    """A policy setting that cannot be used (the message says why)."""


class AccessRefused(HandshakeException):
    """A handshake the access policy refuses: 403 (origin), 429 (rate) or
    503 (caps), with a one-line reason and, for 429/503, Retry-After."""

    def __init__(
        self,
        message: str,
        status: int,
        retry_after: Optional[int] = None,
        log_skipped: Optional[int] = 0,
    ) -> None:
        headers = (
            [('Retry-After', str(retry_after))]
            if retry_after is not None
            else []
        )
        super().__init__(message, status, headers)
        self.retry_after = retry_after
        # None: a throttled refusal, not to be logged; else how many
        # refusals of this address went unlogged before this one.
        self.log_skipped = log_skipped


# ---- origins ---------------------------------------------------------

Origin = Tuple[str, str, Optional[int]]  # scheme, host, port


def _host_port(text: str) -> Optional[Tuple[str, Optional[int]]]:
    match = _HOST.match(text.lower())
    if match is None:
        return None
    port = None
    if match.group(2) is not None:
        port = int(match.group(2))
        if port > 65535:
            return None
    return match.group(1), port


def parse_origin(text: str) -> Optional[Origin]:
    """(scheme, host, port) of a serialized origin `scheme://host[:port]`,
    lowercased, the scheme's default port filled in; None when `text` is
    not one (including the opaque origin "null")."""
    scheme, sep, rest = text.strip().partition('://')
    scheme = scheme.lower()
    if not sep or not _SCHEME.match(scheme):
        return None
    host_port = _host_port(rest)
    if host_port is None:
        return None
    host, port = host_port
    return (
        scheme,
        host,
        port if port is not None else _DEFAULT_PORTS.get(scheme),
    )


def split_origin_list(spec: str) -> List[str]:
    """The comma-separated items of an allowed-origins list. Inside a
    `re:` item, commas within (), [] or {} do not split (`re:a{1,3}`)."""
    items: List[str] = []
    current: List[str] = []
    depth = 0
    escaped = False
    for char in spec:
        in_regex = ''.join(current).lstrip().startswith('re:')
        if in_regex and not escaped:
            if char == '\\':
                escaped = True
                current.append(char)
                continue
            if char in '([{':
                depth += 1
            elif char in ')]}' and depth:
                depth -= 1
        escaped = False
        if char == ',' and depth == 0:
            items.append(''.join(current).strip())
            current = []
            continue
        current.append(char)
    items.append(''.join(current).strip())
    return [item for item in items if item]


class _Wildcard:
    """`[scheme://]*.domain[:port]`: any subdomain of domain (not domain
    itself); without a scheme any scheme and port."""

    def __init__(self, item: str) -> None:
        scheme, sep, rest = item.partition('://')
        if not sep:
            scheme, rest = '', item
        elif not _SCHEME.match(scheme.lower()):
            raise PolicyError('bad scheme in %r' % item)
        if not rest.startswith('*.') or '*' in rest[2:]:
            raise PolicyError(
                'a wildcard origin is *.domain, optionally '
                'with scheme:// and :port, not %r' % item
            )
        host_port = _host_port(rest[2:])
        if host_port is None or host_port[0].startswith('['):
            raise PolicyError('bad domain in %r' % item)
        self.scheme = scheme.lower() or None
        self.suffix = '.' + host_port[0]
        self.port = (
            host_port[1]
            if host_port[1] is not None
            else _DEFAULT_PORTS.get(self.scheme or '')
        )

    def matches(self, origin: Origin) -> bool:
        scheme, host, port = origin
        if not host.endswith(self.suffix) or len(host) == len(self.suffix):
            return False
        if self.scheme is None:
            return True
        return scheme == self.scheme and port == self.port


class OriginPolicy:
    """An allow-list of origins. Items: `same` (the Origin's scheme, host
    and port equal the ones the client addressed: Host header, http for
    ws://, https for wss://), an exact origin (`https://example.com`,
    default ports optional), a wildcard (`*.example.com`,
    `https://*.example.com`) and `re:<regex>` (matched against the whole
    Origin as sent). `allow_missing`: whether a request without an Origin
    (a non-browser client) is let through."""

    def __init__(
        self, items: Sequence[str], allow_missing: bool = False
    ) -> None:
        if not items:
            raise PolicyError(
                'an allowed-origins list needs at least one item'
            )
        self.items = list(items)
        self.allow_missing = allow_missing
        self.same = False
        self._exact: Set[Tuple[str, str, Optional[int]]] = set()
        self._literal: Set[str] = set()  # e.g. "null"
        self._wildcards: List[_Wildcard] = []
        self._regexes: List[Pattern[str]] = []
        for item in self.items:
            if item.lower() == 'same':
                self.same = True
            elif item.startswith('re:'):
                try:
                    self._regexes.append(re.compile(item[3:]))
                except re.error as e:
                    raise PolicyError(
                        'bad regular expression %r: %s' % (item[3:], e)
                    )
            elif '*' in item:
                self._wildcards.append(_Wildcard(item))
            elif item.lower() == 'null':
                self._literal.add('null')
            else:
                origin = parse_origin(item)
                if origin is None or item.rstrip('/') != item:
                    raise PolicyError(
                        'not an origin (scheme://host[:port], no path): %r'
                        % item
                    )
                self._exact.add(origin)

    def refusal(
        self, origin: Optional[str], host: Optional[str], secure: bool
    ) -> Optional[str]:
        """None when `origin` may connect, else the reason in one line.
        `host`: the Host header; `secure`: whether the connection is TLS."""
        if origin is None:
            if self.allow_missing:
                return None
            return 'no Origin header, and this resource requires one'
        if origin in self._literal:
            return None
        if any(regex.fullmatch(origin) for regex in self._regexes):
            return None
        parsed = parse_origin(origin)
        if parsed is not None:
            if parsed in self._exact:
                return None
            if any(w.matches(parsed) for w in self._wildcards):
                return None
            if self.same and _same_origin(parsed, host, secure):
                return None
        return 'origin %s is not allowed' % _shown(origin)


def _same_origin(origin: Origin, host: Optional[str], secure: bool) -> bool:
    if host is None:
        return False
    addressed = _host_port(host.strip())
    if addressed is None:
        return False
    scheme = 'https' if secure else 'http'
    port = (
        addressed[1] if addressed[1] is not None else (443 if secure else 80)
    )
    origin_scheme = {'ws': 'http', 'wss': 'https'}.get(origin[0], origin[0])
    return (origin_scheme, origin[1], origin[2]) == (
        scheme,
        addressed[0],
        port,
    )


def _shown(value: str, limit: int = 200) -> str:
    """`value` quoted for a log line or response body, bounded."""
    if len(value) > limit:
        return repr(value[:limit]) + '...'
    return repr(value)


def parse_origin_policy(
    spec: Optional[str], allow_missing: bool = False
) -> Optional[OriginPolicy]:
    """The policy an allowed-origins value says; None for off (absent,
    empty or `off`). PolicyError for a bad item."""
    if spec is None or not spec.strip() or spec.strip().lower() == 'off':
        return None
    return OriginPolicy(split_origin_list(spec), allow_missing)


class OriginPolicyMap:
    """A server-wide policy and per-resource ones (`/chat` covers `/chat`
    and `/chat/...`; the longest matching prefix wins; a None policy
    turns checking off there)."""

    def __init__(
        self,
        default: Optional[OriginPolicy] = None,
        resources: Optional[Dict[str, Optional[OriginPolicy]]] = None,
    ) -> None:
        self.default = default
        self.resources = dict(resources or {})
        for prefix in self.resources:
            if not prefix.startswith('/'):
                raise PolicyError('a resource starts with /, not %r' % prefix)

    def policy_for(self, resource: str) -> Optional[OriginPolicy]:
        path = resource.split('?', 1)[0]
        best: Optional[str] = None
        for prefix in self.resources:
            base = prefix.rstrip('/')
            if path == prefix or path == base or path.startswith(base + '/'):
                if best is None or len(prefix) > len(best):
                    best = prefix
        return self.resources[best] if best is not None else self.default

    def is_off(self) -> bool:
        return self.default is None and not any(self.resources.values())


# ---- client addresses ------------------------------------------------


def address_key(
    address: str, ipv6_prefix_length: int = DEFAULT_IPV6_PREFIX_LENGTH
) -> str:
    """The key an address is counted under: an IPv4 address itself (also
    when IPv4-mapped), an IPv6 address's network of `ipv6_prefix_length`
    bits (one host usually holds a whole /64), anything else as given."""
    text = address.strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text.split('%', 1)[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, ipv6_prefix_length), strict=False)
        return str(network)
    return str(ip)


def check_prefix_length(length: int) -> int:
    if not 0 <= length <= 128:
        raise PolicyError('an IPv6 prefix length is 0-128, not %r' % length)
    return length


# ---- connection caps -------------------------------------------------


def cap_refusal(
    total: int, for_address: int, max_total: int, max_per_address: int
) -> Optional[str]:
    """Why one more WebSocket is refused when `total` are open and
    `for_address` of them from this address (caps of 0 are off)."""
    if max_total and total >= max_total:
        return 'the server holds its maximum of %d WebSockets' % max_total
    if max_per_address and for_address >= max_per_address:
        return (
            'this address holds its maximum of %d WebSockets' % max_per_address
        )
    return None


class ConnectionCounter:
    """Live WebSockets, in total and per address key. An entry exists
    only while its count is above 0, so the table never holds more keys
    than there are open connections."""

    def __init__(self, max_total: int = 0, max_per_address: int = 0) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self._counts: Dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> Optional[str]:
        """Count one more connection for `key`; or the refusal reason
        (and nothing counted)."""
        with self._lock:
            count = self._counts.get(key, 0)
            reason = cap_refusal(
                self.total, count, self.max_total, self.max_per_address
            )
            if reason is None:
                self._counts[key] = count + 1
                self.total += 1
            return reason

    def release(self, key: str) -> None:
        """One connection counted for `key` has ended."""
        with self._lock:
            count = self._counts.get(key, 0)
            if count <= 0:
                return
            self.total -= 1
            if count == 1:
                del self._counts[key]
            else:
                self._counts[key] = count - 1

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)


# ---- handshake rate --------------------------------------------------


def take_token(
    tokens: float, stamp: float, now: float, rate: float, burst: float
) -> Tuple[float, float, float]:
    """One step of a token bucket holding `tokens` at time `stamp`,
    refilled at `rate` per second up to `burst`: (tokens, stamp, wait)
    after trying to take a token at `now`; wait is 0.0 when one was taken,
    else the seconds until one will be there."""
    if now > stamp:
        tokens = min(burst, tokens + (now - stamp) * rate)
        stamp = now
    if tokens >= 1.0:
        return tokens - 1.0, stamp, 0.0
    return tokens, stamp, (1.0 - tokens) / rate


def retry_after_seconds(wait: float) -> int:
    """A Retry-After value (whole seconds, at least 1) for `wait`."""
    return max(1, int(math.ceil(wait)))


class HandshakeRateLimiter:
    """A token bucket per address key: `rate` handshakes per second on
    average, bursts of up to `burst`. At most `max_entries` buckets: a
    bucket that has refilled is the same as none and goes first, then the
    least recently used (which only ever lets that address start afresh).
    """

    def __init__(
        self, rate: float, burst: int, max_entries: int = DEFAULT_MAX_ADDRESSES
    ) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise PolicyError(
                'a handshake rate is a positive number per '
                'second, not %r' % rate
            )
        if burst < 1:
            raise PolicyError(
                'a handshake burst is at least 1, not %r' % burst
            )
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_entries = max_entries
        self._buckets: Dict[str, Tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float) -> float:
        """Take a token for `key`: 0.0 when allowed, else the seconds
        until the next token."""
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            tokens, stamp, wait = take_token(
                tokens, stamp, now, self.rate, self.burst
            )
            self._buckets[key] = (tokens, stamp)  # most recent last
            if len(self._buckets) > self.max_entries:
                self._evict(now)
            return wait

    def _evict(self, now: float) -> None:
        full = [
            key
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self.max_entries:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


# ---- log throttling --------------------------------------------------


class LogThrottle:
    """At most one log line per `interval` seconds per key; `check` says
    whether to log now and how many refusals were not logged before."""

    def __init__(
        self,
        interval: float = DEFAULT_LOG_INTERVAL,
        max_entries: int = DEFAULT_MAX_ADDRESSES,
    ) -> None:
        self.interval = interval
        self.max_entries = max_entries
        self._last: Dict[str, Tuple[float, int]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float) -> Optional[int]:
        """None: stay quiet; a number: log now, that many were skipped."""
        with self._lock:
            entry = self._last.pop(key, None)
            if entry is not None and now - entry[0] < self.interval:
                self._last[key] = (entry[0], entry[1] + 1)
                return None
            self._last[key] = (now, 0)
            if len(self._last) > self.max_entries:
                stale = [
                    k
                    for k, (t, _) in self._last.items()
                    if now - t >= self.interval
                ]
                for k in stale:
                    del self._last[k]
                while len(self._last) > self.max_entries:
                    del self._last[next(iter(self._last))]
            return entry[1] if entry is not None else 0


def skipped_note(skipped: int) -> str:
    """The tail of a throttled log line."""
    return (
        ' (%d more not logged since the last line)' % skipped
        if skipped
        else ''
    )


# ---- one host's limits -----------------------------------------------

DEFAULT_HANDSHAKE_BURST = 10


class LimitSettings:
    """What a host configures; 0 turns a limit off."""

    def __init__(
        self,
        max_connections: int = 0,
        max_connections_per_ip: int = 0,
        ipv6_prefix_length: int = DEFAULT_IPV6_PREFIX_LENGTH,
        handshake_rate: float = 0.0,
        handshake_burst: int = DEFAULT_HANDSHAKE_BURST,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        for name, value in (
            ('max connections', max_connections),
            ('max connections per ip', max_connections_per_ip),
        ):
            if value < 0:
                raise PolicyError(
                    '%s is 0 (off) or more, not %r' % (name, value)
                )
        if handshake_rate < 0 or not math.isfinite(handshake_rate):
            raise PolicyError(
                'a handshake rate is 0 (off) or a positive '
                'number, not %r' % handshake_rate
            )
        if handshake_burst < 1:
            raise PolicyError(
                'a handshake burst is at least 1, not %r' % handshake_burst
            )
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.ipv6_prefix_length = check_prefix_length(ipv6_prefix_length)
        self.handshake_rate = handshake_rate
        self.handshake_burst = handshake_burst
        self.log_interval = log_interval

    def enabled(self) -> bool:
        return bool(
            self.max_connections
            or self.max_connections_per_ip
            or self.handshake_rate
        )


class AccessLimits:
    """The handshake rate limit, then the connection caps, for one
    process (the standalone server). `admit` before the handshake,
    `release` when the WebSocket (or the failed handshake) is over."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.counter = ConnectionCounter(
            settings.max_connections, settings.max_connections_per_ip
        )
        self.rate = (
            HandshakeRateLimiter(
                settings.handshake_rate, settings.handshake_burst
            )
            if settings.handshake_rate
            else None
        )
        self.log_throttle = LogThrottle(settings.log_interval)

    def admit(self, address: str, now: float) -> str:
        """The address key to `release` later; AccessRefused (429/503)
        when over a limit."""
        key = address_key(address, self.settings.ipv6_prefix_length)
        if self.rate is not None:
            wait = self.rate.check(key, now)
            if wait:
                raise AccessRefused(
                    'too many handshakes from this address',
                    429,
                    retry_after_seconds(wait),
                    self.log_throttle.check(key, now),
                )
        reason = self.counter.acquire(key)
        if reason is not None:
            raise AccessRefused(
                reason, 503, CAP_RETRY_AFTER, self.log_throttle.check(key, now)
            )
        return key

    def release(self, key: str) -> None:
        self.counter.release(key)
