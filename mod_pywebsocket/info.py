"""What this installation is: versions, the masking path, the deflate
defaults (`python -m mod_pywebsocket --version` / `--info`)."""

from __future__ import annotations

import os
import platform
import logging
import sys
from typing import List

import mod_pywebsocket
from mod_pywebsocket import masking
from mod_pywebsocket.budget import keep_freed_buffers
from mod_pywebsocket.extensions import DeflateSettings


def speedups_state() -> str:
    """One line: which masking path runs, and how to get the fast one."""
    if masking.ACCELERATED:
        return 'C extension mod_pywebsocket._speedups (active)'
    if os.environ.get('MOD_PYWEBSOCKET_PURE_MASKING'):
        return (
            'pure Python (MOD_PYWEBSOCKET_PURE_MASKING is set; the C '
            'extension is not used)'
        )
    return (
        'pure Python (the C extension mod_pywebsocket._speedups is not '
        'built: pip install . with a C compiler, or python setup.py '
        'build_ext --inplace in a checkout)'
    )


def info_lines() -> List[str]:
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
    masking runs in pure Python."""
    if malloc_tuning and not keep_freed_buffers():
        logger.info('malloc tuning: not glibc, left alone')
    if not masking.ACCELERATED:
        logger.warning(
            'masking in pure Python (slower for large messages): %s',
            speedups_state(),
        )
