"""The standalone server's malloc tuning: a freed 1 MiB buffer is reused
for the next message instead of being faulted in again."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = '''
import os, resource, sys
from mod_pywebsocket.budget import keep_freed_buffers
if sys.argv[1] == 'tuned':
    assert keep_freed_buffers()
data = os.urandom(1 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):    # 200 echoes of 1 MiB, copied as a server does
    received = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    payload = b''.join(received)
    del received
    unmasked = bytes(bytearray(payload))
    del payload
    frame = b'\\x82\\x7f' + unmasked
    del unmasked, frame
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def _page_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, '-c', SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def test_freed_message_buffers_are_reused():
    untuned = _page_faults('plain')
    tuned = _page_faults('tuned')
    # glibc's defaults fault most pages of every message in again (a MiB
    # is 256 pages); tuned, the pages of the first echoes are reused.
    assert untuned > 200 * 256, untuned
    assert tuned < untuned / 10, (tuned, untuned)


def test_the_tuning_can_be_turned_off():
    from mod_pywebsocket.standalone import _parse_args_and_config

    assert _parse_args_and_config(['-p', '0'])[0].malloc_tuning is True
    assert (
        _parse_args_and_config(['-p', '0', '--no-malloc-tuning'])[
            0
        ].malloc_tuning
        is False
    )
