#!/usr/bin/env python3
"""python-socketio chat on aiohttp with its Redis manager: every 'chat'
event goes to every client of every such server on the same Redis.

    python socketio_redis_chat.py PORT REDIS_URL"""

import sys

import socketio
from aiohttp import web

port, redis_url = int(sys.argv[1]), sys.argv[2]
sio = socketio.AsyncServer(
    async_mode='aiohttp', client_manager=socketio.AsyncRedisManager(redis_url)
)
app = web.Application()
sio.attach(app)


@sio.on('chat')
async def chat(sid, data):
    await sio.emit('chat', data)


web.run_app(app, host='127.0.0.1', port=port, print=None)
