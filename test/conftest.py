"""Shared test helpers: the package and test/ on sys.path, prerequisites
that fail loudly in CI (CI=true) and skip with a reason elsewhere, free
loopback ports."""

from __future__ import annotations

import os
import socket
import sys

import pytest

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.dirname(TEST_DIR)
EXAMPLE_DIR = os.path.join(ROOT_DIR, 'example')
for path in (ROOT_DIR, TEST_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)

IN_CI = os.environ.get('CI', '').lower() == 'true'


def require(condition: bool, what: str) -> None:
    """Skip (locally) or fail (in CI) when a prerequisite is missing."""
    if condition:
        return
    message = 'prerequisite missing: %s (make system-deps installs it)' % what
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    """Apache tests marked prefork_only are not collected for the event
    MPM run (deselected, not skipped: nothing is missing)."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, 'callspec', None)
        if (
            item.get_closest_marker('prefork_only')
            and callspec is not None
            and callspec.params.get('apache') == 'event'
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
