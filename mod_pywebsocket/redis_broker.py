"""The broker over Redis: every process (Apache child, standalone server,
on any machine) that shares one Redis shares groups, presence and sends.

Two threads per process do all Redis I/O; handler threads and the event
loop only queue (never block on Redis):

- the writer publishes what this node sends (pub/sub: PUBLISH, at most
  once; durable: XADD to a stream, from an outbox kept while Redis is
  away, up to the window), writes presence (joins, leaves) and the node's
  heartbeat key (expires after the TTL, so a dead node's members drop out);
- the reader receives what other nodes send (SUBSCRIBE, or XREAD from the
  last id it delivered) and delivers to this process's connections,
  once per sender sequence number and in each sender's order.

Keys (prefix `mpws` unless `prefix=`): `<p>:messages` (channel),
`<p>:stream`, `<p>:node:<node>` (heartbeat), `<p>:members:<kind>:<name>`
(hash: connection id -> node).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Deque, List, Optional, Tuple

import redis

from mod_pywebsocket.broker import Broker, BrokerUnavailable, Scope
from mod_pywebsocket.broker_core import (
    DURABLE,
    Backoff,
    BrokerSettings,
    Envelope,
    EnvelopeError,
    Outbox,
    SenderOrder,
    StreamWindow,
    redacted,
)
from mod_pywebsocket.threads import start_daemon

_logger = logging.getLogger(__name__)

_PUBLISH_QUEUE = 100_000  # pub/sub messages waiting for the writer
_PRESENCE_QUEUE = 100_000  # joins/leaves waiting for the writer
_BATCH = 500  # commands per pipeline round trip
_READ_BLOCK_MS = 1000


class RedisBroker(Broker):
    """See the module docstring; `settings` from parse_broker_url."""

    def __init__(self, settings: BrokerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.url = settings.url
        self.mode = settings.mode
        self._name = redacted(settings.url)
        prefix = settings.prefix
        self._channel = prefix + ':messages'
        self._stream = prefix + ':stream'
        self._node_key = '%s:node:%s' % (prefix, self.node_id)
        self._members_prefix = prefix + ':members:'
        self._node_prefix = prefix + ':node:'
        timeout = max(2.0, settings.ttl)
        self._redis: Any = redis.Redis.from_url(
            settings.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self._cond = threading.Condition()
        self._stopped = False
        self._connected = False
        self._pending: Deque[bytes] = deque()
        self._outbox = Outbox(settings.window)
        self._presence_ops: Deque[Tuple[bool, Scope, str]] = deque()
        self._resync = True  # rewrite presence at the next connect
        self.order = SenderOrder()
        self.window = StreamWindow(settings.window)
        self.unsent = 0  # pub/sub messages dropped unsent
        self.expired = 0  # durable messages older than the window
        self._last_id: Optional[str] = None
        try:
            self._redis.ping()
            if self.mode == DURABLE:
                self._last_id = self._stream_tail(self._redis)
            self._set_connected(True)
        except redis.RedisError as e:
            if not settings.retry:
                raise BrokerUnavailable(
                    'cannot reach the broker %s: %s' % (self._name, e)
                ) from None
            _logger.warning(
                'broker %s unreachable (%s); starting anyway, retrying',
                self._name,
                e,
            )
        self._threads = [
            start_daemon(self._write_loop, 'broker-writer'),
            start_daemon(self._read_loop, 'broker-reader'),
        ]

    # ---- state -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def _set_connected(self, connected: bool, error: Any = None) -> None:
        with self._cond:
            if connected == self._connected:
                return
            self._connected = connected
            if not connected:
                self._resync = True
            self._cond.notify_all()
        if connected:
            _logger.warning(
                'broker %s connected (%s, node %s)',
                self._name,
                self.mode,
                self.node_id,
            )
        else:
            _logger.warning(
                'broker %s lost: %s; local delivery continues, reconnecting',
                self._name,
                error,
            )

    # ---- what Broker calls (never blocks) --------------------------------

    def _publish(self, envelope: Envelope) -> None:
        data = envelope.encode()
        with self._cond:
            if self.mode == DURABLE:
                dropped = self._outbox.push(data, time.monotonic())
                if dropped:
                    self.expired += dropped
                    _logger.warning(
                        'broker %s: outbox full, %d oldest messages dropped',
                        self._name,
                        dropped,
                    )
            elif not self._connected or len(self._pending) >= _PUBLISH_QUEUE:
                self.unsent += 1
                return
            else:
                self._pending.append(data)
            self._cond.notify_all()

    def _presence(self, joined: bool, scope: Scope, conn_id: str) -> None:
        with self._cond:
            if len(self._presence_ops) >= _PRESENCE_QUEUE:
                self._presence_ops.popleft()
                self._resync = True
            self._presence_ops.append((joined, scope, conn_id))
            self._cond.notify_all()

    def _remote_members(self, scope: Scope) -> Optional[List[str]]:
        key = self._members_key(scope)
        try:
            entries = self._redis.hgetall(key)
            if not entries:
                return []
            nodes = sorted({v.decode() for v in entries.values()})
            alive = self._redis.mget([self._node_prefix + n for n in nodes])
        except redis.RedisError as e:
            _logger.info(
                'broker %s: members of %s from this node only: %s',
                self._name,
                scope[1],
                e,
            )
            return None
        live = {n for n, a in zip(nodes, alive) if a is not None}
        dead = [k for k, v in entries.items() if v.decode() not in live]
        if dead:
            try:
                self._redis.hdel(key, *dead)
            except redis.RedisError:
                pass
        return [k.decode() for k, v in entries.items() if v.decode() in live]

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(3)
        try:
            pipe = self._redis.pipeline(transaction=False)
            for scope, conn_id in self.directory.memberships():
                pipe.hdel(self._members_key(scope), conn_id)
            pipe.delete(self._node_key)
            pipe.execute()
        except redis.RedisError:
            pass
        self._redis.close()

    # ---- the writer thread ---------------------------------------------

    def _members_key(self, scope: Scope) -> str:
        return self._members_prefix + '%s:%s' % scope

    def _write_loop(self) -> None:
        backoff = Backoff()
        next_beat = 0.0
        while True:
            with self._cond:
                now = time.monotonic()
                while (
                    not self._stopped
                    and now < next_beat
                    and not self._presence_ops
                    and not self._pending
                    and not (self._connected and len(self._outbox))
                ):
                    self._cond.wait(next_beat - now)
                    now = time.monotonic()
                if self._stopped:
                    return
                expired = self._outbox.expire(now)
                self.expired += expired
            if expired:
                _logger.warning(
                    'broker %s: %d unsent messages older than %g s dropped',
                    self._name,
                    expired,
                    self.settings.window,
                )
            try:
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self.settings.heartbeat
                self._write_some()
                backoff.reset()
            except redis.RedisError as e:
                self._set_connected(False, e)
                with self._cond:
                    self._cond.wait(backoff.next_delay())
                next_beat = 0.0

    def _heartbeat(self) -> None:
        ttl_ms = int(self.settings.ttl * 1000)
        with self._cond:
            resync = self._resync
            self._resync = False
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self._node_key, b'1', px=ttl_ms)
            if resync:  # Redis may have lost it: write it all again
                for scope, conn_id in self.directory.memberships():
                    pipe.hset(self._members_key(scope), conn_id, self.node_id)
            pipe.execute()
        except redis.RedisError:
            with self._cond:
                self._resync = self._resync or resync
            raise
        self._set_connected(True)

    def _write_some(self) -> None:
        with self._cond:
            ops = [
                self._presence_ops[i]
                for i in range(min(_BATCH, len(self._presence_ops)))
            ]
            if self.mode == DURABLE:
                batch = self._outbox.peek_many(_BATCH)
            else:
                batch = [
                    self._pending.popleft()
                    for _ in range(min(_BATCH, len(self._pending)))
                ]
        if not ops and not batch:
            return
        pipe = self._redis.pipeline(transaction=False)
        for joined, scope, conn_id in ops:
            if joined:
                pipe.hset(self._members_key(scope), conn_id, self.node_id)
            else:
                pipe.hdel(self._members_key(scope), conn_id)
        for data in batch:
            if self.mode == DURABLE:
                # trimmed to about twice the window
                oldest = int((time.time() - 2 * self.settings.window) * 1000)
                pipe.xadd(
                    self._stream, {b'e': data}, minid=oldest, approximate=True
                )
            else:
                pipe.publish(self._channel, data)
        try:
            pipe.execute()
        except redis.RedisError:
            if self.mode != DURABLE:
                self.unsent += len(batch)  # at most once: not retried
            raise
        with self._cond:
            for _ in ops:
                self._presence_ops.popleft()
            if self.mode == DURABLE:
                self._outbox.drop_first(len(batch))

    # ---- the reader thread ---------------------------------------------

    def _read_loop(self) -> None:
        backoff = Backoff()
        while not self._stopped:
            try:
                if self.mode == DURABLE:
                    self._read_stream()
                else:
                    self._read_channel()
            except redis.RedisError as e:
                self._set_connected(False, e)
                with self._cond:
                    self._cond.wait(backoff.next_delay())
                continue
            backoff.reset()

    def _stream_tail(self, client: Any) -> str:
        last = client.xrevrange(self._stream, count=1)
        return last[0][0].decode() if last else '0-0'

    def _read_stream(self) -> None:
        client: Any = redis.Redis.from_url(
            self.settings.url,
            socket_connect_timeout=2,
            socket_timeout=_READ_BLOCK_MS / 1000 + 2,
        )
        try:
            if self._last_id is None:
                self._last_id = self._stream_tail(client)
            while not self._stopped:
                reply = client.xread(
                    {self._stream: self._last_id},
                    count=_BATCH,
                    block=_READ_BLOCK_MS,
                )
                self._set_connected(True)
                entries = reply[0][1] if reply else []
                if not entries:
                    continue
                ids = [i.decode() for i, _ in entries]
                old, _ = self.window.split(ids, time.time())
                if old:
                    _logger.warning(
                        'broker %s: skipped %d messages older than the '
                        '%g s window (ids %s to %s)',
                        self._name,
                        len(old),
                        self.settings.window,
                        old[0],
                        old[-1],
                    )
                for (_, fields), entry_id in list(zip(entries, ids))[
                    len(old) :
                ]:
                    self._receive(fields.get(b'e', b''))
                    self._last_id = entry_id
                self._last_id = ids[-1]
        finally:
            client.close()

    def _read_channel(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            while not self._stopped:
                item = pubsub.get_message(timeout=_READ_BLOCK_MS / 1000)
                if item is None:
                    # (a dead server shows up here as an error)
                    pubsub.ping()
                    continue
                if item.get('type') == 'message':
                    self._receive(item['data'])
                elif item.get('type') == 'pong':
                    self._set_connected(True)
        finally:
            pubsub.close()

    def _receive(self, data: bytes) -> None:
        try:
            envelope = Envelope.decode(data)
        except EnvelopeError as e:
            _logger.warning('broker %s: ignored a message: %s', self._name, e)
            return
        if envelope.sender == self.node_id:
            return  # delivered here when it was sent
        lost = self.order.lost
        if not self.order.accept(envelope.sender, envelope.seq):
            return
        if self.order.lost != lost:
            _logger.warning(
                'broker %s: %d messages from node %s were '
                'lost (pub/sub delivers at most once)',
                self._name,
                self.order.lost - lost,
                envelope.sender,
            )
        self.deliver(envelope)
