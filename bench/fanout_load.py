#!/usr/bin/env python3
"""Fan-out load: N clients spread over the given URLs listen, one more
client sends M numbered messages to a chat that broadcasts to everyone;
prints one JSON line: deliveries/s and latency percentiles.

    python fanout_load.py --kind ws --urls ws://h:1/chat,ws://h:2/chat
    python fanout_load.py --kind socketio --urls http://h:1,http://h:2

`ws` uses the websockets library, `socketio` python-socketio's
AsyncClient (run it with the Python that has it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Dict, List


class Stats:
    def __init__(self, clients: int, messages: int) -> None:
        self.sent_at: Dict[int, float] = {}
        self.latencies: List[float] = []
        self.received = 0
        self.expected = clients * messages
        self.done = asyncio.Event()
        self.last = 0.0

    def got(self, text: str) -> None:
        if not text.startswith('m'):
            return
        seq = int(text[1:])
        now = time.monotonic()
        sent = self.sent_at.get(seq)
        if sent is None:
            return  # (the warm-up probe)
        self.latencies.append(now - sent)
        self.received += 1
        self.last = now
        if self.received >= self.expected:
            self.done.set()


async def _ws_clients(urls, count, stats, probe):
    from websockets.asyncio.client import connect

    async def one(url):
        ws = await connect(
            url, compression=None, max_queue=None, open_timeout=60
        )

        async def read():
            async for message in ws:
                if message == 'probe':
                    probe[0] += 1
                else:
                    stats.got(message)

        asyncio.ensure_future(read())
        return ws

    conns = []
    for i in range(0, count, 100):
        conns += await asyncio.gather(
            *(one(urls[j % len(urls)]) for j in range(i, min(count, i + 100)))
        )
    sender = await connect(urls[0], compression=None, open_timeout=60)

    async def send(text):
        await sender.send(text)

    return conns + [sender], send


async def _sio_clients(urls, count, stats, probe):
    import socketio

    async def one(url):
        c = socketio.AsyncClient(reconnection=False)

        @c.on('chat')
        async def chat(data):
            if data == 'probe':
                probe[0] += 1
            else:
                stats.got(data)

        await c.connect(url, transports=['websocket'])
        return c

    conns = []
    for i in range(0, count, 50):
        conns += await asyncio.gather(
            *(one(urls[j % len(urls)]) for j in range(i, min(count, i + 50)))
        )
    sender = socketio.AsyncClient(reconnection=False)
    await sender.connect(urls[0], transports=['websocket'])

    async def send(text):
        await sender.emit('chat', text)

    return conns + [sender], send


async def main(args) -> dict:
    urls = args.urls.split(',')
    stats = Stats(args.clients, args.messages)
    probe = [0]
    make = _ws_clients if args.kind == 'ws' else _sio_clients
    conns, send = await make(urls, args.clients, stats, probe)
    # every listener is in the room: a probe reaches all of them
    deadline = time.monotonic() + 30
    while probe[0] < args.clients and time.monotonic() < deadline:
        probe[0] = 0
        await send('probe')
        await asyncio.sleep(1.0)
    ready = probe[0] >= args.clients
    start = time.monotonic()
    for seq in range(args.messages):
        stats.sent_at[seq] = time.monotonic()
        await send('m%d' % seq)
        if args.pause:
            await asyncio.sleep(args.pause)
    try:
        await asyncio.wait_for(stats.done.wait(), args.timeout)
    except asyncio.TimeoutError:
        pass
    elapsed = (stats.last or time.monotonic()) - start
    lat = sorted(stats.latencies)

    def pct(p):
        return (
            lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None
        )

    for c in conns:
        try:
            await (c.close() if args.kind == 'ws' else c.disconnect())
        except Exception:
            pass
    return {
        'kind': args.kind,
        'urls': len(urls),
        'clients': args.clients,
        'messages': args.messages,
        'ready': ready,
        'delivered': stats.received,
        'expected': stats.expected,
        'seconds': round(elapsed, 3),
        'deliveries_per_s': round(stats.received / elapsed)
        if elapsed > 0
        else None,
        'p50_ms': pct(0.50),
        'p99_ms': pct(0.99),
    }


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kind', choices=['ws', 'socketio'], default='ws')
    parser.add_argument('--urls', required=True)
    parser.add_argument('--clients', type=int, default=1000)
    parser.add_argument('--messages', type=int, default=50)
    parser.add_argument(
        '--pause',
        type=float,
        default=0.0,
        help='seconds between sends (0: a burst)',
    )
    parser.add_argument('--timeout', type=float, default=60.0)
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
