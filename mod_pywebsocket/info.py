"""What this installation is: versions, the masking path, the deflate
defaults (`python -m mod_pywebsocket --version` / `--info`)."""

from __future__ import annotations

import os
import logging
import sys
from typing import List

import mod_pywebsocket
from mod_pywebsocket import masking
from mod_pywebsocket.budget import keep_freed_buffers
from mod_pywebsocket.extensions import DeflateSettings


_BUILD_HINT = (
    'pip install . with a C compiler, or python setup.py build_ext '
    '--inplace in a checkout'
)


def speedups_state() -> str:
    """One line: which masking path runs, and how to get the fast one."""
    if masking.PATH == 'C extension':
        return 'C extension mod_pywebsocket._speedups (active)'
    forced = masking.forced_path()
    if masking.PATH == 'OpenSSL':
        why = (
            'MOD_PYWEBSOCKET_MASKING=openssl skips the C extension'
            if forced == 'openssl'
            else 'the C extension mod_pywebsocket._speedups is not built: '
            + _BUILD_HINT
        )
        return 'OpenSSL through ctypes (%s)' % why
    if forced == 'python':
        return (
            'pure Python (MOD_PYWEBSOCKET_MASKING=python or '
            'MOD_PYWEBSOCKET_PURE_MASKING is set; the faster paths are '
            'not used)'
        )
    return (
        'pure Python (the C extension mod_pywebsocket._speedups is not '
        'built: %s; OpenSSL\'s libcrypto was not found either)' % _BUILD_HINT
    )


def info_lines() -> List[str]:
    import platform  # (only for --info)

    deflate = DeflateSettings()
    return [
        'mod_pywebsocket %s' % mod_pywebsocket.__version__,
        'package: %s'
        % os.path.dirname(os.path.abspath(mod_pywebsocket.__file__)),
        'python: %s %s (%s)'
        % (
            platform.python_implementation(),
            platform.python_version(),
            sys.executable,
        ),
        'masking: %s' % speedups_state(),
        'permessage-deflate defaults: on, level %d, memory level %d, '
        'window bits %s'
        % (
            deflate.compression_level,
            deflate.memory_level,
            deflate.server_max_window_bits or 15,
        ),
    ]


def set_up_speed(logger: logging.Logger, malloc_tuning: bool) -> None:
    """What a host does once at startup (the standalone server) or per
    child (Apache): tune glibc's malloc unless told not to, and warn when
    masking runs without the C extension."""
    if malloc_tuning and not keep_freed_buffers():
        logger.info('malloc tuning: not glibc, left alone')
    if masking.PATH == 'pure Python':
        logger.warning(
            'masking in pure Python (slower for large messages): %s',
            speedups_state(),
        )
    elif masking.PATH == 'OpenSSL':
        logger.info('masking: %s', speedups_state())
