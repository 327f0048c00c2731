"""Echo server on the `websockets` threading API (`websockets.sync`), for
bench/run.py.

    python websockets_sync_echo.py PORT

One thread per connection; every message is sent back. permessage-deflate
is offered (the library default), keepalive pings are off and messages up
to 64 MiB are accepted, as for the other servers. SIGTERM stops accepting,
closes every open connection with 1001 and exits.
"""

import signal
import sys
import threading

from websockets.sync.server import serve

connections = set()
lock = threading.Lock()


def echo(connection):
    with lock:
        connections.add(connection)
    try:
        for message in connection:
            connection.send(message)
    finally:
        with lock:
            connections.discard(connection)


def main(port):
    with serve(
        echo, '127.0.0.1', port, ping_interval=None, max_size=64 * 1024 * 1024
    ) as server:

        def stop(signum, frame):
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        print('listening on %d' % port, flush=True)
        server.serve_forever()
        with lock:
            remaining = list(connections)
        for connection in remaining:
            connection.close(1001)


if __name__ == '__main__':
    main(int(sys.argv[1]))
