"""The pywebsocket3 import name: aliases of mod_pywebsocket's modules."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

import pywebsocket3_upstream as upstream

ROOT = upstream.TOP


def test_modules_are_the_same_objects():
    import mod_pywebsocket.handshake.base
    import mod_pywebsocket.msgutil
    import pywebsocket3.handshake.base
    import pywebsocket3.msgutil
    from pywebsocket3 import common, memorizingfile, stream

    assert pywebsocket3.msgutil is mod_pywebsocket.msgutil
    assert pywebsocket3.handshake.base is mod_pywebsocket.handshake.base
    assert (
        common.HandshakeException is mod_pywebsocket.common.HandshakeException
    )
    assert stream.InvalidUTF8Exception is common.InvalidUTF8Exception
    assert (
        memorizingfile.MemorizingFile.__module__
        == 'mod_pywebsocket.memorizingfile'
    )
    assert pywebsocket3.IS_MOD_PYWEBSOCKET_ALIAS


def _alias_files():
    top = os.path.join(ROOT, 'pywebsocket3')
    return sorted(
        os.path.relpath(os.path.join(d, f), ROOT)
        for d, _, files in os.walk(top)
        for f in files
        if f.endswith('.py')
    )


def test_file_set_is_pywebsocket3s():
    # Installing either distribution over the other replaces every file.
    try:
        sdist = upstream._download()
    except upstream.FetchError as e:
        if os.environ.get('CI') == 'true':
            pytest.fail(str(e))
        pytest.skip(str(e))
    prefix = 'pywebsocket3-%s/' % upstream.VERSION
    with tarfile.open(sdist) as archive:
        theirs = sorted(
            m.name[len(prefix) :]
            for m in archive.getmembers()
            if m.name.startswith(prefix + 'pywebsocket3/')
            and m.name.endswith('.py')
        )
    assert _alias_files() == theirs


def test_earlier_sys_path_entry_wins(tmp_path):
    # A real pywebsocket3 earlier on sys.path shadows the alias; ours
    # keeps working.
    fake = tmp_path / 'pywebsocket3'
    fake.mkdir()
    (fake / '__init__.py').write_text('REAL = True\n')
    code = (
        'import pywebsocket3, mod_pywebsocket.msgutil; '
        'print(getattr(pywebsocket3, "REAL", False), '
        'getattr(pywebsocket3, "IS_MOD_PYWEBSOCKET_ALIAS", False))'
    )
    result = subprocess.run(
        [sys.executable, '-c', code],
        stdout=subprocess.PIPE,
        universal_newlines=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
    )
    # An editable install (pip install -e, as `make` does) resolves its
    # packages through setuptools' import hook, ahead of sys.path.
    editable = any(
        'editable' in type(f).__name__.lower()
        or 'editable' in getattr(f, '__name__', '').lower()
        for f in sys.meta_path
    )
    expected = ['False', 'True'] if editable else ['True', 'False']
    assert result.stdout.split() == expected
    result = subprocess.run(
        [sys.executable, '-c', code],
        stdout=subprocess.PIPE,
        universal_newlines=True,
        timeout=30,
        cwd=str(tmp_path.parent),
    )
    assert result.stdout.split() == ['False', 'True']
