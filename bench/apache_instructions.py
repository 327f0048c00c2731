"""User-space instructions per WebSocket connection under Apache, counted
by valgrind's callgrind: a figure the machine's load does not move, for
changes smaller than what bench/run.py's timings resolve on a shared
machine.

    .venv/bin/python bench/apache_instructions.py \\
        [--baseline-tree DIR] [--connections 400] [--warmup 230]

Each connection is what bench/run.py's handshakes scenario makes: an RFC
6455 handshake to example/echo_wsh.py, then the client's close, answered.
Apache runs as one process (`-X`, the work of one prefork child) under
callgrind, once with `--warmup` connections and once with `--warmup` +
`--connections`; the difference of the two totals, divided by
`--connections`, is the count per connection (start-up, imports and the
first connections cancel out). Counts are of user space only: system
calls are counted up to the kernel, not in it. Needs valgrind
(`apt install valgrind`); a run takes about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'test'))

from apache_fixture import (  # noqa: E402
    APACHE_BIN,
    ApacheInstance,
    make_base_dir,
    tree_python_conf,
)

REQUEST = (
    'GET /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n'
    'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
    'Sec-WebSocket-Version: 13\r\n\r\n'
)
# a masked close frame with code 1000
CLOSE = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])


def connect_and_close(port: int) -> None:
    """One handshake, then a close; returns when the server has closed."""
    with socket.create_connection(('127.0.0.1', port), timeout=60) as s:
        s.sendall((REQUEST % port).encode('ascii'))
        response = b''
        while b'\r\n\r\n' not in response:
            data = s.recv(4096)
            if not data:
                raise RuntimeError('connection closed during the handshake')
            response += data
        if not response.startswith(b'HTTP/1.1 101'):
            raise RuntimeError(
                'no 101: %r' % response.split(b'\r\n', 1)[0].decode()
            )
        s.sendall(CLOSE)
        while s.recv(4096):
            pass


def _wait_idle(pid: int, limit: float = 30.0) -> None:
    """Wait until Apache waits for the next connection: its SIGTERM
    handler exits from wherever it interrupts, and can deadlock when that
    is inside malloc or Python (valgrind makes such windows long)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/wchan' % pid) as f:
                if 'accept' in f.read():
                    return
        except OSError:
            return
        time.sleep(0.05)


def count(tree: str, connections: int, out_dir: str, label: str) -> int:
    """Total user-space instructions of an Apache -X that served
    `connections` connections (and started and stopped)."""
    base = make_base_dir('mpws-instructions-')
    instance = ApacheInstance(
        base,
        log_level='warn',
        include=tree_python_conf(base, tree),
        # (-X serves in the one process: no children to start or keep)
        mpm_conf='StartServers 1\nMinSpareServers 1\nMaxSpareServers 1\n'
        'ServerLimit 1\nMaxRequestWorkers 1\n',
    )
    with open(instance.conf_path, 'w') as f:
        f.write(instance.config())
    out = os.path.join(out_dir, '%s-%d.out' % (label, connections))
    open(out, 'w').close()
    if os.geteuid() == 0:
        # (the config's User: callgrind writes the file after the switch)
        user = pwd.getpwnam('www-data')
        os.chown(out, user.pw_uid, user.pw_gid)
    command = [
        'env',
        '-i',
        'PATH=/usr/sbin:/usr/bin:/bin',
        'LANG=C',
        'PYTHONHASHSEED=0',  # (the same dict layouts in every run)
        'valgrind',
        '--tool=callgrind',
        '--dump-instr=no',
        '--callgrind-out-file=' + out,
        APACHE_BIN,
        '-X',
        '-f',
        instance.conf_path,
    ]
    log = open(os.path.join(out_dir, label + '-valgrind.log'), 'w')
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                connect_and_close(instance.port)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        'Apache under valgrind did not serve (see %s)'
                        % log.name
                    )
                time.sleep(0.5)
        for _ in range(connections - 1):
            connect_and_close(instance.port)
    finally:
        _wait_idle(process.pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
    with open(out) as f:
        match = re.search(r'^totals: (\d+)', f.read(), re.M)
    if match is None:
        raise RuntimeError('callgrind wrote no totals to %s' % out)
    return int(match.group(1))


def per_connection(
    tree: str, warmup: int, connections: int, out_dir: str, label: str
) -> float:
    first = count(tree, warmup, out_dir, label)
    second = count(tree, warmup + connections, out_dir, label)
    return (second - first) / connections


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        '--baseline-tree',
        help='another checkout to count too (its C extension built)',
    )
    parser.add_argument('--connections', type=int, default=400)
    parser.add_argument('--warmup', type=int, default=230)
    parser.add_argument(
        '--keep',
        metavar='DIR',
        help='keep the callgrind files here (for callgrind_annotate)',
    )
    args = parser.parse_args(argv)
    if shutil.which('valgrind') is None:
        print('valgrind is not installed (apt install valgrind)')
        return 2
    if args.connections < 1 or args.warmup < 1:
        parser.error('--connections and --warmup must be at least 1')
    trees = [('ours', ROOT)]
    if args.baseline_tree:
        trees.append(('baseline', os.path.abspath(args.baseline_tree)))
    out_dir = args.keep or make_base_dir('mpws-callgrind-')
    os.makedirs(out_dir, exist_ok=True)
    os.chmod(out_dir, 0o777)  # (Apache's user writes there)
    try:
        results = {}
        for label, tree in trees:
            results[label] = per_connection(
                tree, args.warmup, args.connections, out_dir, label
            )
            print(
                '%-8s %s: %.0f instructions per connection'
                % (label, tree, results[label]),
                flush=True,
            )
        if 'baseline' in results:
            print(
                'ours / baseline: %.3f'
                % (results['ours'] / results['baseline'])
            )
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
