"""Child RSS of Apache + mod_python over many echoed messages on ONE
WebSocket connection (ws and wss): does a long-lived connection's memory
stay flat?

    .venv/bin/python bench/apache_rss.py                  # 1,000,000 each
    .venv/bin/python bench/apache_rss.py --messages 200000 --schemes ws

A private prefork Apache (test/apache_fixture.py) serves a handler that
sends its PID, then echoes. The client pipelines 16-byte binary messages in
batches and reads the echoes back; the child's VmRSS is sampled every
tenth of the run. Prints the growth per million messages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'test'))
sys.path.insert(0, os.path.join(HERE, '..'))

from apache_fixture import (  # noqa: E402
    ApacheInstance,
    make_base_dir,  # noqa: E402
    make_certificate,
    make_dir,
)

PID_ECHO = '''
import os


def web_socket_transfer_data(request):
    stream = request.ws_stream
    stream.send_message(str(os.getpid()))
    while True:
        message = stream.receive_message()
        if message is None:
            return
        stream.send_message(message, binary=True)
'''

MASK = b'\x01\x02\x03\x04'
BATCH = 200


def _vm_rss_kib(pid: int) -> int:
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError('no VmRSS for %d' % pid)


def _masked(opcode: int, payload: bytes) -> bytes:
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + body


def _read_exactly(sock, size: int) -> bytes:
    chunks, left = [], size
    while left:
        data = sock.recv(min(left, 262144))
        if not data:
            raise ConnectionError('server closed the connection')
        chunks.append(data)
        left -= len(data)
    return b''.join(chunks)


def _connect(instance: ApacheInstance, scheme: str, cafile: str):
    port = instance.ssl_port if scheme == 'wss' else instance.port
    sock = socket.create_connection(('127.0.0.1', port), timeout=30)
    if scheme == 'wss':
        context = ssl.create_default_context(cafile=cafile)
        sock = context.wrap_socket(sock, server_hostname='localhost')
    sock.sendall(
        (
            'GET /pid_echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n'
            'Upgrade: websocket\r\nConnection: Upgrade\r\n'
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
            'Sec-WebSocket-Version: 13\r\n\r\n' % port
        ).encode()
    )
    head = b''
    while b'\r\n\r\n' not in head:
        head += sock.recv(1)
    assert head.startswith(b'HTTP/1.1 101'), head
    header = _read_exactly(sock, 2)
    pid = int(_read_exactly(sock, header[1] & 0x7F))
    return sock, pid


def run(
    instance: ApacheInstance, scheme: str, cafile: str, messages: int
) -> float:
    sock, pid = _connect(instance, scheme, cafile)
    payload = b'0123456789abcdef'
    batch = _masked(2, payload) * BATCH
    reply = (bytes([0x82, len(payload)]) + payload) * BATCH

    def echo(count: int) -> None:
        for _ in range(count // BATCH):
            sock.sendall(batch)
            assert _read_exactly(sock, len(reply)) == reply

    echo(20000)  # warm up
    start_kib = _vm_rss_kib(pid)
    started = time.monotonic()
    step = max(messages // 10, BATCH)
    done = 0
    print('%s: child %d, RSS %d KiB at start' % (scheme, pid, start_kib))
    while done < messages:
        echo(step)
        done += step
        print(
            '  %9d messages: RSS %6d KiB (%+d)'
            % (done, _vm_rss_kib(pid), _vm_rss_kib(pid) - start_kib),
            flush=True,
        )
    growth = (_vm_rss_kib(pid) - start_kib) / 1024.0 * 1e6 / done
    elapsed = time.monotonic() - started
    sock.sendall(_masked(8, b'\x03\xe8'))
    sock.close()
    print(
        '%s: %.2f MiB RSS growth per million messages '
        '(%d messages in %.0f s, %.0f/s)'
        % (scheme, growth, done, elapsed, done / elapsed)
    )
    return growth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--messages', type=int, default=1000000)
    parser.add_argument('--schemes', default='ws,wss')
    args = parser.parse_args()
    base = make_base_dir('mpws-rss-')
    try:
        root = make_dir(os.path.join(base, 'wsh'))
        path = os.path.join(root, 'pid_echo_wsh.py')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(PID_ECHO)
        os.chmod(path, 0o644)
        certificate = make_certificate(make_dir(os.path.join(base, 'tls')))
        instance = ApacheInstance(
            os.path.join(base, 'apache'),
            ssl=certificate,
            timeout=300,
            options={'mod_pywebsocket.handler_root': root},
            mpm_conf='StartServers 2\nMinSpareServers 1\nMaxSpareServers 4\n',
        )
        instance.start()
        try:
            for scheme in args.schemes.split(','):
                run(instance, scheme, certificate[0], args.messages)
        finally:
            instance.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    main()
