"""What a newcomer meets first: refusals that explain themselves on both
ends, startup errors that name what they are about, --version / --info,
and the event API's small promises (include_self in on_connect, the
query in conn.resource, remote_address as (host, port))."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT_DIR, free_port
from mod_pywebsocket import client, masking
from mod_pywebsocket.common import HandshakeException
from server_fixture import running_server

ENV = dict(os.environ, PYTHONPATH=ROOT_DIR)

BUGGY_HANDLER = '''
def web_socket_do_extra_handshake(request):
    return 1 / 0          # a bug, not a refusal


def web_socket_transfer_data(request):
    pass
'''

EVENTS_HANDLER = '''
def on_connect(conn):
    conn.broadcast('joined %s' % conn.query.get('name', ['?'])[0])
    conn.send('%s|%s|%s:%d' % (conn.resource, conn.path,
                               *conn.remote_address))


def on_message(conn, message):
    conn.send(message)
'''


def _write(directory, name, text):
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def _run(*args, timeout=30, **env):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=dict(ENV, **env),
        timeout=timeout,
    )


def _serve(root):
    """A standalone server subprocess on `root`, past its banner."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(port),
            '-d',
            str(root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert 'serving' in server.stdout.readline()
    return server, port


def test_a_handler_bug_in_the_handshake_is_logged_with_its_traceback(tmp_path):
    _write(tmp_path, 'buggy_wsh.py', BUGGY_HANDLER)
    server, port = _serve(tmp_path)
    try:
        # The command-line client shows the status and the short reason.
        refused = _run(
            '-m',
            'mod_pywebsocket.client',
            'ws://127.0.0.1:%d/buggy' % port,
            '-m',
            'x',
        )
        assert refused.returncode == 1
        assert '403' in refused.stderr
        assert 'ZeroDivisionError: division by zero' in refused.stderr
        assert 'Traceback' not in refused.stderr
    finally:
        server.terminate()
        _, log = server.communicate(timeout=15)
    # The server's log, at the default level, has the traceback.
    assert 'buggy_wsh.py raised in its opening-handshake code' in log
    assert 'Traceback' in log and '1 / 0' in log


def test_refusal_body_reaches_library_users(tmp_path):
    _write(tmp_path, 'buggy_wsh.py', BUGGY_HANDLER)
    with running_server(document_root=str(tmp_path)) as server:
        with pytest.raises(HandshakeException) as info:
            client.connect('ws://127.0.0.1:%d/buggy' % server.port)
    assert info.value.status == 403
    assert 'ZeroDivisionError' in info.value.body


def test_port_in_use_names_the_address():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            '-m',
            'mod_pywebsocket.standalone',
            '-H',
            '127.0.0.1',
            '-p',
            str(port),
        )
    assert result.returncode == 1
    assert 'cannot listen on 127.0.0.1:%d' % port in result.stderr
    assert 'Address already in use' in result.stderr


def test_bad_certificate_names_the_files(tmp_path):
    certificate = _write(tmp_path, 'cert.pem', 'not a certificate\n')
    result = _run(
        '-m',
        'mod_pywebsocket.standalone',
        '-p',
        '0',
        '--tls',
        '-c',
        str(certificate),
        '-k',
        str(certificate),
    )
    assert result.returncode != 0
    assert (
        str(certificate) in result.stderr and 'Traceback' not in result.stderr
    )


def test_a_broken_handler_file_is_warned_about_once(tmp_path):
    _write(tmp_path, 'broken_wsh.py', 'def web_socket_transfer_data(:\n')
    server, _ = _serve(tmp_path)
    server.terminate()
    _, log = server.communicate(timeout=15)
    assert log.count('cannot load') == 1, log


def test_version_and_info():
    version = _run('-m', 'mod_pywebsocket', '--version')
    assert version.returncode == 0
    assert version.stdout.strip().startswith('mod_pywebsocket 4.')
    info = _run('-m', 'mod_pywebsocket', '--info')
    assert info.returncode == 0
    lines = info.stdout.splitlines()
    assert lines[0] == version.stdout.strip()
    masking_line = [line for line in lines if line.startswith('masking:')]
    assert masking_line and masking.PATH in masking_line[0]
    assert any('permessage-deflate defaults' in line for line in lines)
    pure = _run(
        '-m', 'mod_pywebsocket', '--info', MOD_PYWEBSOCKET_PURE_MASKING='1'
    )
    assert 'masking: pure Python' in pure.stdout
    openssl = _run(
        '-m', 'mod_pywebsocket', '--info', MOD_PYWEBSOCKET_MASKING='openssl'
    )
    assert 'masking: OpenSSL through ctypes' in openssl.stdout


@pytest.mark.parametrize(
    'flags', [(), ('--no-event-loop',)], ids=['event-loop', 'threads']
)
def test_event_api_resource_query_address_and_include_self(tmp_path, flags):
    _write(tmp_path, 'room_wsh.py', EVENTS_HANDLER)
    with running_server(*flags, document_root=str(tmp_path)) as server:
        url = 'ws://127.0.0.1:%d/room?name=ada' % server.port
        with client.connect(url) as ws:
            # broadcast(include_self=True) in on_connect reaches the
            # connecting client too.
            assert ws.receive() == 'joined ada'
            resource, path, address = ws.receive().split('|')
            assert resource == '/room?name=ada' and path == '/room'
            assert address == '127.0.0.1:%d' % ws.sock.getsockname()[1]
            with client.connect(url.replace('ada', 'bob')) as other:
                assert other.receive() == 'joined bob'
                assert ws.receive() == 'joined bob'  # same room: the path
