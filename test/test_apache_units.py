"""The Apache host without Apache: option parsing, the config cache, the
transport and log adapters, and the entry point run against a stand-in
`mod_python.apache` module and the MockRequest of test/mock.py."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import types
import weakref

import pytest

from conftest import EXAMPLE_DIR, ROOT_DIR
from mock import MockConn, MockRequest

from mod_pywebsocket import apache_options as ao
from mod_pywebsocket import apache_support as support
from mod_pywebsocket import common
from mod_pywebsocket.frame import FrameParser, build_frame, parse_close_body

ROOT = {ao.HANDLER_ROOT: EXAMPLE_DIR}


# ---- options -----------------------------------------------------------


def test_defaults():
    config = ao.parse_options(ROOT)
    assert config.handler_root == EXAMPLE_DIR
    assert config.handler_scan is None
    assert config.allow_handlers_outside_root_dir is False
    options = config.server_options
    assert options.allow_draft75 is False
    assert options.max_message_size == common.DEFAULT_MAX_MESSAGE_SIZE
    assert options.close_timeout == common.DEFAULT_CLOSE_TIMEOUT
    assert config.send_timeout == ao.DEFAULT_SEND_TIMEOUT
    assert options.deflate.enabled is True
    assert options.rsv_close_code == common.STATUS_PROTOCOL_ERROR
    assert config.unknown_options == []


def test_every_option(tmp_path):
    scan = os.path.join(EXAMPLE_DIR)
    config = ao.parse_options(
        dict(
            ROOT,
            **{
                ao.HANDLER_SCAN: scan,
                ao.ALLOW_HANDLERS_OUTSIDE_ROOT_DIR: 'yes',
                ao.ALLOW_DRAFT75: 'On',
                ao.MAX_MESSAGE_SIZE: '0',
                ao.CLOSE_TIMEOUT: '2.5',
                ao.SEND_TIMEOUT: '7',
                ao.DEFLATE: 'off',
                ao.DEFLATE_COMPRESSION_LEVEL: '9',
                ao.DEFLATE_MEMORY_LEVEL: '4',
                ao.DEFLATE_SERVER_MAX_WINDOW_BITS: '10',
                ao.DEFLATE_CLIENT_MAX_WINDOW_BITS: '12',
                ao.DEFLATE_SERVER_NO_CONTEXT_TAKEOVER: 'TRUE',
                ao.DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER: '1',
                ao.RSV_CLOSE_CODE: '1003',
                'mod_pywebsocket.typo': 'x',
                'other.option': 'ignored',
            },
        )
    )
    assert config.handler_scan == scan
    assert config.allow_handlers_outside_root_dir is True
    options = config.server_options
    assert options.allow_draft75 is True
    assert options.max_message_size == 0  # no limit
    assert options.close_timeout == 2.5
    assert config.send_timeout == 7.0
    assert options.rsv_close_code == common.STATUS_UNSUPPORTED_DATA
    deflate = options.deflate
    assert vars(deflate) == dict(
        enabled=False,
        compression_level=9,
        memory_level=4,
        server_max_window_bits=10,
        client_max_window_bits=12,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )
    assert config.unknown_options == ['mod_pywebsocket.typo']


@pytest.mark.parametrize(
    'options, words',
    [
        ({}, ['handler_root is not set']),
        ({ao.HANDLER_ROOT: 'relative/dir'}, ['handler_root', 'absolute']),
        ({ao.HANDLER_ROOT: '/no/such/dir'}, ['handler_root', 'existing']),
        ({ao.HANDLER_ROOT: ''}, ['handler_root']),
        (dict(ROOT, **{ao.HANDLER_SCAN: '/no/such'}), ['handler_scan']),
        (
            dict(ROOT, **{ao.ALLOW_DRAFT75: 'maybe'}),
            ['allow_draft75', "'maybe'", 'On or Off'],
        ),
        (
            dict(ROOT, **{ao.MAX_MESSAGE_SIZE: 'lots'}),
            ['max_message_size', "'lots'", 'integer'],
        ),
        (
            dict(ROOT, **{ao.MAX_MESSAGE_SIZE: '-1'}),
            ['max_message_size', '>= 0'],
        ),
        (dict(ROOT, **{ao.MAX_MESSAGE_SIZE: '１２'}), ['max_message_size']),
        (dict(ROOT, **{ao.CLOSE_TIMEOUT: '0'}), ['close_timeout', 'positive']),
        (dict(ROOT, **{ao.CLOSE_TIMEOUT: 'nan'}), ['close_timeout']),
        (dict(ROOT, **{ao.CLOSE_TIMEOUT: 'soon'}), ['close_timeout']),
        (dict(ROOT, **{ao.SEND_TIMEOUT: '0'}), ['send_timeout', 'positive']),
        (dict(ROOT, **{ao.SEND_TIMEOUT: 'never'}), ['send_timeout']),
        (
            dict(ROOT, **{ao.DEFLATE_COMPRESSION_LEVEL: '10'}),
            ['deflate_compression_level', 'from -1 to 9'],
        ),
        (
            dict(ROOT, **{ao.DEFLATE_MEMORY_LEVEL: '0'}),
            ['deflate_memory_level'],
        ),
        (
            dict(ROOT, **{ao.DEFLATE_SERVER_MAX_WINDOW_BITS: '7'}),
            ['deflate_server_max_window_bits', 'from 8 to 15'],
        ),
        (
            dict(ROOT, **{ao.DEFLATE_CLIENT_MAX_WINDOW_BITS: '16'}),
            ['deflate_client_max_window_bits'],
        ),
        (
            dict(ROOT, **{ao.DEFLATE_CLIENT_NO_CONTEXT_TAKEOVER: 'sure'}),
            ['deflate_client_no_context_takeover'],
        ),
        (
            dict(ROOT, **{ao.RSV_CLOSE_CODE: '1000'}),
            ['rsv_close_code', "'1000'", '1002, 1003'],
        ),
    ],
)
def test_bad_options_are_named(options, words):
    with pytest.raises(ao.OptionError) as info:
        ao.parse_options(options)
    for word in words:
        assert word in str(info.value)


def test_handler_option_binds_one_handler():
    echo = os.path.join(EXAMPLE_DIR, 'echo_wsh.py')
    config = ao.parse_options({ao.HANDLER: echo})
    assert config.handler == echo and config.handler_root is None
    config = ao.parse_options({ao.HANDLER: 'package.module:Object'})
    assert config.handler == 'package.module:Object'
    for bad in ('echo_wsh.py', '/no/such_wsh.py', 'two words', ''):
        with pytest.raises(ao.OptionError) as info:
            ao.parse_options({ao.HANDLER: bad})
        assert 'mod_pywebsocket.handler ' in str(info.value)


def test_bound_dispatcher_serves_any_resource():
    from mod_pywebsocket.dispatch import DispatchException, load_handler_file

    suite = load_handler_file(os.path.join(EXAMPLE_DIR, 'echo_wsh.py'))
    dispatcher = support.BoundDispatcher(suite)
    assert dispatcher.get_handler_suite('/a/b?c') is suite
    assert dispatcher.resources() == ['* -> ' + suite.path]
    with pytest.raises(DispatchException):
        dispatcher.get_handler_suite('/a#fragment')


def test_option_key_is_stable_and_ignores_other_options():
    a = ao.option_key(
        {'b.x': '1', ao.ALLOW_DRAFT75: 'On', ao.HANDLER_ROOT: '/r'}
    )
    b = ao.option_key({ao.HANDLER_ROOT: '/r', ao.ALLOW_DRAFT75: 'On'})
    assert a == b == ((ao.ALLOW_DRAFT75, 'On'), (ao.HANDLER_ROOT, '/r'))


def test_config_cache_builds_once_under_concurrency():
    cache = ao.ConfigCache()
    builds = []
    barrier = threading.Barrier(8)
    seen = []

    def build():
        builds.append(1)
        time.sleep(0.05)  # a slow build: others must wait
        return object()

    def worker():
        barrier.wait()
        seen.append(cache.get('key', build))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(builds) == 1
    assert len(seen) == 8 and all(value is seen[0] for value in seen)
    assert len(cache) == 1


def test_config_cache_does_not_keep_failures():
    cache = ao.ConfigCache()
    calls = []

    def failing():
        calls.append(1)
        raise ao.OptionError('bad')

    for _ in range(2):
        with pytest.raises(ao.OptionError):
            cache.get('k', failing)
    assert len(calls) == 2 and len(cache) == 0
    assert cache.get('k', lambda: 'ok') == 'ok'


# ---- adapters ----------------------------------------------------------


def test_log_levels():
    assert support.apache_level(logging.CRITICAL) == 2
    assert support.apache_level(logging.ERROR) == 3
    assert support.apache_level(logging.WARNING) == 4
    assert support.apache_level(logging.INFO) == 6
    assert support.apache_level(logging.DEBUG) == 7
    assert support.python_level(None) == logging.WARNING
    assert support.python_level(4) == logging.WARNING
    assert support.python_level(6) == logging.INFO
    assert support.python_level(7) == logging.DEBUG
    assert support.python_level(11) == logging.DEBUG


def test_client_address_never_uses_remote_addr():
    class Conn:
        client_addr = ('192.0.2.1', 5555)

        @property
        def remote_addr(self):
            raise AssertionError('remote_addr is deprecated in mod_python')

    assert support.client_address(Conn()) == '192.0.2.1:5555'
    conn = types.SimpleNamespace(client_ip='192.0.2.2')
    assert support.client_address(conn) == '192.0.2.2'
    assert support.client_address(types.SimpleNamespace()) == '-'


def test_log_handler_prefixes_client_and_splits_lines():
    calls = []
    handler = support.ApacheLogHandler(
        lambda message, level, server: calls.append((message, level, server))
    )
    logger = logging.getLogger('mod_pywebsocket.test_apache_units')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('no request')
        token = support.request_context.set(('127.0.0.1:1', 'srv'))
        try:
            raise ValueError('boom')
        except ValueError:
            logger.error('failed', exc_info=True)
        finally:
            support.request_context.reset(token)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert calls[0] == (
        'mod_pywebsocket.test_apache_units: no request',
        4,
        None,
    )
    assert calls[1] == (
        '[client 127.0.0.1:1] mod_pywebsocket.test_apache_units: failed',
        3,
        'srv',
    )
    assert calls[-1] == ('[client 127.0.0.1:1] ValueError: boom', 3, 'srv')
    assert any('Traceback' in message for message, _, _ in calls)


class AbortingConn(MockConn):
    aborted = 0

    def write(self, data):
        super().write(data)
        if data == b'kill':
            self.aborted = 1


def test_transport_adapts_mod_python_connection():
    conn = AbortingConn(b'abc')
    conn.read = lambda n, _r=conn.read: _r(n) or None  # mod_python: None
    transport = support.ConnectionTransport(conn)
    assert transport.read(10) == b'abc'
    assert transport.read(10) == b''  # None at EOF
    assert transport.wrote is False
    transport.write(bytearray(b'x'))
    transport.write(memoryview(b'y'))
    assert conn.written == [b'x', b'y'] and transport.wrote
    with pytest.raises(OSError):
        transport.write(b'kill')  # aborted during write
    with pytest.raises(OSError):
        transport.write(b'more')  # and stays so
    assert conn.written == [b'x', b'y', b'kill']


# ---- the entry point against a stand-in mod_python ---------------------


@pytest.fixture
def entry(monkeypatch):
    """mod_pywebsocket.headerparserhandler imported with a fake
    mod_python.apache that records log_error calls."""
    logged = []
    apache = types.ModuleType('mod_python.apache')
    apache.OK, apache.DONE, apache.DECLINED = 0, -2, -1
    apache.HTTP_INTERNAL_SERVER_ERROR = 500
    apache.log_error = lambda message, level=3, server=None: logged.append(
        (message, level)
    )
    package = types.ModuleType('mod_python')
    package.apache = apache
    monkeypatch.setitem(sys.modules, 'mod_python', package)
    monkeypatch.setitem(sys.modules, 'mod_python.apache', apache)
    monkeypatch.delitem(
        sys.modules, 'mod_pywebsocket.headerparserhandler', raising=False
    )
    package_logger = logging.getLogger('mod_pywebsocket')
    saved = (
        list(package_logger.handlers),
        package_logger.propagate,
        package_logger.level,
    )
    module = importlib.import_module('mod_pywebsocket.headerparserhandler')
    module.logged = logged
    try:
        yield module
    finally:
        package_logger.handlers[:] = saved[0]
        package_logger.propagate = saved[1]
        package_logger.setLevel(saved[2])
        sys.modules.pop('mod_pywebsocket.headerparserhandler', None)


class ApacheRequest(MockRequest):
    """MockRequest plus what the entry point reads of a mod_python request."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.main = None
        self.prev = None
        self.server = types.SimpleNamespace(loglevel=6)
        self.status = 200
        self.assbackwards = 0
        self.connection.aborted = 0


def ws_request(path='/echo', body=b'', options=None, version='13', **headers):
    all_headers = [
        ('Host', 'example.com'),
        ('Upgrade', 'websocket'),
        ('Connection', 'Upgrade'),
        ('Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='),
        ('Sec-WebSocket-Version', version),
    ]
    all_headers += list(headers.items())
    return ApacheRequest(
        path,
        all_headers,
        MockConn(body),
        options=dict(ROOT) if options is None else options,
    )


def server_frames(data: bytes):
    parser = FrameParser(expect_masked=False)
    parser.feed(data)
    frames = []
    while True:
        frame = parser.next_frame()
        if frame is None:
            return frames
        frames.append(frame)


@pytest.mark.parametrize('value, tuned', [(None, True), ('Off', False)])
def test_a_child_tunes_malloc_unless_told_not_to(
    entry, monkeypatch, value, tuned
):
    calls = []
    from mod_pywebsocket import info

    monkeypatch.setattr(
        info, 'keep_freed_buffers', lambda: calls.append(1) or True
    )
    options = dict(ROOT)
    if value is not None:
        options['mod_pywebsocket.malloc_tuning'] = value
    entry._build_config(options)
    assert bool(calls) is tuned


@pytest.mark.parametrize('path', ['C extension', 'OpenSSL', 'pure Python'])
def test_a_child_warns_once_when_masking_is_pure_python(
    entry, monkeypatch, path
):
    from mod_pywebsocket import masking

    monkeypatch.setattr(masking, 'PATH', path)
    entry._build_config(dict(ROOT))
    warnings = [m for m, _ in entry.logged if 'masking in pure Python' in m]
    if path != 'pure Python':
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert 'setup.py build_ext --inplace' in warnings[0]


def test_entry_declines_plain_and_sub_requests(entry):
    plain = ApacheRequest('/echo', [('Host', 'h')], options=dict(ROOT))
    assert entry.headerparserhandler(plain) == -1
    sub = ws_request()
    sub.main = object()
    assert entry.headerparserhandler(sub) == -1
    assert sub.connection.written == []
    # No handler_root matters only to WebSocket requests.
    plain = ApacheRequest('/x', [('Host', 'h')], options={})
    assert entry.fixuphandler(plain) == -1


def test_entry_serves_an_echo(entry):
    body = build_frame(1, b'hello', mask=True) + build_frame(
        8, b'\x03\xe8', mask=True
    )
    request = ws_request(body=body)
    assert entry.headerparserhandler(request) == -2  # DONE
    written = request.connection.written
    assert written[0].startswith(b'HTTP/1.1 101 Switching Protocols\r\n')
    assert b's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' in written[0]
    frames = server_frames(b''.join(written[1:]))
    assert [(f.opcode, f.payload) for f in frames] == [
        (1, b'hello'),
        (8, b'\x03\xe8'),
    ]
    assert len(written) == 3  # one write per frame
    assert request.status == 101
    assert request.assbackwards == 1
    assert request.headers_out['Connection'] == 'close'


# What only the standalone command line, --info, the broker, connection
# limits or the ctypes fallback use: an Apache child that serves classic
# handlers has no use for them (each costs every child memory).
NOT_IN_A_CHILD = (
    'argparse',
    'dataclasses',
    'inspect',
    'tempfile',
    'uuid',
    'platform',
    'socket',
    'mod_pywebsocket.broker',
    'mod_pywebsocket.broker_core',
)


def test_an_apache_child_imports_only_what_serving_needs():
    script = (
        'import sys, types\n'
        'apache = types.SimpleNamespace(log_error=lambda *a: None)\n'
        'sys.modules["mod_python"] = types.SimpleNamespace(apache=apache)\n'
        'sys.modules["mod_python.apache"] = apache\n'
        'import mod_pywebsocket.headerparserhandler\n'
        'print(" ".join(sorted(sys.modules)))\n'
    )
    result = subprocess.run(
        # (-S -E: no .pth files or PYTHON* settings, e.g. coverage's)
        [sys.executable, '-S', '-E', '-c', script],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert 'mod_pywebsocket.apache_io' in loaded
    assert [name for name in NOT_IN_A_CHILD if name in loaded] == []


def test_a_served_connection_is_freed_with_its_request(entry):
    """No reference cycle outlives the request (request -> ws_stream ->
    request, core <-> assembler): its objects go when Apache drops the
    request, not at some later garbage collection, which in a busy child
    meets them long after they left the CPU's caches."""
    body = build_frame(1, b'hello', mask=True) + build_frame(
        8, b'\x03\xe8', mask=True
    )
    request = ws_request(body=body)
    enabled = gc.isenabled()
    gc.disable()
    try:
        assert entry.headerparserhandler(request) == -2
        stream = weakref.ref(request.ws_stream)
        core = weakref.ref(request.ws_stream.connection)
        assert request.ws_close_code == 1000 and request.client_terminated
        # A late send (say, from another thread) fails as on any closed
        # stream: the stream kept the request's final state.
        with pytest.raises(common.BadOperationException):
            request.ws_stream.send_message('late')
        del request
        assert stream() is None and core() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize(
    'value, code',
    [(None, 1002), ('1002', 1002), ('1003', 1003)],
)
def test_entry_closes_unclaimed_rsv_bits_with_rsv_close_code(
    entry, value, code
):
    options = dict(ROOT)
    if value is not None:
        options[ao.RSV_CLOSE_CODE] = value
    bad = bytearray(build_frame(1, b'', mask=True))
    bad[0] |= 0x10  # RSV3: no extension claims it
    body = build_frame(1, b'hello', mask=True) + bytes(bad)
    request = ws_request(body=body, options=options)
    assert entry.headerparserhandler(request) == -2  # DONE
    frames = server_frames(b''.join(request.connection.written[1:]))
    assert [(f.opcode, f.payload) for f in frames] == [
        (1, b'hello'),
        (8, struct.pack('!H', code)),
    ]


def test_entry_refuses_bad_handshakes_with_headers(entry):
    request = ws_request(version='7')
    assert entry.headerparserhandler(request) == 400
    assert request.err_headers_out['Sec-WebSocket-Version'] == '13, 8'
    assert request.err_headers_out['Connection'] == 'close'
    assert request.connection.written == []
    request = ws_request('/no/handler')
    assert entry.headerparserhandler(request) == 404
    assert request.connection.written == []
    assert any('No handler for /no/handler' in m for m, _ in entry.logged)


def test_entry_missing_root_is_500_and_logged(entry):
    request = ws_request(options={})
    assert entry.headerparserhandler(request) == 500
    message, level = entry.logged[-1]
    assert level == 3
    assert 'handler_root is not set' in message
    assert message.startswith('[client 127.0.0.1] ')  # MockConn.client_ip


def test_entry_handler_error_closes_1011_and_logs_traceback(entry):
    request = ws_request(
        '/internal_error', body=build_frame(8, b'\x03\xf3', mask=True)
    )
    assert entry.headerparserhandler(request) == -2
    frames = server_frames(b''.join(request.connection.written[1:]))
    assert frames[0].opcode == 8
    assert parse_close_body(frames[0].payload)[0] == 1011
    messages = [m for m, level in entry.logged if level == 3]
    assert any('Traceback' in m for m in messages)
    assert any(
        'RuntimeError: internal error on purpose' in m for m in messages
    )


def test_entry_catches_everything_after_the_101(entry, monkeypatch):
    request = ws_request()

    def explode(req):
        raise SystemExit('a handler called sys.exit')

    config = entry._config_for(request)
    monkeypatch.setattr(config.dispatcher, 'run_transfer_data', explode)
    assert entry.headerparserhandler(request) == -2
    assert request.assbackwards == 1
    assert any('SystemExit' in m for m, _ in entry.logged)


def test_entry_abort_in_handshake_sends_nothing(entry):
    request = ws_request('/abort_handshake')
    assert entry.headerparserhandler(request) == -2
    assert request.connection.written == []
    assert request.assbackwards == 1


def test_entry_builds_one_dispatcher_per_option_set(entry):
    first = entry._config_for(ws_request())
    assert entry._config_for(ws_request()) is first
    other = entry._config_for(
        ws_request(options=dict(ROOT, **{ao.ALLOW_DRAFT75: 'On'}))
    )
    assert other is not first
    assert other.dispatcher is not first.dispatcher


def test_entry_with_a_bound_handler(entry):
    options = {ao.HANDLER: os.path.join(EXAMPLE_DIR, 'echo_wsh.py')}
    request = ws_request(
        '/anything/at/all',
        options=options,
        body=build_frame(1, b'bound', mask=True),
    )
    assert entry.headerparserhandler(request) == -2
    frames = server_frames(b''.join(request.connection.written[1:]))
    assert (frames[0].opcode, frames[0].payload) == (1, b'bound')
    request = ws_request(options={ao.HANDLER: 'no_such_module_xyz'})
    assert entry.headerparserhandler(request) == 500
    assert any(
        'cannot import handler no_such_module_xyz' in m
        for m, _ in entry.logged
    )


def test_entry_unexpected_handshake_error_is_500(entry, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError('bug')

    monkeypatch.setattr(entry.session, 'do_handshake', broken)
    request = ws_request()
    assert entry.headerparserhandler(request) == 500
    assert request.err_headers_out['Connection'] == 'close'


# ---- apache_io without Apache ------------------------------------------


class _FakeIO:
    """Stands in for apache_io.ConnectionIO: scripted reads, recorded
    writes, and a write that can be made to hang."""

    fd = None

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.written = []
        self.hang = threading.Event()

    def read(self, block=False):
        if self.chunks:
            chunk = self.chunks.pop(0)
            return (70014, b'') if chunk is None else (0, chunk)
        return 11, b''  # EAGAIN: nothing yet

    def write(self, data):
        if self.hang.is_set():
            time.sleep(1.5)
            return 32  # what a cut connection returns
        self.written.append(data)
        return 0


def test_attach_refuses_objects_that_are_not_mod_python_connections():
    from mod_pywebsocket import apache_io

    io, why = apache_io.attach(object())
    assert io is None and 'not a mod_python 3 connection' in why


def test_io_owner_reads_in_order_then_eof_and_writes_from_threads():
    from mod_pywebsocket import apache_io

    fake = _FakeIO([b'ab', b'cd', None])
    owner = apache_io.IOOwner(fake, 'test', send_timeout=5, idle_timeout=5)
    got = b''
    while True:
        data = owner.read(1)
        if not data:
            break
        got += data
    assert got == b'abcd'
    threads = [
        threading.Thread(target=owner.write, args=(b'%d' % i,))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(fake.written) == [b'%d' % i for i in range(8)]
    owner.close(1)
    with pytest.raises(OSError):
        owner.write(b'after the end')


def test_io_owner_drops_a_write_past_the_send_timeout(caplog):
    from mod_pywebsocket import apache_io

    fake = _FakeIO([])
    owner = apache_io.IOOwner(
        fake, 'slow-client', send_timeout=0.5, idle_timeout=5
    )
    fake.hang.set()
    started = time.monotonic()
    with caplog.at_level('WARNING', logger='mod_pywebsocket.apache_io'):
        with pytest.raises(OSError, match='send timeout'):
            owner.write(b'x' * 10)
    assert time.monotonic() - started < 3
    assert 'slow-client: the client did not read for 0.5 s' in caplog.text
    with pytest.raises(OSError):
        owner.read(1)
    owner.close(1)
