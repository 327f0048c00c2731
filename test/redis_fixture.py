"""A private redis-server (Debian's package) on a free loopback port with
its own directory, and standalone servers in their own processes (each
its own broker node), for the broker tests."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port, require

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'
_running: List[subprocess.Popen] = []


def _wait_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class RedisServer:
    """redis-server in `directory`; `aof` makes it durable (appendfsync
    always: an acknowledged write survives SIGKILL)."""

    def __init__(self, directory: str, aof: bool = False) -> None:
        require(os.path.exists(REDIS_SERVER), 'redis-server')
        self.directory = str(directory)
        self.aof = aof
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return 'redis://127.0.0.1:%d/0' % self.port

    def start(self) -> 'RedisServer':
        args = [
            REDIS_SERVER,
            '--port',
            str(self.port),
            '--bind',
            '127.0.0.1',
            '--dir',
            self.directory,
            '--save',
            '',
            '--daemonize',
            'no',
            '--protected-mode',
            'no',
            '--logfile',
            os.path.join(self.directory, 'redis.log'),
        ]
        if self.aof:
            args += ['--appendonly', 'yes', '--appendfsync', 'always']
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _running.append(self.process)
        if not _wait_port(self.port, time.monotonic() + 10):
            self.stop()
            raise RuntimeError(
                'redis-server did not start on port %d' % self.port
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process in _running:
            _running.remove(process)
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


class ServerProcess:
    """`python -m mod_pywebsocket.standalone` on a free port; its log
    (stderr, level info) goes to `log_path`."""

    def __init__(
        self,
        directory: str,
        broker: str,
        *args: str,
        name: str = 'node',
        document_root: str = EXAMPLE_DIR,
    ) -> None:
        self.port = free_port()
        self.log_path = os.path.join(str(directory), name + '.log')
        self.args = [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(self.port),
            '-d',
            document_root,
            '--broker',
            broker,
            '--log-level',
            'info',
            *args,
        ]
        self.process: Optional[subprocess.Popen] = None

    def start(self, wait: float = 15.0) -> 'ServerProcess':
        env = dict(os.environ, PYTHONPATH=ROOT_DIR)
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=log, env=env, cwd=ROOT_DIR
            )
        _running.append(self.process)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    'server exited (%d):\n%s'
                    % (self.process.returncode, self.log())
                )
            if _wait_port(self.port, time.monotonic() + 0.2):
                return self
        self.stop()
        raise RuntimeError('server did not listen:\n' + self.log())

    def url(self, path: str = '/chat') -> str:
        return 'ws://127.0.0.1:%d%s' % (self.port, path)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_for_log(
        self, text: str, count: int = 1, timeout: float = 10.0
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return True
            time.sleep(0.05)
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process in _running:
            _running.remove(process)
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        try:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
