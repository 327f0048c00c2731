"""Sans-I/O pieces of the message broker: no sockets, threads or clock
reads (callers pass `now`).

- `Envelope`: one message on its way to a group, a resource or one
  connection, with its sender node and that node's sequence number;
  `encode()` / `decode()` turn it into bytes and back.
- `SenderOrder`: per sending node, which sequence numbers were delivered:
  drops duplicates and stale replays, counts gaps (lost messages).
- `Outbox`: what a node could not publish yet (durable mode), bounded by
  age (the window) and by count.
- `StreamWindow`: which Redis Streams entries to deliver after a cut and
  which are older than the window (skipped, and logged).
- `Backoff`: reconnect delays.
- `BrokerSettings` / `parse_broker_url`: `redis://host:port/db?mode=...`.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from collections import deque
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple, Union

Message = Union[str, bytes]

TO_RESOURCE = 'resource'
TO_GROUP = 'group'
TO_CONNECTION = 'conn'
_KINDS = (TO_RESOURCE, TO_GROUP, TO_CONNECTION)

PUBSUB = 'pubsub'
DURABLE = 'durable'

DEFAULT_WINDOW = 60.0  # seconds a durable node catches up on
DEFAULT_HEARTBEAT = 1.0  # seconds between presence heartbeats
DEFAULT_TTL = 3.0  # seconds a silent node stays present
DEFAULT_OUTBOX = 100_000  # messages a durable node holds unsent
DEFAULT_PREFIX = 'mpws'


class EnvelopeError(ValueError):
    """Bytes that are not an envelope of this version."""


class Envelope(NamedTuple):
    """A message addressed to `kind`/`target`, sent by node `sender` as
    its message number `seq`; `exclude` is a connection id that must not
    get it (broadcast without self)."""

    kind: str
    target: str
    message: Message
    sender: str
    seq: int
    exclude: Optional[str] = None

    def encode(self) -> bytes:
        binary = not isinstance(self.message, str)
        header = {
            'v': 1,
            'k': self.kind,
            't': self.target,
            'n': self.sender,
            's': self.seq,
            'b': binary,
        }
        if self.exclude is not None:
            header['x'] = self.exclude
        message = self.message
        payload = (
            message.encode('utf-8')
            if isinstance(message, str)
            else bytes(message)
        )
        return json.dumps(header, separators=(',', ':')).encode() + (
            b'\n' + payload
        )

    @classmethod
    def decode(cls, data: bytes) -> 'Envelope':
        head, sep, payload = bytes(data).partition(b'\n')
        if not sep:
            raise EnvelopeError('no header line')
        try:
            header = json.loads(head)
            if header.get('v') != 1 or header['k'] not in _KINDS:
                raise EnvelopeError('unknown envelope %r' % head[:80])
            message: Message = (
                payload if header['b'] else payload.decode('utf-8')
            )
            return cls(
                header['k'],
                str(header['t']),
                message,
                str(header['n']),
                int(header['s']),
                header.get('x'),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            if isinstance(e, EnvelopeError):
                raise
            raise EnvelopeError('bad envelope: %s' % e) from None


class SenderOrder:
    """Exactly-once, in-order acceptance per sending node.

    Each node numbers its messages 1, 2, 3...; `accept` says whether an
    envelope is new (its number is above the last one accepted from that
    sender) and counts the numbers jumped over as `lost`."""

    def __init__(self, max_senders: int = 10_000) -> None:
        self._last: Dict[str, int] = {}
        self.max_senders = max_senders
        self.lost = 0
        self.duplicates = 0

    def accept(self, sender: str, seq: int) -> bool:
        last = self._last.get(sender)
        if last is not None and seq <= last:
            self.duplicates += 1
            return False
        if last is not None and seq > last + 1:
            self.lost += seq - last - 1
        if last is None and len(self._last) >= self.max_senders:
            self._last.pop(next(iter(self._last)))  # the oldest sender
        self._last[sender] = seq
        return True


class Outbox:
    """Encoded envelopes not yet published, oldest first. `expire` drops
    what is older than `window` seconds; `push` drops the oldest beyond
    `limit`. Both return how many they dropped."""

    def __init__(
        self, window: float = DEFAULT_WINDOW, limit: int = DEFAULT_OUTBOX
    ) -> None:
        self.window = window
        self.limit = limit
        self._items: Deque[Tuple[float, bytes]] = deque()

    def push(self, data: bytes, now: float) -> int:
        self._items.append((now, data))
        dropped = 0
        while len(self._items) > self.limit:
            self._items.popleft()
            dropped += 1
        return dropped

    def expire(self, now: float) -> int:
        dropped = 0
        while self._items and self._items[0][0] < now - self.window:
            self._items.popleft()
            dropped += 1
        return dropped

    def peek_many(self, count: int) -> List[bytes]:
        """Up to `count` oldest envelopes, left in the outbox."""
        return [self._items[i][1] for i in range(min(count, len(self._items)))]

    def drop_first(self, count: int) -> None:
        """Forget the `count` oldest (they were published)."""
        for _ in range(min(count, len(self._items))):
            self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


def stream_id_ms(entry_id: str) -> int:
    """The millisecond time part of a Redis Streams id ('1700000000000-3')."""
    return int(entry_id.split('-', 1)[0])


class StreamWindow:
    """Which stream entries a node still delivers: those newer than
    `window` seconds before `now` (ids carry Redis' clock in ms)."""

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self.skipped = 0

    def split(
        self, entry_ids: List[str], now: float
    ) -> Tuple[List[str], List[str]]:
        """(too old, to deliver) among `entry_ids`, in stream order (ids
        increase, so the old ones are a prefix)."""
        oldest = int((now - self.window) * 1000)
        cut = 0
        while cut < len(entry_ids) and stream_id_ms(entry_ids[cut]) < oldest:
            cut += 1
        self.skipped += cut
        return entry_ids[:cut], entry_ids[cut:]


class Backoff:
    """Reconnect delays: `initial`, doubled each failure up to `maximum`,
    with up to 20 % jitter; `reset()` after a success."""

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * (1 + 0.2 * self._rng.random())

    def reset(self) -> None:
        self._next = self.initial


class BrokerSettings:
    """What a broker URL says. `url` is the address without our query
    parameters (what the Redis client connects to). (A plain class: the
    dataclasses module would cost every Apache child about 1 MiB.)"""

    def __init__(
        self,
        url: str,
        mode: str = PUBSUB,
        window: float = DEFAULT_WINDOW,
        heartbeat: float = DEFAULT_HEARTBEAT,
        ttl: float = DEFAULT_TTL,
        retry: bool = False,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.url = url
        self.mode = mode
        self.window = window
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.retry = retry
        self.prefix = prefix

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, BrokerSettings):
            return NotImplemented
        return vars(self) == vars(other)

    def __repr__(self) -> str:
        return 'BrokerSettings(%s)' % ', '.join(
            '%s=%r' % item for item in vars(self).items()
        )

    @property
    def is_local(self) -> bool:
        return self.url == 'local'


_BOOLS = {
    '1': True,
    'on': True,
    'true': True,
    'yes': True,
    '0': False,
    'off': False,
    'false': False,
    'no': False,
}


def parse_broker_url(text: str) -> BrokerSettings:
    """`local` (in-process), or `redis://[:password@]host[:port][/db]` /
    `rediss://...` / `unix:///path` with optional query parameters
    `mode=pubsub|durable`, `window=SECONDS`, `heartbeat=SECONDS`,
    `ttl=SECONDS`, `retry=on|off`, `prefix=NAME`; ValueError names what
    is wrong."""
    text = text.strip()
    if text in ('', 'local'):
        return BrokerSettings('local')
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ('redis', 'rediss', 'unix'):
        raise ValueError(
            'broker %r: expected local, redis://host:port/db, '
            'rediss://... or unix:///path' % text
        )
    ours: Dict[str, str] = {}
    theirs: List[Tuple[str, str]] = []
    for name, value in urllib.parse.parse_qsl(parts.query):
        if name in ('mode', 'window', 'heartbeat', 'ttl', 'retry', 'prefix'):
            ours[name] = value
        else:
            theirs.append((name, value))
    url = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(theirs))
    )
    settings = BrokerSettings(url)
    mode = ours.get('mode', PUBSUB)
    if mode not in (PUBSUB, DURABLE):
        raise ValueError(
            'broker %r: mode must be pubsub or durable, not %r' % (text, mode)
        )
    settings.mode = mode
    for name in ('window', 'heartbeat', 'ttl'):
        if name in ours:
            try:
                seconds = float(ours[name])
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise ValueError(
                    'broker %r: %s must be a positive number '
                    'of seconds, not %r' % (text, name, ours[name])
                )
            setattr(settings, name, seconds)
    if settings.ttl <= settings.heartbeat:
        raise ValueError(
            'broker %r: ttl (%g s) must exceed heartbeat '
            '(%g s)' % (text, settings.ttl, settings.heartbeat)
        )
    if 'retry' in ours:
        retry = _BOOLS.get(ours['retry'].lower())
        if retry is None:
            raise ValueError('broker %r: retry must be on or off' % text)
        settings.retry = retry
    if 'prefix' in ours:
        settings.prefix = ours['prefix']
    return settings


def redacted(url: str) -> str:
    """`url` without its password, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit('@', 1)[1]
    user = parts.username or ''
    return urllib.parse.urlunsplit(
        parts._replace(netloc='%s:***@%s' % (user, netloc))
    )
