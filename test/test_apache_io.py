"""The Apache host's I/O owner (apache_io): sends from any thread under
prefork and event MPMs, over ws, wss and HTTP/2 (RFC 8441); a client that
stops reading stalls no other connection; WebSockets over h2 with the `h2`
library and with Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import threading
import time

import pytest

from apache_fixture import (
    ApacheInstance,
    apache_missing,
    make_base_dir,
    make_certificate,
    make_dir,
)
from conftest import EXAMPLE_DIR, require
from h2_client import H2Client

from websockets.asyncio.client import connect as async_connect  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.apache

# Per connection: messages a second server thread pushes, and client
# messages echoed meanwhile.
PUSHES = int(os.environ.get('STRESS_PUSHES', 2000))
ECHOES = int(os.environ.get('STRESS_ECHOES', 1000))
CONNECTIONS = int(os.environ.get('STRESS_CONNECTIONS', 32))
SEND_TIMEOUT = 3  # PythonOption mod_pywebsocket.send_timeout

STRESS_HANDLER = '''
import threading


def web_socket_transfer_data(request):
    stream = request.ws_stream
    count = int(request.ws_resource.split('?n=')[1])

    def push():
        for i in range(count):
            stream.send_message('push %d %s' % (i, 'p' * (i % 300)))

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        while True:
            message = stream.receive_message()
            if message is None:
                return
            stream.send_message(message)
    finally:
        pusher.join()
'''

STRESS_EVENTS_HANDLER = '''
import threading


def on_message(conn, message):
    if 'pusher' not in conn.state:       # the connection is open by now
        count = int(conn.request.ws_resource.split('?n=')[1])
        # Room for every push and echo: this is about sends from two
        # threads, not about the bound on a slow client's queue (a busy
        # machine's client can fall 4096 messages behind the pusher).
        conn.max_queued_messages = 2 * count + 100

        def push():
            for i in range(count):
                conn.send('push %d %s' % (i, 'p' * (i % 300)))

        conn.state['pusher'] = threading.Thread(target=push, daemon=True)
        conn.state['pusher'].start()
    conn.send(message)
'''

FLOOD_HANDLER = '''
def web_socket_transfer_data(request):
    stream = request.ws_stream
    while True:
        message = stream.receive_message()
        if message is None:
            return
        if message == 'flood':
            while True:              # until the send timeout drops us
                stream.send_message(b'f' * 65536)
        stream.send_message(message)
'''

IO_PATH_HANDLER = '''
from mod_pywebsocket import apache_io


def web_socket_transfer_data(request):
    stream = request.ws_stream
    # the path, and the transport that owns the connection
    stream.send_message(
        '%s / %s' % (apache_io.IO_PATH, type(stream._transport).__name__)
    )
    while True:
        message = stream.receive_message()
        if message is None:
            return
        stream.send_message(message, binary=isinstance(message, bytes))
'''

EVENT_CONF = (
    'StartServers 1\nServerLimit 1\nThreadsPerChild 64\n'
    'MaxRequestWorkers 64\nMinSpareThreads 1\n'
    'MaxSpareThreads 64\nThreadLimit 64\n'
    'H2MaxWorkers 64\nH2MaxSessionStreams 16\n'
)


def _write(path: str, text: str) -> None:
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    os.chmod(path, 0o644)


@pytest.fixture(scope='module')
def certificate():
    require(shutil.which('openssl') is not None, 'openssl')
    base = make_base_dir('mpws-cert-')
    try:
        yield make_certificate(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(mpm: str, certificate) -> ApacheInstance:
    missing = apache_missing()
    require(missing is None, 'Apache 2.4 with mod_python (%s)' % missing)
    base = make_base_dir()
    root = make_dir(os.path.join(base, 'wsh'))
    for name, text in (
        ('stress_wsh.py', STRESS_HANDLER),
        ('stress_events_wsh.py', STRESS_EVENTS_HANDLER),
        ('flood_wsh.py', FLOOD_HANDLER),
        ('iopath_wsh.py', IO_PATH_HANDLER),
    ):
        _write(os.path.join(root, name), text)
    for name in ('echo_wsh.py', 'subprotocol_wsh.py'):
        shutil.copy(os.path.join(EXAMPLE_DIR, name), root)
        os.chmod(os.path.join(root, name), 0o644)
    http2 = mpm == 'event'
    if http2:
        require(
            os.path.exists('/usr/lib/apache2/modules/mod_http2.so'),
            'mod_http2 (Debian apache2)',
        )
    instance = ApacheInstance(
        base,
        mpm=mpm,
        ssl=certificate,
        http2=http2,
        mpm_conf=EVENT_CONF if http2 else None,
        options={
            'mod_pywebsocket.handler_root': root,
            'mod_pywebsocket.send_timeout': str(SEND_TIMEOUT),
        },
    )
    _write(
        os.path.join(instance.doc_root, 'console.html'),
        open(
            os.path.join(EXAMPLE_DIR, 'console.html'), encoding='utf-8'
        ).read(),
    )
    return instance.start()


def _running(mpm: str, certificate):
    instance = _start(mpm, certificate)
    try:
        yield instance
    finally:
        instance.stop()
        print(instance.error_log()[-3000:])
        instance.remove()


@pytest.fixture(scope='module')
def prefork(certificate):
    yield from _running('prefork', certificate)


@pytest.fixture(scope='module')
def event(certificate):
    yield from _running('event', certificate)


def _echo_text(j: int) -> str:
    return 'echo %d %s' % (j, 'e' * (j * 37 % 3000))


def _push_text(i: int) -> str:
    return 'push %d %s' % (i, 'p' * (i % 300))


def _assert_clean_log(log: str) -> None:
    for bad in (
        'Segmentation fault',
        'read error',
        'Traceback',
        'exit signal',
        'stays with mod_python',
    ):
        assert bad not in log, log[-3000:]


# ---- cross-thread stress ------------------------------------------------


async def _stress_one(url: str, context, pushes: int, echoes: int) -> None:
    async with async_connect(
        url, ssl=context, max_size=None, open_timeout=60, close_timeout=10
    ) as ws:

        async def send_echoes() -> None:
            for j in range(echoes):
                await ws.send(_echo_text(j))
                await asyncio.sleep(0)

        sender = asyncio.create_task(send_echoes())
        pushed = echoed = 0
        while pushed < pushes or echoed < echoes:
            message = await asyncio.wait_for(ws.recv(), 30)
            if message.startswith('push '):
                assert message == _push_text(pushed)
                pushed += 1
            else:
                assert message == _echo_text(echoed)
                echoed += 1
        await sender
        await ws.close()
    assert ws.close_code == 1000


def _stress(instance: ApacheInstance, scheme: str, cafile: str) -> None:
    """Many connections, then a few busier ones (under prefork each
    connection is a process: with fewer of them, its two threads more
    often really run at the same time)."""
    context = None
    if scheme == 'wss':
        context = ssl.create_default_context(cafile=cafile)

    async def run_all(connections: int, pushes: int, echoes: int) -> None:
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _stress_one(
                        instance.url(
                            '/%s?n=%d'
                            % ('stress_events' if i % 2 else 'stress', pushes),
                            scheme,
                        ),
                        context,
                        pushes,
                        echoes,
                    )
                    for i in range(connections)
                )
            ),
            120,
        )

    offset = instance.error_log_size()
    asyncio.run(run_all(CONNECTIONS, PUSHES, ECHOES))
    asyncio.run(run_all(4, 4 * PUSHES, 4 * ECHOES))
    time.sleep(0.3)
    _assert_clean_log(instance.error_log_since(offset))


@pytest.mark.parametrize('scheme', ['ws', 'wss'])
def test_cross_thread_sends_under_prefork(prefork, certificate, scheme):
    _stress(prefork, scheme, certificate[0])


@pytest.mark.parametrize('scheme', ['ws', 'wss'])
def test_cross_thread_sends_under_event_mpm(event, certificate, scheme):
    _stress(event, scheme, certificate[0])


def test_cross_thread_sends_over_h2(event, certificate):
    offset = event.error_log_size()
    failures = []

    def one_client(index: int) -> None:
        client = H2Client(event.ssl_port, certificate[0])
        try:
            sockets = [
                client.open(
                    '/%s?n=%d'
                    % (
                        'stress_events' if (index + k) % 2 else 'stress',
                        PUSHES,
                    )
                )
                for k in range(4)
            ]
            for ws in sockets:
                assert ws.status == 200, ws.headers
            for j in range(ECHOES):
                for ws in sockets:
                    ws.send(_echo_text(j))
                client.pump(0.005)
            client.wait(
                lambda: all(
                    len(ws.messages) >= PUSHES + ECHOES for ws in sockets
                ),
                60,
            )
            for ws in sockets:
                pushes = [m for m in ws.messages if m.startswith('push ')]
                echoes = [m for m in ws.messages if m.startswith('echo ')]
                assert pushes == [_push_text(i) for i in range(PUSHES)]
                assert echoes == [_echo_text(j) for j in range(ECHOES)]
                ws.send_close(1000)
            client.wait(lambda: all(ws.close is not None for ws in sockets))
            assert [ws.close[0] for ws in sockets] == [1000] * 4
        except BaseException as e:
            failures.append(repr(e))
        finally:
            client.close()

    threads = [
        threading.Thread(target=one_client, args=(i,)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert not failures, failures
    time.sleep(0.3)
    _assert_clean_log(event.error_log_since(offset))


# ---- the I/O path: C extension or ctypes -------------------------------


def _expected_io_path() -> str:
    if os.environ.get('MOD_PYWEBSOCKET_APACHE_CTYPES', '') not in ('', '0'):
        return 'ctypes (MOD_PYWEBSOCKET_APACHE_CTYPES is set) / IOOwner'
    from mod_pywebsocket import _speedups

    require(hasattr(_speedups, 'SocketIO'), 'the C extension built')
    return 'C extension / SocketIO'


@pytest.mark.parametrize('scheme', ['ws', 'wss'])
def test_io_path_echoes_large_binary_and_survives_a_cut(
    prefork, certificate, scheme
):
    """The path this run expects (the C extension's SocketIO, or ctypes
    and IOOwner when MOD_PYWEBSOCKET_APACHE_CTYPES=1 reaches Apache)
    carries binary
    messages of every length class intact; a client that disconnects in
    the middle of a message ends its handler promptly and cleanly."""
    expected = _expected_io_path()
    context = None
    if scheme == 'wss':
        context = ssl.create_default_context(cafile=certificate[0])
    offset = prefork.error_log_size()
    sizes = (0, 1, 125, 126, 65535, 65536, 65537, 262145, (1 << 20) + 3)
    with connect(
        prefork.url('/iopath', scheme), ssl=context, max_size=None
    ) as ws:
        assert ws.recv(timeout=10) == expected
        for size in sizes:
            payload = os.urandom(size)
            ws.send(payload)
            assert ws.recv(timeout=30) == payload, size
        ws.send('text é')
        assert ws.recv(timeout=10) == 'text é'
    # Cut in the middle of a 100000-byte frame.
    with connect(
        prefork.url('/iopath', scheme), ssl=context, max_size=None
    ) as ws:
        assert ws.recv(timeout=10) == expected
        length = 100000  # masked, key 0
        frame = b'\x82\xff' + length.to_bytes(8, 'big') + b'\0\0\0\0'
        ws.socket.sendall(frame + b'x' * 50000)
        time.sleep(0.2)
        ws.socket.close()
    ended = '/iopath: connection ended: connection closed by the peer'
    log = prefork.wait_for_log(ended, offset, 10)
    assert ended in log, log[-3000:]
    _assert_clean_log(log)
    with connect(prefork.url('/iopath', scheme), ssl=context) as ws:
        assert ws.recv(timeout=10) == expected
        ws.send(b'\0after')
        assert ws.recv(timeout=10) == b'\0after'


# ---- a client that stops reading -------------------------------------


def test_slow_reader_stalls_no_other_connection(event):
    """One child (ServerLimit 1): a client stops reading while its handler
    floods it; the others keep sub-second round trips, and the stuck one
    is dropped after the send timeout with a log line."""
    offset = event.error_log_size()
    with contextlib.ExitStack() as stack:
        others = [
            stack.enter_context(connect(event.url('/echo'), open_timeout=30))
            for _ in range(4)
        ]
        stuck = stack.enter_context(
            connect(event.url('/flood'), open_timeout=30)
        )
        _slow_reader(event, offset, others, stuck)


def _slow_reader(event, offset, others, stuck) -> None:
    try:
        stuck.send('flood')  # and never read again
        worst = 0.0
        deadline = time.monotonic() + SEND_TIMEOUT + 2
        while time.monotonic() < deadline:
            for ws in others:
                started = time.monotonic()
                ws.send('ping')
                assert ws.recv(timeout=5) == 'ping'
                worst = max(worst, time.monotonic() - started)
            time.sleep(0.05)
        assert worst < 1.0, worst
        log = event.wait_for_log('send timeout', offset, 10)
        assert 'did not read for %.1f s (send timeout)' % SEND_TIMEOUT in log
    finally:
        stuck.socket.close()


# ---- WebSockets over HTTP/2 (RFC 8441) --------------------------------


def test_h2_four_websockets_on_one_connection_with_1mb_messages(
    event, certificate
):
    client = H2Client(event.ssl_port, certificate[0])
    try:
        sockets = [client.open('/echo') for _ in range(4)]
        assert [ws.status for ws in sockets] == [200] * 4
        assert len({ws.stream_id for ws in sockets}) == 4
        payloads = [bytes([65 + k]) * (1 << 20) for k in range(4)]
        for ws, payload in zip(sockets, payloads):
            ws.send(payload)
        client.wait(lambda: all(ws.messages for ws in sockets), 60)
        assert [ws.messages[0] for ws in sockets] == payloads
        for ws in sockets:
            ws.send_close(1000)
        client.wait(lambda: all(ws.close for ws in sockets))
        assert [ws.close[0] for ws in sockets] == [1000] * 4
    finally:
        client.close()
    access = open(event.access_log_path, encoding='utf-8').read()
    assert (
        'GET /echo HTTP/2.0" 101' in access
        or 'CONNECT /echo HTTP/2.0" 101' in access
    ), access[-800:]


def test_h2_refusals_and_subprotocols(event, certificate):
    client = H2Client(event.ssl_port, certificate[0])
    try:
        missing = client.open('/no_such_handler')
        assert missing.status == 404
        refused = client.open('/subprotocol', protocols=('unknown',))
        assert refused.status == 400
        chosen = client.open('/subprotocol', protocols=('x', 'superchat'))
        assert chosen.status == 200
        assert chosen.headers.get('sec-websocket-protocol') == 'superchat'
        client.wait(lambda: chosen.messages)
        assert chosen.messages[0] == 'superchat'
        chosen.send('over h2')
        client.wait(lambda: len(chosen.messages) == 2)
        assert chosen.messages[1] == 'over h2'
        chosen.send_close(1000)
        client.wait(lambda: chosen.close is not None)
        assert chosen.close[0] == 1000
    finally:
        client.close()


@pytest.mark.browser
def test_chromium_over_https_h2(event):
    from browser import chromium
    from selenium.webdriver.common.by import By

    offset = os.path.getsize(event.access_log_path)
    with chromium(extra_flags=('--ignore-certificate-errors',)) as driver:
        driver.get(event.url('/console.html', 'https'))
        url = driver.find_element(By.ID, 'url')
        assert url.get_attribute('value') == event.url('/echo', 'wss')
        driver.find_element(By.ID, 'connect').click()
        _wait(lambda: driver.find_element(By.ID, 'state').text == 'open')
        assert (
            'permessage-deflate'
            in driver.find_element(By.ID, 'extensions').text
        )
        driver.find_element(By.ID, 'message').send_keys('hello h2')
        driver.find_element(By.ID, 'send').click()
        _wait(lambda: '← hello h2' in driver.find_element(By.ID, 'log').text)
        driver.find_element(By.ID, 'disconnect').click()
        _wait(lambda: driver.find_element(By.ID, 'closed').text == '1000')
    with open(event.access_log_path, encoding='utf-8') as f:
        f.seek(offset)
        access = f.read()
    assert '/console.html HTTP/2.0" 200' in access, access
    assert '/echo HTTP/2.0" 101' in access, access


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met within %.0f s' % timeout)
        time.sleep(0.05)
