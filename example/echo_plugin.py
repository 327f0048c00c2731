"""Echo as an event-style plugin (the apache-websocket model).

Bind it to a location instead of scanning for it:
  standalone: python -m mod_pywebsocket.standalone -d example \
                  --handler /echo_plugin=example/echo_plugin.py
  Apache:     <Location /echo_plugin>
                PythonOption mod_pywebsocket.handler /path/to/example/echo_plugin.py
              </Location>
"""


def on_connect(conn):
    """Accept everyone; pick "echo" if the client offers it."""
    if 'echo' in conn.requested_protocols:
        conn.protocol = 'echo'
    conn.state['count'] = 0


def on_message(conn, message):
    conn.state['count'] += 1
    conn.send(message)


def on_disconnect(conn, code, reason):
    pass
