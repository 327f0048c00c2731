"""Echo server on the `websockets` asyncio API, for bench/run.py.

    python websockets_asyncio_echo.py PORT

Serves ws://127.0.0.1:PORT/ (any path): every message is sent back.
permessage-deflate is offered (the library default), keepalive pings are
off and messages up to 64 MiB are accepted, as for the other servers.
SIGTERM closes every connection with 1001 and exits.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(connection):
    async for message in connection:
        await connection.send(message)


async def main(port):
    async with serve(
        echo, '127.0.0.1', port, ping_interval=None, max_size=64 * 1024 * 1024
    ) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        print('listening on %d' % port, flush=True)
        await server.wait_closed()


if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1])))
