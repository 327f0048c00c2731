"""Chat on the event API: every message goes to everyone connected to
/chat in this process (one Apache child, or the standalone server).
Sending never blocks: a member too slow to keep up is closed with 1008."""


def on_connect(conn):
    conn.state['name'] = conn.query.get('name', [conn.peer])[0]


def on_message(conn, message):
    conn.broadcast(message)


def on_disconnect(conn, code, reason):
    pass
