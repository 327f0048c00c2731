"""A decompression bomb against a real server process: about 1 MB of
permessage-deflate data that would inflate to 1 GiB ends in close 1009,
and the server's peak memory stays near the message size limit."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port
from mod_pywebsocket import client, common
from mod_pywebsocket.frame import build_frame


def _peak_rss_kib(pid: int) -> int:
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise AssertionError('no VmHWM')


def _bomb(inflated_size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated_size >> 20)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b''.join(parts)[:-4]


def test_bomb_closes_1009_with_bounded_memory():
    port = free_port()
    limit = 16 << 20
    process = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(port),
            '-d',
            EXAMPLE_DIR,
            '--max-message-size',
            str(limit),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=ROOT_DIR),
    )
    try:
        assert b'serving' in process.stdout.readline()
        ws = client.connect('ws://127.0.0.1:%d/echo' % port, deflate=True)
        assert ws.extensions.startswith('permessage-deflate')
        ws.send('warm up')
        assert ws.receive() == 'warm up'
        before = _peak_rss_kib(process.pid)
        payload = _bomb(1 << 30)  # 1 GiB of zeros
        assert len(payload) < 2 << 20
        ws.transport.write(
            build_frame(common.OPCODE_BINARY, payload, rsv1=1, mask=True)
        )
        assert ws.receive() is None
        assert ws.close_code == common.STATUS_MESSAGE_TOO_BIG
        ws.transport.close()
        grown_mib = (_peak_rss_kib(process.pid) - before) / 1024
        # Bounded by the 16 MiB limit (plus buffers), never near 1 GiB.
        print("peak RSS growth %.1f MiB" % grown_mib)
        assert grown_mib < 100, grown_mib
        # The server still serves.
        with client.connect(
            'ws://127.0.0.1:%d/echo' % port, deflate=True
        ) as again:
            again.send('after the bomb')
            assert again.receive() == 'after the bomb'
    finally:
        process.terminate()
        process.wait(10)
