"""A private Apache 2.4 + mod_python for end-to-end tests.

`ApacheInstance` writes a config into its own directory, starts
/usr/sbin/apache2 on free loopback ports with an empty environment (no
Debian envvars, no /etc/apache2), waits until it accepts connections and
stops it by the PID in its PidFile. Its error log is shown when the start
fails, and `error_log_since()` gives what a single test added.

As root the children run as www-data, so every directory they read is made
world-readable (0755); the package is imported from the checkout through
PythonPath, by Debian's /usr/bin/python3 that mod_python embeds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

from conftest import EXAMPLE_DIR, ROOT_DIR, free_port

APACHE_BIN = '/usr/sbin/apache2'
MODULES_DIR = '/usr/lib/apache2/modules'
MOD_PYTHON = os.path.join(MODULES_DIR, 'mod_python.so')
ENTRY = 'mod_pywebsocket.headerparserhandler'
INTERPRETER = 'mod_pywebsocket'

_running: List['ApacheInstance'] = []


def apache_missing() -> Optional[str]:
    """What is missing to run Apache + mod_python here, or None."""
    for path in (
        APACHE_BIN,
        MOD_PYTHON,
        os.path.join(MODULES_DIR, 'mod_mpm_prefork.so'),
    ):
        if not os.path.exists(path):
            return path
    return None


def make_dir(path: str) -> str:
    """A directory the Apache children (www-data) can read."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def make_base_dir(prefix: str = 'mpws-apache-') -> str:
    """A fresh world-readable directory under /tmp (pytest's tmp_path is
    0700, which www-data cannot enter)."""
    return make_dir(tempfile.mkdtemp(prefix=prefix))


def tree_python_conf(base_dir: str, tree: str) -> str:
    """A config file (for ApacheInstance's `include`) with the mod_python
    lines for another checkout: its package on PythonPath, its example/
    as the handler root. Returns its path."""
    path = os.path.join(base_dir, 'python.conf')
    with open(path, 'w') as f:
        f.write(
            'PythonPath "sys.path+[\'{tree}\']"\n'
            'PythonInterpreter {interpreter}\n'
            'PythonImport {entry} {interpreter}\n'
            'PythonOption mod_pywebsocket.handler_root "{example}"\n'
            'PythonHeaderParserHandler {entry}\n'.format(
                tree=tree,
                interpreter=INTERPRETER,
                entry=ENTRY,
                example=os.path.join(tree, 'example'),
            )
        )
    return path


def make_certificate(directory: str) -> tuple:
    """A self-signed certificate for 127.0.0.1/localhost: (cert, key)."""
    cert = os.path.join(directory, 'server.crt')
    key = os.path.join(directory, 'server.key')
    subprocess.run(
        [
            'openssl',
            'req',
            '-x509',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-days',
            '2',
            '-subj',
            '/CN=localhost',
            '-addext',
            'subjectAltName=DNS:localhost,IP:127.0.0.1',
            '-keyout',
            key,
            '-out',
            cert,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    return cert, key


class ApacheInstance:
    """One private Apache server.

    mpm: 'prefork' or 'event'. phase: 'headerparser' or 'fixup' (which
    PythonXxxHandler serves WebSockets). options: PythonOptions for the
    whole server (handler_root defaults to example/). locations: extra
    config per <Location path>. ssl: (cert, key) adds a TLS port.
    preload: PythonImport the entry module when a child starts.
    include: a config file that replaces the generated mod_python lines
    (PythonPath ... PythonHeaderParserHandler). modules: more modules to
    load (e.g. 'alias'). mpm_conf: replaces the MPM sizing lines. http2:
    mod_http2 with `H2WebSockets on` on the TLS port (RFC 8441).
    """

    def __init__(
        self,
        base_dir: str,
        mpm: str = 'prefork',
        phase: str = 'headerparser',
        options: Optional[Dict[str, Optional[str]]] = None,
        locations: Optional[Dict[str, str]] = None,
        ssl: Optional[tuple] = None,
        extra_conf: str = '',
        log_level: str = 'info',
        timeout: int = 60,
        preload: bool = True,
        include: Optional[str] = None,
        modules: tuple = (),
        mpm_conf: Optional[str] = None,
        http2: bool = False,
    ) -> None:
        self.base_dir = make_dir(base_dir)
        self.mpm = mpm
        self.phase = phase
        self.options = {'mod_pywebsocket.handler_root': EXAMPLE_DIR}
        self.options.update(options or {})
        self.locations = locations or {}
        self.ssl = ssl
        self.extra_conf = extra_conf
        self.log_level = log_level
        self.timeout = timeout
        self.preload = preload
        self.include = include
        self.modules = modules
        self.mpm_conf = mpm_conf
        self.http2 = http2
        self.run_dir = make_dir(os.path.join(base_dir, 'run'))
        self.log_dir = make_dir(os.path.join(base_dir, 'logs'))
        self.doc_root = make_dir(os.path.join(base_dir, 'htdocs'))
        self.conf_path = os.path.join(base_dir, 'apache2.conf')
        self.pid_file = os.path.join(self.run_dir, 'apache2.pid')
        self.error_log_path = os.path.join(self.log_dir, 'error.log')
        self.access_log_path = os.path.join(self.log_dir, 'access.log')
        self.port = free_port()
        self.ssl_port = free_port() if ssl else None
        self.pid: Optional[int] = None

    # ---- configuration --------------------------------------------------

    def _mpm_conf(self) -> str:
        if self.mpm_conf is not None:
            return self.mpm_conf
        if self.mpm == 'prefork':
            # Enough children up front for the concurrency test.
            return (
                'StartServers 20\nMinSpareServers 10\n'
                'MaxSpareServers 150\nServerLimit 200\n'
                'MaxRequestWorkers 200\n'
            )
        return (
            'StartServers 2\nThreadsPerChild 25\nServerLimit 16\n'
            'MaxRequestWorkers 200\nMinSpareThreads 25\n'
            'MaxSpareThreads 250\n'
        )

    def config(self) -> str:
        user = 'User www-data\nGroup www-data\n' if os.geteuid() == 0 else ''
        options = ''.join(
            'PythonOption %s "%s"\n' % (name, value)
            if value is not None
            else 'PythonOption %s\n' % name
            for name, value in self.options.items()
        )
        handler = (
            'PythonHeaderParserHandler'
            if self.phase == 'headerparser'
            else 'PythonFixupHandler'
        )
        locations = ''.join(
            '<Location "%s">\n%s\n</Location>\n' % (path, body)
            for path, body in self.locations.items()
        )
        python = '''PythonPath "sys.path+['{repo}']"
PythonInterpreter {interpreter}
{preload}{options}{handler} {entry}
'''.format(
            repo=ROOT_DIR,
            interpreter=INTERPRETER,
            entry=ENTRY,
            options=options,
            handler=handler,
            preload=(
                'PythonImport %s %s\n' % (ENTRY, INTERPRETER)
                if self.preload
                else ''
            ),
        )
        if self.include:
            python = 'Include "%s"\n' % self.include
        modules = ''.join(
            'LoadModule %s_module %s/mod_%s.so\n' % (name, MODULES_DIR, name)
            for name in self.modules
        )
        ssl = ''
        h2 = ''
        if self.http2:
            h2 = (
                'LoadModule http2_module {m}/mod_http2.so\nH2WebSockets on\n'
            ).format(m=MODULES_DIR)
        if self.ssl:
            ssl = h2 + (
                'LoadModule ssl_module {m}/mod_ssl.so\n'
                'Listen 127.0.0.1:{port}\n'
                '<VirtualHost 127.0.0.1:{port}>\n'
                '  SSLEngine on\n'
                + ('  Protocols h2 http/1.1\n' if self.http2 else '')
                + '  SSLCertificateFile "{cert}"\n'
                '  SSLCertificateKeyFile "{key}"\n'
                '</VirtualHost>\n'
            ).format(
                m=MODULES_DIR,
                port=self.ssl_port,
                cert=self.ssl[0],
                key=self.ssl[1],
            )
        return '''# generated by test/apache_fixture.py
ServerRoot "{base}"
DefaultRuntimeDir "{run}"
PidFile "{pid}"
ErrorLog "{error_log}"
LogLevel {log_level}
LogFormat "%h \\"%r\\" %>s %b" short
CustomLog "{access_log}" short
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{user}
LoadModule mpm_{mpm}_module {m}/mod_mpm_{mpm}.so
{mpm_conf}
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule mime_module {m}/mod_mime.so
TypesConfig /etc/mime.types
LoadModule reqtimeout_module {m}/mod_reqtimeout.so
RequestReadTimeout header=20-40,MinRate=500 body=0
Timeout {timeout}
KeepAlive On
KeepAliveTimeout 5
LoadModule python_module {mod_python}
{modules}{ssl}
DocumentRoot "{doc_root}"
<Directory />
  Require all denied
</Directory>
<Directory "{doc_root}">
  Require all granted
</Directory>
{python}{locations}
{extra}
'''.format(
            base=self.base_dir,
            run=self.run_dir,
            pid=self.pid_file,
            error_log=self.error_log_path,
            access_log=self.access_log_path,
            log_level=self.log_level,
            port=self.port,
            user=user,
            mpm=self.mpm,
            m=MODULES_DIR,
            mpm_conf=self._mpm_conf(),
            timeout=self.timeout,
            mod_python=MOD_PYTHON,
            ssl=ssl,
            doc_root=self.doc_root,
            modules=modules,
            python=python,
            locations=locations,
            extra=self.extra_conf,
        )

    # ---- running --------------------------------------------------------

    def start(self, wait: float = 20.0) -> 'ApacheInstance':
        with open(self.conf_path, 'w') as f:
            f.write(self.config())
        result = subprocess.run(
            [
                'env',
                '-i',
                'PATH=/usr/sbin:/usr/bin:/bin',
                'LANG=C',
                # The package's switches (MOD_PYWEBSOCKET_MASKING,
                # MOD_PYWEBSOCKET_APACHE_CTYPES) reach the children.
                *(
                    '%s=%s' % item
                    for item in sorted(os.environ.items())
                    if item[0].startswith('MOD_PYWEBSOCKET_')
                ),
                APACHE_BIN,
                '-f',
                self.conf_path,
                '-k',
                'start',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(
                'apache2 failed to start (%d): %s%s\n%s'
                % (
                    result.returncode,
                    result.stdout,
                    result.stderr,
                    self.error_log(),
                )
            )
        _running.append(self)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.pid is None:
                self.pid = self._read_pid()
            if (
                self.pid is not None
                and self._accepts(self.port)
                and (self.ssl_port is None or self._accepts(self.ssl_port))
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            'apache2 did not start listening within %.0f s; '
            'error.log:\n%s' % (wait, self.error_log())
        )

    def _read_pid(self) -> Optional[int]:
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self, wait: float = 15.0) -> None:
        """SIGTERM the parent (it stops its children), wait for it to go;
        SIGKILL it and its children as a last resort."""
        if self in _running:
            _running.remove(self)
        pid = self.pid or self._read_pid()
        if pid is None:
            return
        children = self.child_pids(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        for leftover in [pid] + children:
            if _alive(leftover):
                try:
                    os.kill(leftover, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid = None

    def child_pids(self, parent: Optional[int] = None) -> List[int]:
        """PIDs of the server's children."""
        parent = parent or self.pid
        pids = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry))
        return pids

    # ---- inspection -----------------------------------------------------

    def error_log(self) -> str:
        try:
            with open(
                self.error_log_path, encoding='utf-8', errors='replace'
            ) as f:
                return f.read()
        except OSError:
            return '(no error log)'

    def error_log_size(self) -> int:
        try:
            return os.path.getsize(self.error_log_path)
        except OSError:
            return 0

    def error_log_since(self, offset: int) -> str:
        with open(self.error_log_path, 'rb') as f:
            f.seek(offset)
            return f.read().decode('utf-8', 'replace')

    def wait_for_log(
        self, text: str, offset: int = 0, timeout: float = 10.0
    ) -> str:
        """The log since `offset` once it contains `text` (or as it is at
        the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.error_log_since(offset)
            if text in log or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def url(self, path: str, scheme: str = 'ws') -> str:
        port = self.ssl_port if scheme in ('wss', 'https') else self.port
        return '%s://127.0.0.1:%d%s' % (scheme, port, path)

    def remove(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state != 'Z'
    except OSError:
        return False


@atexit.register
def _stop_leftovers() -> None:
    for instance in list(_running):
        instance.stop()
