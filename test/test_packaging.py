"""The package as users get it: a wheel installed into a clean virtualenv
serves example/ through its console script and `python -m`, and the sdist
carries the examples and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port, require
from mod_pywebsocket import client

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    """A wheel and an sdist built from this checkout."""
    out = tmp_path_factory.mktemp('dist')
    source = tmp_path_factory.mktemp('src') / 'tree'
    # Build from a copy: the checkout's build artefacts stay out of it.
    shutil.copytree(
        ROOT_DIR,
        source,
        ignore=shutil.ignore_patterns(
            '.venv',
            '.git',
            '.cache',
            'build',
            '*.egg-info',
            'node_modules',
            '.venv-*',
            'out',
            '__pycache__',
            '*.so',
            '_build',
            '_generated',
        ),
    )
    subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '--no-deps',
            '-q',
            '-w',
            str(out),
            str(source),
        ],
        check=True,
        timeout=600,
    )
    subprocess.run(
        [
            sys.executable,
            '-m',
            'build',
            '--sdist',
            '-o',
            str(out),
            str(source),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return out


def test_sdist_has_examples_and_tests(dist):
    (sdist,) = [p for p in os.listdir(dist) if p.endswith('.tar.gz')]
    with tarfile.open(os.path.join(dist, sdist)) as tar:
        names = {
            name.split('/', 1)[1] for name in tar.getnames() if '/' in name
        }
    for needed in (
        'example/echo_wsh.py',
        'example/console.html',
        'test/conftest.py',
        'test/mock.py',
        'test/test_connection.py',
        'mod_pywebsocket/_speedups.c',
        'mod_pywebsocket/py.typed',
        'LICENSE',
        'CHANGELOG.md',
        'pywebsocket3/__init__.py',
    ):
        assert needed in names, needed


def test_wheel_in_a_clean_venv_serves_example(dist, tmp_path):
    (wheel,) = [p for p in os.listdir(dist) if p.endswith('.whl')]
    venv = tmp_path / 'venv'
    subprocess.run(
        [sys.executable, '-m', 'venv', str(venv)], check=True, timeout=120
    )
    python = str(venv / 'bin' / 'python')
    subprocess.run(
        [
            python,
            '-m',
            'pip',
            'install',
            '-q',
            '--no-deps',
            os.path.join(dist, wheel),
        ],
        check=True,
        timeout=300,
    )
    env = {
        'PATH': str(venv / 'bin') + os.pathsep + os.environ['PATH'],
        'HOME': str(tmp_path),
    }
    version = subprocess.run(
        [python, '-m', 'mod_pywebsocket', '--version'],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=60,
    )
    assert version.stdout.startswith('mod_pywebsocket ')
    for command in (
        ['mod_pywebsocket-standalone'],
        [python, '-m', 'mod_pywebsocket.standalone'],
        [python, '-m', 'pywebsocket3.standalone'],
    ):
        port = free_port()
        server = subprocess.Popen(
            command + ['-H', '127.0.0.1', '-p', str(port), '-d', EXAMPLE_DIR],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=str(tmp_path),
        )
        try:
            assert 'serving' in server.stdout.readline()
            with client.connect('ws://127.0.0.1:%d/echo' % port) as ws:
                ws.send('from the wheel')
                assert ws.receive() == 'from the wheel'
        finally:
            server.terminate()
            server.wait(15)
    info = subprocess.run(
        ['mod_pywebsocket-client', '--help'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0 and 'ws://' in info.stdout


APACHE_PYTHON = '/usr/bin/python3'  # the Python Debian's mod_python runs


def test_apache_python_builds_the_c_extension_in_a_checkout(tmp_path):
    """What README and the startup warning tell an Apache admin to run in
    a clone: Debian 12's setuptools (66) cannot read pyproject.toml, and
    setup.py builds the extension without it."""
    probe = (
        subprocess.run(
            [
                APACHE_PYTHON,
                '-c',
                'import setuptools, sysconfig, os; '
                'assert os.path.exists(os.path.join('
                'sysconfig.get_paths()["include"], "Python.h"))',
            ],
            capture_output=True,
        )
        if os.path.exists(APACHE_PYTHON)
        else None
    )
    require(
        probe is not None and probe.returncode == 0 and shutil.which('gcc'),
        '%s with setuptools and its headers (python3-setuptools, '
        'python3-dev), and gcc' % APACHE_PYTHON,
    )
    tree = tmp_path / 'mod_pywebsocket-clone'
    shutil.copytree(
        os.path.join(ROOT_DIR, 'mod_pywebsocket'),
        tree / 'mod_pywebsocket',
        ignore=shutil.ignore_patterns('*.so', '__pycache__'),
    )
    for name in ('setup.py', 'pyproject.toml', 'README.md', 'LICENSE'):
        shutil.copy(os.path.join(ROOT_DIR, name), tree / name)

    def info() -> str:
        return subprocess.run(
            [APACHE_PYTHON, '-m', 'mod_pywebsocket', '--info'],
            cwd=str(tree),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    # (without the extension a clone masks through libcrypto)
    assert 'masking: OpenSSL through ctypes (the C extension' in info()
    build = subprocess.run(
        [APACHE_PYTHON, 'setup.py', 'build_ext', '--inplace'],
        cwd=str(tree),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert 'masking: C extension mod_pywebsocket._speedups (active)' in info()
