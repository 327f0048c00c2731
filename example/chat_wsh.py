"""Chat on the event API: every message goes to everyone connected to
/chat, on every server sharing the broker (with `--broker redis://...` or
`PythonOption mod_pywebsocket.broker redis://...`: all Apache children,
all standalone servers; without: this process only). Sending never
blocks: a member too slow to keep up is closed with 1008.

Commands: `/join ROOM`, `/leave ROOM`, `/to ROOM TEXT` (to the members of
a room), `/who [ROOM]` (connection ids present, on every node), `/id`.
"""

from mod_pywebsocket import broker


def on_connect(conn):
    conn.state['name'] = conn.query.get('name', [conn.peer])[0]


def on_message(conn, message):
    if not isinstance(message, str) or not message.startswith('/'):
        conn.broadcast(message)
        return
    command, _, rest = message.partition(' ')
    if command == '/join' and rest:
        conn.join(rest)
        conn.send('joined %s' % rest)
    elif command == '/leave' and rest:
        conn.leave(rest)
        conn.send('left %s' % rest)
    elif command == '/to' and ' ' in rest:
        room, _, text = rest.partition(' ')
        conn.send_to_group(room, '[%s] %s' % (room, text))
    elif command == '/who':
        ids = (
            broker.members(rest)
            if rest
            else broker.resource_members(conn.resource)
        )
        conn.send('present: %s' % ' '.join(ids))
    elif command == '/id':
        conn.send('you are %s' % conn.id)
    else:
        conn.broadcast(message)


def on_disconnect(conn, code, reason):
    pass
