"""One thread that serves every event-style connection of the standalone
server, so an open connection costs no thread of its own.

After the handshake, the connection's thread (or the accepting thread)
hands the socket to the loop. The loop waits on all sockets with a
selector, feeds what arrives to each connection's sans-I/O core, calls
`on_message` on its own thread (callbacks must return quickly: hand long
work to a thread of your own), and writes what the cores queue only as
far as each socket accepts it without blocking: a client that stops
reading holds its own bytes (bounded by the send queue limits) and never
the loop. Pongs, close replies, keepalive pings and every timeout
(keepalive, close wait) come from the core; the loop only reads the clock
for it.
"""

from __future__ import annotations

import functools
import logging
import select
import selectors
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from mod_pywebsocket.common import ConnectionTerminatedException, ProtocolError
from mod_pywebsocket.connection import (
    CloseReceived,
    Message,
    Ping,
    State,
    WebSocketConnection,
)
from mod_pywebsocket.events import event_connection

_logger = logging.getLogger(__name__)

READ_SIZE = 65536
_SWEEP_INTERVAL = 0.5  # seconds between timer checks
# Events one connection may run per turn of the loop: a client whose
# bytes hold thousands of frames (a ping flood) waits its next turn for
# the rest instead of delaying every other connection.
EVENTS_PER_TURN = 32

# (hot path: module constants, not enum lookups, and locks taken with
# acquire/release, not `with`: both cost about 100 ns more on CPython 3.11)
_OPEN = State.OPEN
_CLOSED = State.CLOSED

# Readiness bits as epoll reports them (also poll's values).
_IN = 0x001
_OUT = 0x004


class _SelectorPoller:
    """select.epoll's interface (file descriptors, _IN/_OUT bits) over
    the selectors module, for platforms without epoll."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & _IN else 0) | (
            selectors.EVENT_WRITE if mask & _OUT else 0
        )

    def register(self, fd: int, mask: int) -> None:
        self._selector.register(fd, self._events(mask))

    def modify(self, fd: int, mask: int) -> None:
        self._selector.modify(fd, self._events(mask))

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        return [
            (
                key.fd,
                (_IN if events & selectors.EVENT_READ else 0)
                | (_OUT if events & selectors.EVENT_WRITE else 0),
            )
            for key, events in self._selector.select(timeout)
        ]

    def close(self) -> None:
        self._selector.close()


def _new_poller() -> Any:
    """epoll where the platform has it (one system call per turn, no
    Python layer), else the selectors module behind the same interface."""
    if hasattr(select, 'epoll'):
        return select.epoll()
    return _SelectorPoller()


class _Entry:
    """One connection the loop serves."""

    __slots__ = (
        'request',
        'suite',
        'sock',
        'stream',
        'lock',
        'core',
        'conn',
        'on_end',
        'ended',
        'writing',
        'linger_until',
    )

    def __init__(
        self,
        request: Any,
        suite: Any,
        sock: socket.socket,
        on_end: Callable[[Any], None],
    ) -> None:
        self.request = request
        self.suite = suite
        self.sock = sock
        self.stream = request.ws_stream
        self.lock = self.stream.lock
        self.core: WebSocketConnection = self.stream.connection
        self.conn = event_connection(request)
        self.on_end = on_end
        self.ended = False
        self.writing = False  # registered for EVENT_WRITE
        self.linger_until: Optional[float] = None  # closed, bytes pending


class EventLoop:
    """The selector thread; `add()` is called from connection threads
    (and the accepting thread)."""

    def __init__(
        self,
        keepalive_interval: Optional[float] = None,
        keepalive_timeout: Optional[float] = None,
        close_timeout: float = 5.0,
    ) -> None:
        self._poller = _new_poller()
        # epoll sees a socket registered by another thread while it waits
        # (a poll() or select() based selector would not until its next
        # call): only then does add() register from the calling thread.
        self._register_from_any_thread = not isinstance(
            self._poller, _SelectorPoller
        )
        self._close_timeout = close_timeout
        self._keepalive = bool(keepalive_interval)
        self._lock = threading.Lock()
        self._incoming: List[_Entry] = []
        self._want_write: Set[_Entry] = set()
        # Connections with events left over from their last turn; their
        # sockets are not read until those have run (a bounded buffer).
        self._backlog: Dict[_Entry, None] = {}
        self._entries: Dict[int, _Entry] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, _IN)
        self._stopping = False
        self._ident: Optional[int] = None
        self._thread = threading.Thread(
            target=self._run, daemon=True, name='ws-event-loop'
        )
        self._thread.start()

    @staticmethod
    def can_serve(stream: Any) -> bool:
        """Whether the loop can drive this stream (RFC 6455 / hybi-08
        over a plain socket; the drafts and TLS keep their thread)."""
        return (
            isinstance(
                getattr(stream, 'connection', None), WebSocketConnection
            )
            and stream.can_try_flush
        )

    def add(
        self,
        request: Any,
        suite: Any,
        sock: socket.socket,
        on_end: Callable[[Any], None],
    ) -> None:
        """Serve an open connection: start its suite and watch its socket;
        `on_end(request)` runs on the loop once it is over."""
        sock.setblocking(False)
        entry = _Entry(request, suite, sock, on_end)
        # Bytes the client sent right behind its handshake were read with
        # the HTTP head: they go first.
        pending = request.connection.take_pending()
        if pending:
            entry.core.receive_data(pending)
        if self._keepalive:
            entry.core.note_received(time.monotonic())
        suite.start(request, functools.partial(self._flush_soon, entry))
        if (
            not pending
            and self._register_from_any_thread
            and entry.core.state is State.OPEN
            and self._watch_now(entry)
        ):
            # (what was queued before it was watched goes now, or when
            # the loop sees the socket writable)
            self._flush_soon(entry)
            return
        with self._lock:
            self._incoming.append(entry)
        self._wake()

    def _watch_now(self, entry: _Entry) -> bool:
        """Register a connection with nothing to deliver yet from the
        calling thread (epoll takes it while the loop waits): no wake-up
        byte, no turn of the loop. False to leave it to the loop."""
        fd = entry.sock.fileno()
        self._entries[fd] = entry  # (before its first event can come)
        try:
            self._poller.register(fd, _IN)
        except (OSError, ValueError, KeyError):
            self._entries.pop(fd, None)
            return False
        return True

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(5)

    # ---- called from any thread --------------------------------------------

    def _flush_soon(self, entry: _Entry) -> None:
        """Write what `entry` has queued: at once if the socket takes it,
        else when the loop sees the socket writable. Sends made on the
        loop itself (in on_message) are written together once the
        callbacks of this round have run."""
        if entry.ended:
            return
        if threading.get_ident() == self._ident:
            self._want_write.add(entry)  # the loop thread: no lock needed
            return
        if not entry.writing:
            try:
                if entry.stream.try_flush():
                    return
            except ConnectionTerminatedException:
                pass  # the loop sees the failure and ends it
        with self._lock:
            self._want_write.add(entry)
        self._wake()

    def _wake(self) -> None:
        if threading.current_thread() is self._thread:
            return  # the loop looks at _want_write anyway
        try:
            self._wake_w.send(b'x')
        except OSError:
            pass

    # ---- the loop ----------------------------------------------------------

    def _run(self) -> None:
        self._ident = threading.get_ident()
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        poll = self._poller.poll
        entries = self._entries
        while not self._stopping:
            timeout = (
                0.0
                if self._backlog
                else max(0.0, next_sweep - time.monotonic())
            )
            for fd, events in poll(timeout):
                entry = entries.get(fd)
                if entry is None:
                    if fd == self._wake_fd:
                        self._drain_wakeups()
                    continue
                try:
                    # (an error or hang-up reads as both: the read or the
                    # write finds out which)
                    if events & ~_OUT:
                        self._readable(entry)
                    if events & ~_IN and not entry.ended:
                        self._flush(entry)
                except Exception:
                    # One connection's failure never stops the loop.
                    _logger.error(
                        '%s: error on the event loop',
                        entry.request.ws_resource,
                        exc_info=True,
                    )
                    self._end(entry)
            # (each tested here first: this runs once per event)
            if self._backlog:
                self._run_backlog()
            if self._incoming:
                self._register_incoming()
            if self._want_write:
                self._register_writers()
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + _SWEEP_INTERVAL
        for entry in list(self._entries.values()):
            self._end(entry)
        self._poller.close()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _register_incoming(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for entry in incoming:
            try:
                self._poller.register(entry.sock.fileno(), _IN)
            except (OSError, ValueError):
                self._end(entry)
                continue
            self._entries[entry.sock.fileno()] = entry
            self._deliver(entry)  # anything fed before registration

    def _register_writers(self) -> None:
        if not self._want_write:
            return
        with self._lock:
            if not self._want_write:
                return
            wanted, self._want_write = self._want_write, set()
        for entry in wanted:
            if not entry.ended and entry.sock.fileno() in self._entries:
                self._flush(entry)

    def _run_backlog(self) -> None:
        if not self._backlog:
            return
        waiting = list(self._backlog)
        self._backlog.clear()
        for entry in waiting:
            if not entry.ended:
                self._deliver(entry)

    def _readable(self, entry: _Entry) -> None:
        if entry in self._backlog:
            return  # its buffered events come first
        try:
            data = entry.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b''
        core = entry.core
        if self._keepalive and data:
            with entry.lock:
                core.note_received(time.monotonic())
        core.receive_data(data)
        self._deliver(entry)

    def _deliver(self, entry: _Entry) -> None:
        """Run the events the core has, then write what they queued."""
        core = entry.core
        lock = entry.lock
        budget = EVENTS_PER_TURN
        while not entry.ended:
            budget -= 1
            if budget < 0:
                self._backlog[entry] = None  # the rest next turn
                break
            try:
                lock.acquire()
                try:
                    event = core.next_event()
                    kind = type(event)
                    if kind is Message:
                        pass
                    elif kind is Ping:
                        core.send_pong(event.payload)  # type: ignore[union-attr]
                    elif kind is CloseReceived:
                        core.reply_to_close()
                finally:
                    lock.release()
            except ProtocolError as e:
                _logger.info(
                    '%s: closing with %d: %s',
                    entry.request.ws_resource,
                    e.code,
                    e,
                )
                break
            except ConnectionTerminatedException as e:
                _logger.info('%s: %s', entry.request.ws_resource, e)
                return self._end(entry)
            if kind is Message:
                conn = entry.conn
                conn.flush_deferred = True  # written below, by _flush
                try:
                    entry.suite.on_message(conn, event.data)  # type: ignore[union-attr]
                except Exception:
                    _logger.error(
                        '%s raised in on_message',
                        entry.suite.path,
                        exc_info=True,
                    )
                    conn.close(1011)
                    break
                finally:
                    conn.flush_deferred = False
                if not core.input_pending():
                    break  # (saves asking the core for nothing)
            elif event is None or kind is CloseReceived:
                break
        if core.state is not _OPEN:
            entry.stream.sync_state()
        if not entry.ended:
            self._want_write.discard(entry)
            self._flush(entry)

    def _flush(self, entry: _Entry) -> None:
        """Write what the socket takes; watch for writability while bytes
        remain; end the connection once it is closed and flushed."""
        try:
            done = entry.stream.try_flush()
        except ConnectionTerminatedException as e:
            _logger.info('%s: %s', entry.request.ws_resource, e)
            return self._end(entry)
        if done and entry.core.state is _CLOSED:
            return self._end(entry)
        if done == entry.writing:  # interest changes
            entry.writing = not done
            try:
                self._poller.modify(
                    entry.sock.fileno(), _IN | _OUT if entry.writing else _IN
                )
            except (KeyError, ValueError, OSError):
                return self._end(entry)
        if (
            not done
            and entry.core.state is _CLOSED
            and entry.linger_until is None
        ):
            entry.linger_until = time.monotonic() + self._close_timeout

    def _sweep(self, now: float) -> None:
        """The cores' timers (keepalive pings and their timeout, the wait
        for the peer's close), and the bound on writing a closed
        connection's last bytes."""
        for entry in list(self._entries.values()):
            if entry.linger_until is not None:
                if now >= entry.linger_until:
                    _logger.info(
                        '%s: the client did not take the last '
                        'bytes within %.1f s',
                        entry.request.ws_resource,
                        self._close_timeout,
                    )
                    self._end(entry)
                continue
            if not self._keepalive and entry.core.close_sent is None:
                continue  # no timer runs
            with entry.lock:
                before = entry.core.bytes_to_send
                reason = entry.core.poll_timers(now)
                queued = entry.core.bytes_to_send != before
            if reason is not None:
                _logger.info('%s: %s', entry.request.ws_resource, reason)
                self._end(entry)
            elif queued:
                self._flush(entry)

    def _end(self, entry: _Entry) -> None:
        if entry.ended:
            return
        entry.ended = True
        if self._entries.pop(entry.sock.fileno(), None) is not None:
            try:
                self._poller.unregister(entry.sock.fileno())
            except (KeyError, ValueError, OSError):
                pass
        with entry.lock:
            entry.core.connection_lost()
        entry.stream.sync_state()
        try:
            entry.suite.finish(entry.request, wait=False)
        finally:
            self._close_socket(entry)

    @staticmethod
    def _close_socket(entry: _Entry) -> None:
        sock = entry.sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass
        entry.on_end(entry.request)
