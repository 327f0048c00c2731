"""mod_pywebsocket under a real Apache 2.4 + mod_python 3.5 (Debian).

Every test talks to a private Apache started by test/apache_fixture.py on
loopback ports. The module-scoped `apache` fixture runs the whole module
once under prefork (the recommended MPM) and once under event (Debian's
default, threaded), both configured as example/apache/mod_pywebsocket.conf
recommends (PythonImport at child start); the first test is a burst of
first requests into fresh children. A few tests need their own server
(fixup phase, broken configuration).

Peers: the `websockets` library (RFC 6455, permessage-deflate), a small
raw-socket client below (hybi-08, draft-75, byte-exact checks), Perl
Protocol::WebSocket (draft-76) and headless Chromium.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from apache_fixture import (
    ApacheInstance,
    apache_missing,
    make_base_dir,
    make_certificate,
    make_dir,
)
from conftest import EXAMPLE_DIR, TEST_DIR, require
from mod_pywebsocket import common
from mod_pywebsocket.frame import build_frame

websockets = pytest.importorskip('websockets')
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect as _connect  # noqa: E402

pytestmark = pytest.mark.apache

PERL_MODULE = '/usr/share/perl5/Protocol/WebSocket.pm'
# Seconds for a handshake that may meet children still starting up (each
# imports the package) on a busy machine.
FRESH_TIMEOUT = 60


def ws_connect(*args, **kwargs):
    """websockets' sync connect with a handshake timeout for busy hosts."""
    kwargs.setdefault('open_timeout', FRESH_TIMEOUT)
    return _connect(*args, **kwargs)


PAGES_DIR = os.path.join(TEST_DIR, 'pages')

# ---- test handlers (served from a temporary handler root) -------------

ECHO_SOURCE = os.path.join(EXAMPLE_DIR, 'echo_wsh.py')

FRAGMENTS_HANDLER = '''
def web_socket_transfer_data(request):
    stream = request.ws_stream
    stream.send_message('frag', end=False)
    stream.send_message('ment', end=False)
    stream.send_message('ed', end=True)
    stream.send_message(b'\\x01', end=False, binary=True)
    stream.send_message(b'\\x02', end=True, binary=True)
    while True:
        message = stream.receive_message()
        if message is None:
            return
        stream.send_message(message, binary=isinstance(message, bytes))
'''

PING_HANDLER = '''
def web_socket_transfer_data(request):
    pongs = []
    request.on_pong_handler = lambda req, body: pongs.append(body)
    request.ws_stream.send_ping(b'from-server')
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        request.ws_stream.send_message(
            'pongs: ' + ','.join(p.decode() for p in pongs))
'''

PID_HANDLER = '''
import os

def web_socket_transfer_data(request):
    stream = request.ws_stream
    stream.send_message(str(os.getpid()))
    while True:
        message = stream.receive_message()
        if message is None:
            return
        stream.send_message(message, binary=isinstance(message, bytes))
'''

EVENTS_HANDLER = '''
def on_connect(conn):
    conn.send('welcome')


def on_message(conn, message):
    conn.send(message)
'''

BURST_HANDLER = '''
def on_message(conn, message):
    if message == 'vanish':          # the client is gone by then
        import time
        time.sleep(0.5)
        conn.send('too late')
        return
    for i in range(200):
        conn.send('%s %d' % (message, i))
'''

PERL_CLIENT = r'''
use strict; use warnings;
use IO::Socket::INET; use IO::Select;
use Protocol::WebSocket::Handshake::Client; use Protocol::WebSocket::Frame;
my ($url, $version, @messages) = @ARGV;
my ($host, $port) = $url =~ m{^ws://([^:/]+):(\d+)/} or die "bad url\n";
my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                 Proto => 'tcp', Timeout => 10) or die "$!\n";
binmode $sock;
my $sel = IO::Select->new($sock);
my $hs = Protocol::WebSocket::Handshake::Client->new(url => $url,
                                                    version => $version);
print $sock $hs->to_string;
my $buf = '';
until ($hs->is_done) {
    $sel->can_read(10) or die "handshake timeout\n";
    sysread($sock, my $chunk, 4096) or die "closed during handshake\n";
    $buf .= $chunk;
    $hs->parse($buf) or die 'handshake error: ' . $hs->error . "\n";
}
print "OPEN\n";
my $in = Protocol::WebSocket::Frame->new(version => $version);
$in->append($buf) if length $buf;
for my $message (@messages) {
    print $sock Protocol::WebSocket::Frame->new(
        version => $version, buffer => $message)->to_bytes;
    my $got;
    until (defined($got = $in->next)) {
        $sel->can_read(10) or die "receive timeout\n";
        sysread($sock, my $chunk, 65536) or die "closed while receiving\n";
        $in->append($chunk);
    }
    print "RECV $got\n";
}
if ($version eq 'draft-ietf-hybi-00') {
    print $sock "\xff\x00";
    my $reply = '';
    while (length($reply) < 2 && $sel->can_read(10)) {
        sysread($sock, my $chunk, 2) or last;
        $reply .= $chunk;
    }
    print $reply eq "\xff\x00" ? "CLOSED handshake\n"
                                : "CLOSED no handshake\n";
}
close $sock;
'''


def _write(path: str, text: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    os.chmod(path, 0o644)


def build_test_root(base: str) -> str:
    """A handler root with the test handlers under /t/ and /d75/."""
    root = make_dir(os.path.join(base, 'handlers'))
    t_dir = make_dir(os.path.join(root, 't'))
    d75_dir = make_dir(os.path.join(root, 'd75'))
    for name in ('echo', 'small', 'guarded', 'nodeflate', 'nct'):
        shutil.copy(ECHO_SOURCE, os.path.join(t_dir, name + '_wsh.py'))
    shutil.copy(ECHO_SOURCE, os.path.join(d75_dir, 'echo_wsh.py'))
    _write(os.path.join(t_dir, 'fragments_wsh.py'), FRAGMENTS_HANDLER)
    _write(os.path.join(t_dir, 'ping_wsh.py'), PING_HANDLER)
    _write(os.path.join(t_dir, 'pid_wsh.py'), PID_HANDLER)
    _write(os.path.join(t_dir, 'events_wsh.py'), EVENTS_HANDLER)
    _write(os.path.join(t_dir, 'burst_wsh.py'), BURST_HANDLER)
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return root


def build_doc_root(instance: ApacheInstance) -> None:
    """Static files: the example pages, the browser test page, a text file."""
    for source in (
        os.path.join(EXAMPLE_DIR, 'console.html'),
        os.path.join(EXAMPLE_DIR, 'index.html'),
        os.path.join(PAGES_DIR, 'browser_test.html'),
    ):
        if os.path.exists(source):
            shutil.copy(source, instance.doc_root)
    _write(os.path.join(instance.doc_root, 'hello.txt'), 'static hello\n')
    for name in os.listdir(instance.doc_root):
        os.chmod(os.path.join(instance.doc_root, name), 0o644)


def main_locations(test_root: str) -> dict:
    opt = 'PythonOption mod_pywebsocket.'
    root = '%shandler_root "%s"\n' % (opt, test_root)
    return {
        '/t/': root,
        '/d75/': root + opt + 'allow_draft75 On',
        '/t/small': opt + 'max_message_size 1024',
        '/t/nodeflate': opt + 'deflate Off',
        '/t/nct': (
            opt
            + 'deflate_server_no_context_takeover On\n'
            + opt
            + 'deflate_server_max_window_bits 10'
        ),
        '/t/guarded': 'Require all denied',
        '/noroot/': opt + 'handler_root',
        '/bound/': '%shandler "%s"' % (opt, ECHO_SOURCE),
        '/echo_plugin': '%shandler "%s"'
        % (opt, os.path.join(EXAMPLE_DIR, 'echo_plugin.py')),
        '/badopt/': opt + 'max_message_size lots',
    }


def require_apache() -> None:
    missing = apache_missing()
    require(missing is None, 'Apache 2.4 with mod_python (%s)' % missing)


@pytest.fixture(scope='module')
def certificate():
    require(shutil.which('openssl') is not None, 'openssl')
    base = make_base_dir('mpws-cert-')
    try:
        yield make_certificate(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope='module', params=['prefork', 'event'])
def apache(request, certificate):
    require_apache()
    base = make_base_dir()
    test_root = build_test_root(base)
    instance = ApacheInstance(
        base,
        mpm=request.param,
        locations=main_locations(test_root),
        ssl=certificate,
    )
    build_doc_root(instance)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        print(instance.error_log()[-4000:])
        instance.remove()


@pytest.fixture
def log_offset(apache):
    """Error log position at the start of the test; the log lines the test
    caused are printed at teardown (pytest shows them when it fails)."""
    offset = apache.error_log_size()
    yield offset
    print('---- error.log during this test ----')
    print(apache.error_log_since(offset)[-6000:])


@pytest.fixture(autouse=True)
def _show_error_log(request):
    if 'apache' in request.fixturenames:
        request.getfixturevalue('log_offset')
    yield


# ---- a raw client: byte-exact frames and handshakes --------------------


class RawClient:
    """A blocking TCP client that speaks just enough WebSocket to check
    bytes on the wire."""

    def __init__(
        self, port: int, timeout: float = 30.0, context: ssl.SSLContext = None
    ) -> None:
        sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.sock = context.wrap_socket(sock) if context else sock
        self.buffer = b''

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> 'RawClient':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise EOFError('EOF after %r' % self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self):
        """(status, {lowercase name: value}) of an HTTP response head."""
        while b'\r\n\r\n' not in self.buffer:
            if not self._more():
                raise EOFError('EOF in response head: %r' % self.buffer)
        head, self.buffer = self.buffer.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def read_to_eof(self, timeout: float = 10.0) -> bytes:
        self.sock.settimeout(timeout)
        while self._more():
            pass
        data, self.buffer = self.buffer, b''
        return data

    # RFC 6455 / hybi-08 frames
    def send_frame(
        self, opcode: int, payload: bytes, fin: bool = True
    ) -> None:
        key = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack('!BB', fin << 7 | opcode, 0x80 | length)
        elif length < 65536:
            header = struct.pack('!BBH', fin << 7 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack('!BBQ', fin << 7 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.send(header + key + masked)

    def read_frame(self):
        """(fin, opcode, payload) of an unmasked server frame."""
        first, second = self.read_exactly(2)
        assert not second & 0x80, 'server frames must not be masked'
        length = second & 0x7F
        if length == 126:
            length = struct.unpack('!H', self.read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack('!Q', self.read_exactly(8))[0]
        return bool(first & 0x80), first & 0x0F, self.read_exactly(length)


def hybi_request(
    path: str, port: int, version: int = 13, extra: str = ''
) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    origin = 'Origin' if version == 13 else 'Sec-WebSocket-Origin'
    return (
        'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n'
        'Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n'
        'Sec-WebSocket-Version: %d\r\n%s: http://127.0.0.1:%d\r\n%s\r\n'
        % (path, port, key, version, origin, port, extra)
    ).encode()


def close_body(code: int, reason: str = '') -> bytes:
    return struct.pack('!H', code) + reason.encode()


def http_status(url: str, data=None, headers=None):
    """(status, body) of a plain HTTP request."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(
            request, timeout=FRESH_TIMEOUT
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def handshake_status(url: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(url, **kwargs).close()
    return info.value.response.status_code


# ---- tests -------------------------------------------------------------


def test_burst_of_first_requests(apache):
    """Fresh children get 40 handshakes at once; none may fail (under a
    threaded MPM, mod_python without PythonImport can hand a request a
    half-imported entry module: APACHE.md pitfall 4)."""
    results = []

    def one(index):
        try:
            with ws_connect(apache.url('/echo'), compression=None) as ws:
                ws.send('burst %d' % index)
                results.append(ws.recv(timeout=30) == 'burst %d' % index)
        except Exception as e:  # reported below
            results.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [r for r in results if r is not True] == []
    assert len(results) == 40


def test_text_binary_and_large_messages(apache):
    with ws_connect(
        apache.url('/echo'), compression=None, max_size=None
    ) as ws:
        ws.send('héllo ✓')
        assert ws.recv() == 'héllo ✓'
        ws.send(b'\x00\x01\xfe\xff')
        assert ws.recv() == b'\x00\x01\xfe\xff'
        big = os.urandom(1 << 20)
        ws.send(big)
        assert ws.recv(timeout=30) == big
        text = 'ünïcödé ' * (1 << 17)
        ws.send(text)
        assert ws.recv(timeout=30) == text


def test_permessage_deflate(apache):
    with ws_connect(apache.url('/echo'), max_size=None) as ws:
        assert 'permessage-deflate' in ws.response.headers.get(
            'Sec-WebSocket-Extensions', ''
        )
        text = 'mod_pywebsocket under Apache ' * 40000
        ws.send(text)
        assert ws.recv(timeout=30) == text
        ws.send(b'\x00' * 1000)
        assert ws.recv() == b'\x00' * 1000


def test_deflate_options(apache):
    with ws_connect(apache.url('/t/nodeflate')) as ws:
        assert 'Sec-WebSocket-Extensions' not in ws.response.headers
        ws.send('plain')
        assert ws.recv() == 'plain'
    with ws_connect(apache.url('/t/nct')) as ws:
        extensions = ws.response.headers['Sec-WebSocket-Extensions']
        assert 'server_no_context_takeover' in extensions
        assert 'server_max_window_bits=10' in extensions
        for _ in range(3):
            ws.send('again and again ' * 100)
            assert ws.recv() == 'again and again ' * 100


def test_fragmented_messages_both_ways(apache):
    with ws_connect(apache.url('/t/fragments'), compression=None) as ws:
        assert ws.recv() == 'fragmented'
        assert ws.recv() == b'\x01\x02'
        ws.send(['one ', 'two ', 'three'])
        assert ws.recv() == 'one two three'
        ws.send([b'\x00', b'\x01'])
        assert ws.recv() == b'\x00\x01'
    with RawClient(apache.port) as raw:  # the frames on the wire
        raw.send(hybi_request('/t/fragments', apache.port))
        assert raw.read_head()[0] == 101
        frames = [raw.read_frame() for _ in range(5)]
        assert frames == [
            (False, 1, b'frag'),
            (False, 0, b'ment'),
            (True, 0, b'ed'),
            (False, 2, b'\x01'),
            (True, 0, b'\x02'),
        ]
        raw.send_frame(1, b'a', fin=False)
        raw.send_frame(9, b'between')  # a ping between fragments
        raw.send_frame(0, b'b', fin=True)
        assert raw.read_frame() == (True, 0xA, b'between')
        assert raw.read_frame() == (True, 1, b'ab')
        raw.send_frame(8, close_body(1000))
        assert raw.read_frame() == (True, 8, close_body(1000))


def test_ping_pong_both_ways(apache):
    with ws_connect(apache.url('/t/ping'), compression=None) as ws:
        assert ws.ping(b'from-client').wait(10)
        ws.send('report')
        assert ws.recv() == 'pongs: from-server'


def test_event_style_handler(apache):
    with ws_connect(apache.url('/t/events')) as ws:
        assert ws.recv() == 'welcome'
        ws.send('on_message')
        assert ws.recv() == 'on_message'


def test_location_bound_to_the_event_style_echo_plugin(apache):
    # <Location /echo_plugin> PythonOption mod_pywebsocket.handler
    # .../example/echo_plugin.py: the apache-websocket model.
    with ws_connect(apache.url('/echo_plugin'), subprotocols=['echo']) as ws:
        assert ws.subprotocol == 'echo'
        for message in ('one', b'\x00two'):
            ws.send(message)
            assert ws.recv() == message


def test_event_style_handler_echoes_empty_messages(apache):
    with ws_connect(apache.url('/echo_plugin')) as ws:
        for message in ('', b'', 'after empty', b''):
            ws.send(message)
            assert ws.recv() == message


def test_queued_messages_go_out_before_the_protocol_error_close(apache):
    bad = bytearray(build_frame(common.OPCODE_TEXT, b'bad', mask=True))
    bad[0] |= 0x20  # RSV2: not agreed
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/t/burst', apache.port))
        assert raw.read_head()[0] == 101
        # One write, so that one read takes both frames: reads that
        # overlap the writer thread's writes are issue 13's.
        raw.send(
            build_frame(common.OPCODE_TEXT, b'valid', mask=True) + bytes(bad)
        )
        for i in range(200):
            assert raw.read_frame() == (
                True,
                common.OPCODE_TEXT,
                b'valid %d' % i,
            )
        fin, opcode, body = raw.read_frame()
        assert opcode == common.OPCODE_CLOSE
        assert struct.unpack('!H', body[:2])[0] == common.STATUS_PROTOCOL_ERROR


def test_writer_failure_reaches_the_error_log(apache, log_offset):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/t/burst', apache.port))
        assert raw.read_head()[0] == 101
        raw.send_frame(common.OPCODE_TEXT, b'vanish')
        raw.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)
        )  # RST on close
    deadline = time.monotonic() + 20
    while 'sending failed' not in apache.error_log_since(log_offset):
        assert time.monotonic() < deadline, apache.error_log_since(log_offset)
        time.sleep(0.1)
    lines = [
        line
        for line in apache.error_log_since(log_offset).splitlines()
        if 'sending failed' in line
    ]
    assert len(lines) == 1 and ':warn]' in lines[0], lines


def test_location_bound_to_one_handler(apache):
    for path in ('/bound/', '/bound/any/thing?x=1'):
        with ws_connect(apache.url(path)) as ws:
            ws.send(path)
            assert ws.recv() == path


def test_close_codes_both_ways(apache):
    with ws_connect(apache.url('/echo')) as ws:
        ws.close(4001, 'bye from client')
    assert ws.protocol.close_rcvd.code == 4001
    assert ws.protocol.close_rcvd.reason == 'bye from client'
    with ws_connect(apache.url('/close')) as ws:
        ws.send('4002 server says bye')
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 4002
    assert info.value.rcvd.reason == 'server says bye'


def test_message_too_big_is_closed_with_1009(apache):
    with ws_connect(apache.url('/t/small'), compression=None) as ws:
        ws.send('x' * 1000)
        assert ws.recv() == 'x' * 1000
        ws.send('x' * 2000)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 1009


def test_connection_closes_promptly_without_stray_bytes(apache):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/echo', apache.port))
        status, headers = raw.read_head()
        assert status == 101
        assert headers['upgrade'].lower() == 'websocket'
        raw.send_frame(1, b'hi')
        assert raw.read_frame() == (True, 1, b'hi')
        raw.send_frame(8, close_body(1000, 'done'))
        assert raw.read_frame() == (True, 8, close_body(1000, 'done'))
        started = time.monotonic()
        rest = raw.read_to_eof()
        assert rest == b''
        assert time.monotonic() - started < 2  # not KeepAliveTimeout


def test_hybi08(apache):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/echo', apache.port, version=8))
        status, headers = raw.read_head()
        assert status == 101
        assert 'sec-websocket-accept' in headers
        raw.send_frame(1, 'hybi-08 ✓'.encode())
        assert raw.read_frame() == (True, 1, 'hybi-08 ✓'.encode())
        raw.send_frame(2, b'\x00\xff' * 300)
        assert raw.read_frame() == (True, 2, b'\x00\xff' * 300)
        raw.send_frame(8, close_body(1001))
        assert raw.read_frame() == (True, 8, close_body(1001))
        assert raw.read_to_eof() == b''


def test_unsupported_version_gets_400_with_supported_versions(apache):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/echo', apache.port, version=7))
        status, headers = raw.read_head()
        assert status in (400, 426)
        assert headers['sec-websocket-version'].replace(' ', '') == '13,8'
        assert 'close' in headers.get('connection', '').lower()


def draft75_request(path: str, port: int) -> bytes:
    return (
        'GET %s HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n'
        'Host: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n\r\n'
        % (path, port, port)
    ).encode()


def test_draft75_with_the_option(apache):
    with RawClient(apache.port) as raw:
        raw.send(draft75_request('/d75/echo', apache.port))
        status, headers = raw.read_head()
        assert status == 101
        assert headers['websocket-location'] == (
            'ws://127.0.0.1:%d/d75/echo' % apache.port
        )
        raw.send(b'\x00' + 'draft-75 ✓'.encode() + b'\xff')
        assert raw.read_exactly(len('draft-75 ✓'.encode()) + 2) == (
            b'\x00' + 'draft-75 ✓'.encode() + b'\xff'
        )
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.read_to_eof() == b''


def test_draft75_refused_without_the_option(apache):
    with RawClient(apache.port) as raw:
        raw.send(draft75_request('/echo', apache.port))
        status, headers = raw.read_head()
        assert status == 400
        assert 'sec-websocket-version' in headers


def run_perl(url: str, version: str, *messages: str) -> str:
    require(
        shutil.which('perl') is not None and os.path.exists(PERL_MODULE),
        'Perl Protocol::WebSocket (libprotocol-websocket-perl)',
    )
    result = subprocess.run(
        ['perl', '-e', PERL_CLIENT, url, version] + list(messages),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode('utf-8')


@pytest.mark.perl
def test_draft76_with_perl(apache):
    out = run_perl(
        apache.url('/echo'), 'draft-ietf-hybi-00', 'hello 76', 'second'
    )
    assert out == 'OPEN\nRECV hello 76\nRECV second\nCLOSED handshake\n'


@pytest.mark.perl
def test_draft75_with_perl(apache):
    out = run_perl(apache.url('/d75/echo'), 'draft-hixie-75', 'hello 75')
    assert out == 'OPEN\nRECV hello 75\n'


@pytest.mark.parametrize(
    'version, path',
    [(13, '/echo'), (8, '/echo'), (76, '/echo'), (75, '/d75/echo')],
)
def test_our_client_every_version(apache, version, path):
    client = pytest.importorskip('mod_pywebsocket.client')
    ws = client.connect(apache.url(path), version=version, timeout=10)
    try:
        ws.send('version %d ✓' % version)
        assert ws.receive() == 'version %d ✓' % version
    finally:
        ws.close()


def test_wss_through_mod_ssl(apache, certificate):
    context = ssl.create_default_context(cafile=certificate[0])
    with ws_connect(
        apache.url('/echo', 'wss'), ssl=context, max_size=None
    ) as ws:
        ws.send('over TLS')
        assert ws.recv() == 'over TLS'
        big = os.urandom(300000)
        ws.send(big)
        assert ws.recv(timeout=30) == big


def test_subprotocol(apache):
    with ws_connect(
        apache.url('/subprotocol'), subprotocols=['unknown', 'chat']
    ) as ws:
        assert ws.subprotocol == 'chat'
        assert ws.recv() == 'chat'
    assert (
        handshake_status(apache.url('/subprotocol'), subprotocols=['unknown'])
        == 400
    )


def test_origin_check(apache):
    good = 'http://127.0.0.1:%d' % apache.port
    with ws_connect(apache.url('/origin_check'), origin=good) as ws:
        assert ws.recv() == 'origin accepted: ' + good
    assert (
        handshake_status(
            apache.url('/origin_check'), origin='http://evil.example'
        )
        == 403
    )


def test_plain_requests_are_served_by_apache(apache):
    status, body = http_status(apache.url('/hello.txt', 'http'))
    assert (status, body) == (200, b'static hello\n')
    status, body = http_status(apache.url('/console.html', 'http'))
    assert status == 200 and b'WebSocket' in body
    # A handler path without Upgrade is no WebSocket: Apache answers.
    assert http_status(apache.url('/echo', 'http'))[0] == 404
    # Also where the WebSocket configuration is broken.
    assert http_status(apache.url('/noroot/x', 'http'))[0] == 404


def test_no_handler_is_404(apache, log_offset):
    assert handshake_status(apache.url('/no/such/handler')) == 404
    log = apache.wait_for_log('/no/such/handler', log_offset)
    assert 'No handler for /no/such/handler' in log
    assert '[client 127.0.0.1:' in log


def test_handler_that_raises_closes_with_1011(apache, log_offset):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/internal_error', apache.port))
        assert raw.read_head()[0] == 101
        fin, opcode, payload = raw.read_frame()
        assert (fin, opcode, payload[:2]) == (True, 8, struct.pack('!H', 1011))
        raw.send_frame(8, payload[:2])
        rest = raw.read_to_eof()
        assert b'HTTP/' not in rest and rest == b''
    log = apache.wait_for_log('internal error on purpose', log_offset)
    assert 'Traceback (most recent call last)' in log
    assert 'RuntimeError: internal error on purpose' in log
    with ws_connect(apache.url('/echo')) as ws:  # still serving
        ws.send('fine')
        assert ws.recv() == 'fine'


def test_handler_abort_drops_the_connection(apache):
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/abort_handshake', apache.port))
        assert raw.read_to_eof() == b''


def test_100_concurrent_connections(apache):
    count = 100
    barrier = threading.Barrier(count + 1, timeout=120)
    results = [None] * count

    def client(index):
        try:
            with ws_connect(
                apache.url('/echo'), open_timeout=120, compression=None
            ) as ws:
                ws.send('client %d' % index)
                echoed = ws.recv(timeout=60)
                barrier.wait()  # every connection open at once
                ws.send('again %d' % index)
                results[index] = (echoed, ws.recv(timeout=60))
        except Exception as e:
            results[index] = repr(e)
            barrier.abort()

    threads = [
        threading.Thread(target=client, args=(i,)) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join(120)
    assert results == [('client %d' % i, 'again %d' % i) for i in range(count)]


def test_access_log_shows_101(apache):
    with ws_connect(apache.url('/echo?access-log-check')) as ws:
        ws.send('x')
        ws.recv()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(apache.access_log_path) as f:
            if '"GET /echo?access-log-check HTTP/1.1" 101' in f.read():
                return
        time.sleep(0.05)
    pytest.fail('no 101 line in the access log')


def test_require_all_denied_does_not_stop_the_header_parser_phase(apache):
    # Documented pitfall: access control runs after this phase.
    with ws_connect(apache.url('/t/guarded')) as ws:
        ws.send('through')
        assert ws.recv() == 'through'


def test_missing_handler_root_is_500_with_a_log_line(apache, log_offset):
    assert handshake_status(apache.url('/noroot/x')) == 500
    log = apache.wait_for_log('handler_root is not set', log_offset)
    assert 'PythonOption mod_pywebsocket.handler_root is not set' in log


def test_bad_option_value_is_500_with_a_log_line(apache, log_offset):
    assert handshake_status(apache.url('/badopt/x')) == 500
    log = apache.wait_for_log('max_message_size', log_offset)
    assert "mod_pywebsocket.max_message_size has the bad value 'lots'" in log


@pytest.mark.prefork_only
@pytest.mark.slow
def test_idle_connection_survives_30_seconds(apache):
    with ws_connect(
        apache.url('/echo'), compression=None, ping_interval=None
    ) as ws:
        ws.send('before')
        assert ws.recv() == 'before'
        time.sleep(31)
        ws.send('after 31 s')
        assert ws.recv(timeout=10) == 'after 31 s'


@pytest.mark.prefork_only
@pytest.mark.browser
def test_chromium_console_page(apache):
    from browser import chromium

    with chromium() as driver:
        from selenium.webdriver.common.by import By

        driver.get(apache.url('/console.html', 'http'))
        url = driver.find_element(By.ID, 'url')
        assert url.get_attribute('value') == apache.url('/echo')
        driver.find_element(By.ID, 'connect').click()
        _wait(lambda: driver.find_element(By.ID, 'state').text == 'open')
        assert (
            'permessage-deflate'
            in driver.find_element(By.ID, 'extensions').text
        )
        driver.find_element(By.ID, 'message').send_keys('hello Apache')
        driver.find_element(By.ID, 'send').click()
        _wait(
            lambda: '← hello Apache' in driver.find_element(By.ID, 'log').text
        )
        driver.find_element(By.ID, 'disconnect').click()
        _wait(lambda: driver.find_element(By.ID, 'closed').text == '1000')


@pytest.mark.prefork_only
@pytest.mark.browser
def test_chromium_browser_test_page(apache):
    assert os.path.exists(os.path.join(apache.doc_root, 'browser_test.html'))
    from browser import chromium, run_page

    with chromium() as driver:
        results = run_page(driver, apache.url('/browser_test.html', 'http'))
    failed = {
        name: value
        for name, value in results.items()
        if value is not True
        and name
        not in (
            'extensions',
            'subprotocol',
            'closeCode',
            'serverClose',
            'handlerError',
        )
    }
    assert failed == {}
    assert results['extensions'] == 'permessage-deflate'
    assert results['subprotocol'] == 'chat/chat'
    assert results['closeCode'] == '4001 bye from page true'
    assert results['serverClose'] == '4002 server says bye'
    assert results['handlerError'] == 1011


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met within %.0f s' % timeout)
        time.sleep(0.05)


def vm_rss_kib(pid: int) -> int:
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)


def measure_rss_per_message(
    apache, messages: int = 20000, size: int = 16
) -> float:
    """Bytes of RSS the serving child grows per echoed message (one
    message in flight at a time, as a chatty client does)."""
    with RawClient(apache.port) as raw:
        raw.send(hybi_request('/t/pid', apache.port))
        assert raw.read_head()[0] == 101
        pid = int(raw.read_frame()[2])
        payload = b'x' * size

        def echo(count):
            for _ in range(count):
                raw.send_frame(2, payload)
                assert raw.read_frame() == (True, 2, payload)

        echo(2000)  # warm up
        before = vm_rss_kib(pid)
        echo(messages)
        after = vm_rss_kib(pid)
        raw.send_frame(8, close_body(1000))
        raw.read_frame()
    return (after - before) * 1024.0 / messages


@pytest.mark.prefork_only
def test_rss_growth_per_message_is_reported(apache, record_property):
    """Measures, does not judge (APACHE.md pitfall 3)."""
    per_message = measure_rss_per_message(apache)
    record_property('rss_bytes_per_message', per_message)
    print('RSS growth per 16-byte echo: %.1f bytes' % per_message)


# ---- servers of their own ----------------------------------------------


@pytest.fixture(scope='module')
def fixup_apache():
    require_apache()
    base = make_base_dir()
    test_root = build_test_root(base)
    instance = ApacheInstance(
        base,
        phase='fixup',
        locations={
            '/t/': 'PythonOption mod_pywebsocket.handler_root "%s"'
            % test_root,
            '/t/guarded': 'Require all denied',
        },
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        print(instance.error_log()[-4000:])
        instance.remove()


def test_fixup_phase_applies_require(fixup_apache):
    with ws_connect(fixup_apache.url('/t/echo')) as ws:
        ws.send('fixup phase')
        assert ws.recv() == 'fixup phase'
    assert handshake_status(fixup_apache.url('/t/guarded')) == 403
    with ws_connect(fixup_apache.url('/echo')) as ws:
        ws.send('example root')
        assert ws.recv() == 'example root'


def test_server_without_handler_root(request):
    """No handler_root anywhere: WebSockets get 500 and a log line, plain
    requests are served."""
    require_apache()
    base = make_base_dir()
    instance = ApacheInstance(
        base, options={'mod_pywebsocket.handler_root': None}
    )
    _write(os.path.join(instance.doc_root, 'index.html'), 'plain page')
    instance.start()
    try:
        assert handshake_status(instance.url('/echo')) == 500
        assert http_status(instance.url('/index.html', 'http')) == (
            200,
            b'plain page',
        )
        log = instance.wait_for_log('handler_root is not set')
        assert 'handler_root is not set' in log
    finally:
        instance.stop()
        print(instance.error_log()[-4000:])
        instance.remove()


def test_example_conf_as_shipped(request):
    """example/apache/mod_pywebsocket.conf, with its /opt paths pointed at
    this checkout, Included by a server: echo, console page, reqtimeout."""
    require_apache()
    source = os.path.join(EXAMPLE_DIR, 'apache', 'mod_pywebsocket.conf')
    base = make_base_dir()
    with open(source, encoding='utf-8') as f:
        text = f.read()
    assert text.count('/opt/mod_pywebsocket') >= 4
    conf = os.path.join(base, 'mod_pywebsocket.conf')
    _write(
        conf,
        text.replace('/opt/mod_pywebsocket', os.path.dirname(EXAMPLE_DIR)),
    )
    instance = ApacheInstance(base, include=conf, modules=('alias',))
    instance.start()
    try:
        with ws_connect(instance.url('/echo')) as ws:
            ws.send('shipped conf')
            assert ws.recv() == 'shipped conf'
        status, body = http_status(
            instance.url('/pywebsocket/console.html', 'http')
        )
        assert status == 200 and b'WebSocket console' in body
        assert 'RequestReadTimeout' in text and 'body=0' in text
    finally:
        instance.stop()
        print(instance.error_log()[-4000:])
        instance.remove()
