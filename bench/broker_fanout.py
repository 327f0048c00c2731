#!/usr/bin/env python3
"""Fan-out across nodes: one sender, 1,000 listeners on /chat.

    .venv/bin/python bench/broker_fanout.py              # ~2-4 minutes
    .venv/bin/python bench/broker_fanout.py --clients 200 --messages 20

Configurations, each on fresh servers (standalone, example/chat_wsh.py)
and one private redis-server:

  one node       --broker local, all listeners on it
  two nodes      --broker redis://... (pub/sub), listeners split over both
  two durable    the same with ?mode=durable (Redis Streams)
  socketio       python-socketio 5 + aiohttp with AsyncRedisManager, two
                 nodes (installed into bench/.venv-socketio on first use;
                 skipped with a message if that fails)

The load (bench/fanout_load.py) runs in one asyncio process next to the
servers on the same machine: on 2 cores its own CPU is part of what is
measured. Prints a table; writes bench/out/broker-fanout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(ROOT_DIR, 'test'))
sys.path.insert(0, BENCH_DIR)

from procfs import raise_nofile_limit  # noqa: E402
from redis_fixture import RedisServer, ServerProcess, _wait_port  # noqa

from conftest import free_port  # noqa: E402

LOAD = os.path.join(BENCH_DIR, 'fanout_load.py')
SIO_VENV = os.path.join(BENCH_DIR, '.venv-socketio')
SIO_SERVER = os.path.join(BENCH_DIR, 'servers', 'socketio_redis_chat.py')


def _load(python, kind, urls, args):
    result = subprocess.run(
        [
            python,
            LOAD,
            '--kind',
            kind,
            '--urls',
            ','.join(urls),
            '--clients',
            str(args.clients),
            '--messages',
            str(args.messages),
            '--timeout',
            str(args.timeout),
        ],
        capture_output=True,
        text=True,
        timeout=args.timeout + 180,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _ours(tmp, broker, count, args):
    nodes = [
        ServerProcess(
            tmp,
            broker,
            '--log-level',
            'warning',
            '--keepalive-interval',
            '0',
            '-q',
            '1024',
            name='ours%d' % i,
        ).start()
        for i in range(count)
    ]
    try:
        return _load(sys.executable, 'ws', [n.url() for n in nodes], args)
    finally:
        for n in nodes:
            n.stop()


def _socketio_python():
    python = os.path.join(SIO_VENV, 'bin', 'python')
    if not os.path.exists(python):
        subprocess.run([sys.executable, '-m', 'venv', SIO_VENV], check=True)
        subprocess.run(
            [
                python,
                '-m',
                'pip',
                'install',
                '-q',
                'python-socketio>=5',
                'aiohttp',
                'redis',
            ],
            check=True,
            timeout=600,
        )
    return python


def _socketio(tmp, redis_url, args):
    python = _socketio_python()
    ports = [free_port() for _ in range(2)]
    procs = [
        subprocess.Popen(
            [python, SIO_SERVER, str(p), redis_url],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, 'sio%d.log' % p), 'wb'),
        )
        for p in ports
    ]
    try:
        for p in ports:
            if not _wait_port(p, time.monotonic() + 30):
                raise RuntimeError('socketio server did not start')
        return _load(
            python,
            'socketio',
            ['http://127.0.0.1:%d' % p for p in ports],
            args,
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clients', type=int, default=1000)
    parser.add_argument('--messages', type=int, default=50)
    parser.add_argument('--timeout', type=float, default=60.0)
    parser.add_argument('--no-socketio', action='store_true')
    args = parser.parse_args()
    raise_nofile_limit(4 * args.clients + 1024)
    rows = []
    with tempfile.TemporaryDirectory(prefix='mpws-fanout-') as tmp:
        redis_server = RedisServer(tmp).start()
        try:
            runs = [
                ('ours, one node', lambda: _ours(tmp, 'local', 1, args)),
                (
                    'ours, two nodes, Redis pub/sub',
                    lambda: _ours(tmp, redis_server.url, 2, args),
                ),
                (
                    'ours, two nodes, Redis Streams (durable)',
                    lambda: _ours(
                        tmp, redis_server.url + '?mode=durable', 2, args
                    ),
                ),
            ]
            if not args.no_socketio:
                runs.append(
                    (
                        'python-socketio, two nodes, AsyncRedisManager',
                        lambda: _socketio(tmp, redis_server.url, args),
                    )
                )
            for name, run in runs:
                print('running: %s' % name, file=sys.stderr, flush=True)
                try:
                    row = run()
                except (
                    RuntimeError,
                    OSError,
                    subprocess.SubprocessError,
                    ValueError,
                ) as e:
                    print('  skipped: %s' % e, file=sys.stderr)
                    continue
                row['name'] = name
                rows.append(row)
        finally:
            redis_server.stop()
    os.makedirs(os.path.join(BENCH_DIR, 'out'), exist_ok=True)
    with open(os.path.join(BENCH_DIR, 'out', 'broker-fanout.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    print(
        '| 1 → %d clients, %d messages | delivered | deliveries/s | '
        'p50 ms | p99 ms |' % (args.clients, args.messages)
    )
    print('|---|---|---|---|---|')
    for r in rows:
        print(
            '| %s | %d/%d | %s | %.1f | %.1f |'
            % (
                r['name'],
                r['delivered'],
                r['expected'],
                '{:,}'.format(r['deliveries_per_s'] or 0),
                r['p50_ms'] or 0,
                r['p99_ms'] or 0,
            )
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
