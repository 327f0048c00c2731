"""Event-style plugins the tests bind with --handler (importable spec)."""

import threading

from mod_pywebsocket import common


class Recorder:
    """Records every callback; refuses clients offering 'refuse', raises
    in on_message for 'boom', closes with 4000 on 'close'."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.connections = []
        self.disconnected = threading.Event()

    def reset(self):
        with self.lock:
            self.events.clear()
            self.connections.clear()
        self.disconnected.clear()

    def on_connect(self, conn):
        if 'refuse' in conn.requested_protocols:
            return False
        if 'explode' in conn.requested_protocols:
            raise RuntimeError('on_connect exploded')
        if 'chosen' in conn.requested_protocols:
            conn.protocol = 'chosen'
        with self.lock:
            self.events.append(('connect', conn.path))
            self.connections.append(conn)
        conn.send('welcome')  # allowed before the 101 is out

    def on_message(self, conn, message):
        with self.lock:
            self.events.append(('message', message))
        if message == 'boom':
            raise ValueError('on_message exploded')
        if message == 'close':
            conn.close(4000, 'asked to')
            return
        conn.send(message)

    def on_disconnect(self, conn, code, reason):
        with self.lock:
            self.events.append(('disconnect', code, reason))
        self.disconnected.set()


recorder = Recorder()


def on_message(conn, message):
    """Module-level plugin: broadcast to the room (used as 'event_plugins')."""
    conn.broadcast(message)


STATUS = common.STATUS_NORMAL_CLOSURE


class Burst:
    """Answers each message with 200 numbered copies (a send queue that is
    still full when the next frame arrives)."""

    count = 200

    def on_message(self, conn, message):
        for i in range(self.count):
            conn.send('%s %d' % (message, i))


burst = Burst()
