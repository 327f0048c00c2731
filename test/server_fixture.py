"""Run the standalone server in-process on a free loopback port, and make
TLS certificates with openssl for wss tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from typing import Iterator

from conftest import EXAMPLE_DIR, require
from mod_pywebsocket.standalone import WebSocketServer, parse_args


@contextlib.contextmanager
def running_server(
    *args: str, document_root: str = EXAMPLE_DIR
) -> Iterator[WebSocketServer]:
    """A started WebSocketServer (port in `.port`), stopped afterwards."""
    options = parse_args(
        ['-H', '127.0.0.1', '-p', '0', '-d', document_root, *args]
    )
    server = WebSocketServer(options)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={'poll_interval': 0.05},
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.close_all(timeout=2)
        server.stop_event_loop()
        thread.join(5)


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(
        ['openssl', *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def make_certificates(directory: str) -> dict:
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, all signed by the CA. Returns their paths."""
    require(shutil.which('openssl') is not None, 'openssl')
    d = str(directory)
    _openssl(
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=mod_pywebsocket test CA',
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        cwd=d,
    )
    with open(os.path.join(d, 'san.ext'), 'w') as f:
        f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n')
    for name, cn in (('server', '127.0.0.1'), ('client', 'test client')):
        _openssl(
            'req',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-subj',
            '/CN=' + cn,
            '-keyout',
            name + '.key',
            '-out',
            name + '.csr',
            cwd=d,
        )
        extra = ['-extfile', 'san.ext'] if name == 'server' else []
        _openssl(
            'x509',
            '-req',
            '-in',
            name + '.csr',
            '-CA',
            'ca.pem',
            '-CAkey',
            'ca.key',
            '-CAcreateserial',
            '-days',
            '2',
            '-out',
            name + '.pem',
            *extra,
            cwd=d,
        )
    paths = {
        n: os.path.join(d, n)
        for n in (
            'ca.pem',
            'server.pem',
            'server.key',
            'client.pem',
            'client.key',
        )
    }
    for path in paths.values():
        os.chmod(path, 0o644)
    return paths
