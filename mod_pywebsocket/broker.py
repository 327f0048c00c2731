"""Groups, presence and sends across processes: the broker interface.

Every connection that joins the broker (event-style ones always; classic
ones through `attach(request)`) gets an `id` unique across nodes and may
join named groups. Sends go to everyone on a resource, to a group or to
one connection id; the broker delivers to this process's connections at
once (never blocking: `Connection.send` queues) and hands the message to
the other nodes through its transport.

- `LocalBroker` (the default): this process only, no dependency.
- `mod_pywebsocket.redis_broker.RedisBroker`: all processes and machines
  sharing one Redis (pub/sub or durable Redis Streams).

`configure(url)` chooses the process's broker (`--broker` in the
standalone server, `PythonOption mod_pywebsocket.broker` under Apache);
`get_broker()` returns it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from mod_pywebsocket.broker_core import (
    TO_CONNECTION,
    TO_GROUP,
    TO_RESOURCE,
    Envelope,
    Message,
    parse_broker_url,
)
from mod_pywebsocket.common import ConnectionTerminatedException

_logger = logging.getLogger(__name__)

Scope = Tuple[str, str]  # (TO_GROUP | TO_RESOURCE, name)


class BrokerUnavailable(RuntimeError):
    """The broker named by the configuration cannot be reached."""


class Directory:
    """This process's connections by id, resource and group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: Dict[str, Any] = {}
        self._by_scope: Dict[Scope, Set[Any]] = {}
        self._scopes: Dict[str, Set[Scope]] = {}

    def add(self, conn: Any) -> None:
        with self._lock:
            self._by_id[conn.id] = conn
            self._scopes[conn.id] = set()
        self.join(conn, (TO_RESOURCE, conn.path))

    def remove(self, conn: Any) -> List[Scope]:
        """Forget `conn`; returns the scopes it was in."""
        with self._lock:
            if self._by_id.pop(conn.id, None) is None:
                return []
            scopes = self._scopes.pop(conn.id, set())
            for scope in scopes:
                members = self._by_scope.get(scope)
                if members is not None:
                    members.discard(conn)
                    if not members:
                        del self._by_scope[scope]
            return sorted(scopes)

    def join(self, conn: Any, scope: Scope) -> bool:
        """Whether `conn` was not in `scope` yet (and is now)."""
        with self._lock:
            scopes = self._scopes.get(conn.id)
            if scopes is None or scope in scopes:
                return False
            scopes.add(scope)
            self._by_scope.setdefault(scope, set()).add(conn)
            return True

    def leave(self, conn: Any, scope: Scope) -> bool:
        with self._lock:
            scopes = self._scopes.get(conn.id)
            if scopes is None or scope not in scopes:
                return False
            scopes.discard(scope)
            members = self._by_scope[scope]
            members.discard(conn)
            if not members:
                del self._by_scope[scope]
            return True

    def members(self, scope: Scope) -> List[Any]:
        with self._lock:
            return list(self._by_scope.get(scope, ()))

    def get(self, conn_id: str) -> Optional[Any]:
        with self._lock:
            return self._by_id.get(conn_id)

    def groups_of(self, conn_id: str) -> List[str]:
        with self._lock:
            return sorted(
                name
                for kind, name in self._scopes.get(conn_id, ())
                if kind == TO_GROUP
            )

    def memberships(self) -> List[Tuple[Scope, str]]:
        """Every (scope, connection id) of this process."""
        with self._lock:
            return [
                (scope, conn_id)
                for conn_id, scopes in self._scopes.items()
                for scope in scopes
            ]


class Broker:
    """In-process broker (and the base of the others): delivers to this
    process's connections; subclasses also publish to other nodes by
    overriding `_publish`, `_presence` and `_remote_members`."""

    url = 'local'

    def __init__(self) -> None:
        import uuid  # (not in every Apache child that never brokers)

        self.node_id = uuid.uuid4().hex[:12]
        self.directory = Directory()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self.pid = os.getpid()

    # ---- connections ---------------------------------------------------

    def new_id(self) -> str:
        return '%s.%d' % (self.node_id, next(self._ids))

    def register(self, conn: Any) -> None:
        """`conn` (with `id`, `path`, `send()`) is open."""
        self.directory.add(conn)
        self._presence(True, (TO_RESOURCE, conn.path), conn.id)

    def unregister(self, conn: Any) -> None:
        for scope in self.directory.remove(conn):
            self._presence(False, scope, conn.id)

    def join(self, conn: Any, group: str) -> None:
        if self.directory.join(conn, (TO_GROUP, group)):
            self._presence(True, (TO_GROUP, group), conn.id)

    def leave(self, conn: Any, group: str) -> None:
        if self.directory.leave(conn, (TO_GROUP, group)):
            self._presence(False, (TO_GROUP, group), conn.id)

    # ---- sending -------------------------------------------------------

    def send_to_group(
        self, group: str, message: Message, exclude: Optional[str] = None
    ) -> int:
        """To every member of `group` on every node; returns how many
        connections of this process accepted it."""
        return self.publish(TO_GROUP, group, message, exclude)

    def send_to_resource(
        self, resource: str, message: Message, exclude: Optional[str] = None
    ) -> int:
        """To every connection of `resource` on every node."""
        return self.publish(TO_RESOURCE, resource, message, exclude)

    def send_to_connection(self, conn_id: str, message: Message) -> int:
        """To the connection `conn_id`, wherever it is."""
        return self.publish(TO_CONNECTION, conn_id, message)

    def publish(
        self,
        kind: str,
        target: str,
        message: Message,
        exclude: Optional[str] = None,
    ) -> int:
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        with self._seq_lock:
            envelope = Envelope(
                kind, target, message, self.node_id, next(self._seq), exclude
            )
            # (under the lock: other nodes see this node's order)
            delivered = self.deliver(envelope)
            if not (
                kind == TO_CONNECTION and target.startswith(self.node_id + '.')
            ):
                self._publish(envelope)
        return delivered

    def deliver(self, envelope: Envelope) -> int:
        """Hand `envelope` to this process's connections it addresses;
        returns how many accepted it (a closed one does not)."""
        if envelope.kind == TO_CONNECTION:
            conn = self.directory.get(envelope.target)
            targets = [conn] if conn is not None else []
        else:
            targets = self.directory.members((envelope.kind, envelope.target))
        sent = 0
        for conn in targets:
            if conn.id == envelope.exclude:
                continue
            try:
                conn.send(envelope.message)
                sent += 1
            except ConnectionTerminatedException:
                pass
        return sent

    # ---- presence ------------------------------------------------------

    def members(self, group: str) -> List[str]:
        """Ids of the connections in `group`, on every live node."""
        return self._members((TO_GROUP, group))

    def resource_members(self, resource: str) -> List[str]:
        """Ids of the connections open to `resource`, on every node."""
        return self._members((TO_RESOURCE, resource))

    def _members(self, scope: Scope) -> List[str]:
        local = [c.id for c in self.directory.members(scope)]
        remote = self._remote_members(scope)
        if remote is None:
            return sorted(local)
        return sorted(set(local) | set(remote))

    # ---- what a transport overrides --------------------------------------

    def _publish(self, envelope: Envelope) -> None:
        """Hand `envelope` to the other nodes (never blocks)."""

    def _presence(self, joined: bool, scope: Scope, conn_id: str) -> None:
        """Record a join or leave for the other nodes (never blocks)."""

    def _remote_members(self, scope: Scope) -> Optional[List[str]]:
        """Members of `scope` on all nodes, or None if only local."""
        return None

    @property
    def connected(self) -> bool:
        """Whether other nodes are reachable (always, for local)."""
        return True

    def close(self) -> None:
        """Stop the transport; local delivery keeps working."""


LocalBroker = Broker

_lock = threading.Lock()
_broker: Optional[Broker] = None


def create(url: str) -> Broker:
    """A new broker for `url` (see broker_core.parse_broker_url);
    BrokerUnavailable if Redis cannot be reached (unless `retry=on`),
    ValueError for a bad URL, ImportError without the redis package."""
    settings = parse_broker_url(url)
    if settings.is_local:
        return LocalBroker()
    from mod_pywebsocket.redis_broker import RedisBroker

    return RedisBroker(settings)


def configure(url: str) -> Broker:
    """Make the broker for `url` this process's broker (once per process
    and URL: the same URL again returns the running one)."""
    global _broker
    with _lock:
        current = _broker
        if (
            current is not None
            and current.url == url.strip()
            and current.pid == os.getpid()
        ):
            return current
        new = create(url)
        if current is not None and current.pid == os.getpid():
            if current.directory.memberships():
                _logger.warning(
                    'broker changed from %s to %s while connections are open',
                    current.url,
                    new.url,
                )
            current.close()
        _broker = new
        return new


def get_broker() -> Broker:
    """This process's broker (a LocalBroker unless configured; a forked
    child gets a fresh one of its own)."""
    global _broker
    with _lock:
        if _broker is None or _broker.pid != os.getpid():
            url = _broker.url if _broker is not None else 'local'
            _broker = None
        else:
            return _broker
    return configure(url)


def members(group: str) -> List[str]:
    """Connection ids in `group` across nodes."""
    return get_broker().members(group)


def resource_members(resource: str) -> List[str]:
    return get_broker().resource_members(resource)


def send_to_group(group: str, message: Message) -> int:
    return get_broker().send_to_group(group, message)


def send_to_resource(resource: str, message: Message) -> int:
    return get_broker().send_to_resource(resource, message)


def send_to_connection(conn_id: str, message: Message) -> int:
    return get_broker().send_to_connection(conn_id, message)


@contextlib.contextmanager
def attach(request: Any) -> Iterator[Any]:
    """For classic handlers (`web_socket_transfer_data`): the request as
    an event-style `Connection` (id, join/leave, send from any thread,
    broadcast) that the broker can deliver to, for the `with` block:

        with broker.attach(request) as conn:
            conn.join('lobby')
            while (line := request.ws_stream.receive_message()) is not None:
                conn.send_to_group('lobby', line)
    """
    from mod_pywebsocket.events import Connection

    conn = Connection(request)
    conn.begin_sending()
    broker = get_broker()
    broker.register(conn)
    try:
        yield conn
    finally:
        broker.unregister(conn)
        conn.end_sending(conn.close_timeout)
