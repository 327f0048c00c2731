"""Cost of one Apache connection read and write call, C extension vs
ctypes (apache_io.ConnectionIO), inside a private prefork Apache child:

    .venv/bin/python bench/apache_io_calls.py [--calls 20000] [--reps 5]

The handler attaches a second ConnectionIO to its own connection and
alternates the two paths: non-blocking 16-byte reads of bytes the client
sent ahead, then 16-byte writes (a text frame each) that the client
drains. Prints µs per call for each path and repetition, and the medians.
An end-to-end benchmark cannot resolve ~1 µs per message on a shared
machine; this can.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'test'))
sys.path.insert(0, os.path.join(HERE, '..'))

from apache_fixture import (  # noqa: E402
    ApacheInstance,
    make_base_dir,
    make_dir,
)

HANDLER = '''
import json
import time

from mod_pywebsocket import apache_io

FRAME = b'\\x81\\x0eabcdefghijklmn'  # 16 bytes: a 14-byte text frame


def web_socket_transfer_data(request):
    calls, reps = map(int, request.ws_stream.receive_message().split())
    io, why = apache_io.attach(request.connection)
    if io is None:
        request.ws_stream.send_message(json.dumps({'error': why}))
        return
    c_path = apache_io._c_read, apache_io._c_write
    results = []
    for _ in range(reps):
        for name in ('C extension', 'ctypes'):
            if name == 'ctypes':
                apache_io._c_read = apache_io._c_write = None
            else:
                apache_io._c_read, apache_io._c_write = c_path
            started = time.perf_counter()
            for _ in range(calls):
                io.read(size=16)
            read = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(calls):
                io.write(FRAME)
            write = time.perf_counter() - started
            results.append((name, read / calls * 1e6, write / calls * 1e6))
    apache_io._c_read, apache_io._c_write = c_path
    request.ws_stream.send_message(json.dumps(results))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=20000)
    parser.add_argument('--reps', type=int, default=5)
    args = parser.parse_args()

    import json

    from websockets.sync.client import connect

    base = make_base_dir('mpws-iocalls-')
    root = make_dir(os.path.join(base, 'wsh'))
    path = os.path.join(root, 'iocalls_wsh.py')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(HANDLER)
    os.chmod(path, 0o644)
    instance = ApacheInstance(
        base, options={'mod_pywebsocket.handler_root': root}
    ).start()
    try:
        with connect(
            instance.url('/iocalls'), max_size=None, ping_interval=None
        ) as ws:
            ws.send('%d %d' % (args.calls, args.reps))
            # What the reads take: 16 bytes per call, both paths, all reps.
            ws.socket.sendall(b'z' * (16 * args.calls * 2 * args.reps + 64))
            while True:
                message = ws.recv(timeout=600)
                if isinstance(message, str) and message[:1] in '[{':
                    break
        results = json.loads(message)
        if isinstance(results, dict):
            sys.exit('attach failed: %s' % results['error'])
        print('path          read µs  write µs')
        for name, read, write in results:
            print('%-12s %8.2f %9.2f' % (name, read, write))
        for name in ('C extension', 'ctypes'):
            reads = [r for n, r, _ in results if n == name]
            writes = [w for n, _, w in results if n == name]
            print(
                'median %-12s read %.2f µs, write %.2f µs'
                % (name, statistics.median(reads), statistics.median(writes))
            )
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    main()
