"""pywebsocket3 4.0.2's own tests and examples, fetched from PyPI.

`prepare()` downloads the sdist once (`pip download`, checked against a
pinned SHA-256) into `.cache/pywebsocket3/` at the top of the checkout and
builds a tree shaped like the sdist:

    <tree>/test/          pywebsocket3's test/ (unchanged)
    <tree>/example/       pywebsocket3's example/ (unchanged)
    <tree>/pywebsocket3   a symlink to *our* pywebsocket3 alias package

so its tests find "the package" exactly where they look for it (their
set_sys_path.py puts <tree> first on sys.path; test_endtoend runs
<tree>/pywebsocket3/standalone.py) and get mod_pywebsocket. Nothing of
pywebsocket3's own package is extracted.

`run_unittest(tree, module)` runs one of its test modules with unittest
in a subprocess and returns {test id: outcome}; `retries` runs a test that
did not pass again, alone (pywebsocket3's end-to-end tests give the server
a fixed 0.2 s to start, "TODO: poll the server until it becomes ready",
and a loaded machine can take longer; its example echo client does not
retry its connection).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from typing import Dict

VERSION = '4.0.2'
SDIST = 'pywebsocket3-%s.tar.gz' % VERSION
SHA256 = '2589ddc14cdd9ca600cc76551a7f4f8935837304790b72f371fd1a9e4986430f'

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(TOP, '.cache', 'pywebsocket3')

# Runs inside the tree with <tree>/test first on sys.path, as
# pywebsocket3's test/run_all.py does, and prints one JSON object.
_RUNNER = r'''
import json, os, sys, unittest
sys.path.insert(0, os.path.abspath('test'))
class Result(unittest.TextTestResult):
    outcomes = {}
    def _set(self, test, outcome):
        self.outcomes[test.id()] = outcome
    def addSuccess(self, test):
        super().addSuccess(test); self._set(test, 'pass')
    def addFailure(self, test, err):
        super().addFailure(test, err); self._set(test, 'fail')
    def addError(self, test, err):
        super().addError(test, err); self._set(test, 'error')
    def addSkip(self, test, reason):
        super().addSkip(test, reason); self._set(test, 'skip')
    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err); self._set(test, 'xfail')
    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test); self._set(test, 'xpass')
suite = unittest.defaultTestLoader.loadTestsFromName(sys.argv[1])
unittest.TextTestRunner(stream=sys.stderr, verbosity=2,
                        resultclass=Result).run(suite)
print('RESULTS ' + json.dumps(Result.outcomes))
'''


class FetchError(Exception):
    pass


def _download() -> str:
    path = os.path.join(CACHE, SDIST)
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        result = subprocess.run(
            [
                sys.executable,
                '-m',
                'pip',
                'download',
                '-q',
                '--no-deps',
                '--no-binary',
                ':all:',
                '-d',
                CACHE,
                'pywebsocket3==%s' % VERSION,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=300,
        )
        if result.returncode != 0 or not os.path.exists(path):
            raise FetchError(
                'pip download pywebsocket3==%s failed:\n%s'
                % (VERSION, result.stdout)
            )
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SHA256:
        os.remove(path)
        raise FetchError(
            '%s has SHA-256 %s, expected %s' % (path, digest, SHA256)
        )
    return path


def prepare() -> str:
    """The tree (see the module docstring), built on first use."""
    tree = os.path.join(CACHE, 'tree-%s' % VERSION)
    done = os.path.join(tree, '.complete')
    if os.path.exists(done):
        return tree
    sdist = _download()
    prefix = 'pywebsocket3-%s/' % VERSION
    os.makedirs(tree, exist_ok=True)
    with tarfile.open(sdist) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith((prefix + 'test/', prefix + 'example/'))
            and (m.isfile() or m.isdir())
        ]
        for member in members:
            member.name = member.name[len(prefix) :]
            if hasattr(tarfile, 'data_filter'):
                archive.extract(member, tree, filter='data')
            else:
                archive.extract(member, tree)
    link = os.path.join(tree, 'pywebsocket3')
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join(TOP, 'pywebsocket3'), link)
    open(done, 'w').close()
    return tree


def run_unittest(
    tree: str, module: str, timeout: float = 120, retries: int = 0
) -> Dict[str, str]:
    """{test id: 'pass' | 'fail' | 'error' | 'skip' | ...} of one module
    (e.g. 'test_msgutil') or test, run in a fresh interpreter; a test that
    does not pass is run up to `retries` more times on its own."""
    outcomes = _run_unittest_once(tree, module, timeout)
    for test_id, outcome in outcomes.items():
        for _ in range(retries):
            if outcome == 'pass':
                break
            outcome = _run_unittest_once(tree, test_id, timeout).get(
                test_id, outcome
            )
        outcomes[test_id] = outcome
    return outcomes


def _run_unittest_once(
    tree: str, module: str, timeout: float
) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    result = subprocess.run(
        [sys.executable, '-c', _RUNNER, module],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )
    for line in result.stdout.splitlines():
        if line.startswith('RESULTS '):
            return json.loads(line[len('RESULTS ') :])
    raise AssertionError(
        '%s did not report (exit %s):\n%s'
        % (module, result.returncode, result.stderr[-5000:])
    )
