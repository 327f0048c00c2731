"""The access policy's rules without a server: origin matching, address
grouping, connection counting, token buckets, log throttling, the
PythonOptions that configure them, and the table Apache's children share
(across real processes)."""

from __future__ import annotations

import os
import select
import signal

import pytest

from mod_pywebsocket import apache_options
from mod_pywebsocket.access_policy import (
    AccessLimits,
    AccessRefused,
    ConnectionCounter,
    HandshakeRateLimiter,
    LimitSettings,
    LogThrottle,
    OriginPolicyMap,
    PolicyError,
    address_key,
    parse_origin,
    parse_origin_policy,
    split_origin_list,
    take_token,
)
from mod_pywebsocket.apache_options import OptionError, parse_options
from mod_pywebsocket.shared_limits import SharedLimits, private_directory


def allowed(
    spec, origin, host='ws.example.com', secure=False, allow_missing=False
):
    policy = parse_origin_policy(spec, allow_missing)
    return policy.refusal(origin, host, secure) is None


# ---- origins ---------------------------------------------------------


def test_parse_origin_fills_default_ports_and_lowercases():
    assert parse_origin('HTTPS://App.Example.COM') == (
        'https',
        'app.example.com',
        443,
    )
    assert parse_origin('http://h:8080') == ('http', 'h', 8080)
    assert parse_origin('http://[::1]:99') == ('http', '[::1]', 99)
    for bad in (
        'null',
        'example.com',
        'http://h/path',
        'http://a@b',
        'http://h:99999',
        'http://',
        'http://h:x',
        '',
    ):
        assert parse_origin(bad) is None, bad


def test_exact_origins_with_and_without_default_ports():
    spec = 'https://app.example.com,http://app.example.com:8080'
    assert allowed(spec, 'https://app.example.com')
    assert allowed(spec, 'https://app.example.com:443')
    assert allowed(spec, 'https://APP.example.com')
    assert allowed(spec, 'http://app.example.com:8080')
    assert not allowed(spec, 'http://app.example.com')
    assert not allowed(spec, 'https://app.example.com:8443')
    assert not allowed(spec, 'https://app.example.com.evil.net')
    assert allowed('https://app.example.com:443', 'https://app.example.com')


def test_wildcards_match_subdomains_only():
    spec = '*.example.com'
    for good in (
        'https://a.example.com',
        'http://a.b.example.com:8080',
        'https://A.Example.Com',
    ):
        assert allowed(spec, good), good
    for bad in (
        'https://evil-example.com',
        'https://example.com.evil.net',
        'https://example.com',
        'https://a.example.com.evil.net',
        'https://aexample.com',
        'null',
        'garbage',
    ):
        assert not allowed(spec, bad), bad
    scoped = 'https://*.example.com'
    assert allowed(scoped, 'https://a.example.com')
    assert allowed(scoped, 'https://a.example.com:443')
    assert not allowed(scoped, 'http://a.example.com')
    assert not allowed(scoped, 'https://a.example.com:8443')
    assert allowed('https://*.example.com:8443', 'https://a.example.com:8443')


def test_regexes_match_the_whole_origin():
    spec = r're:https://[a-z]+\.example\.org(:[0-9]{1,5})?'
    assert split_origin_list(spec) == [spec]
    assert allowed(spec, 'https://app.example.org')
    assert allowed(spec, 'https://app.example.org:8443')
    assert not allowed(spec, 'https://app.example.org.evil.net')
    assert not allowed(spec, 'http://app.example.org')
    assert not allowed(spec, 'https://evil.net/?https://a.example.org')
    both = spec + ', same ,https://x.test'
    assert split_origin_list(both) == [spec, 'same', 'https://x.test']
    assert allowed(both, 'https://x.test')


def test_same_origin_follows_the_host_and_scheme_addressed():
    assert allowed('same', 'http://ws.example.com', 'ws.example.com')
    assert allowed('same', 'http://ws.example.com:80', 'ws.example.com')
    assert allowed('same', 'http://ws.example.com', 'ws.example.com:80')
    assert allowed('same', 'http://WS.example.com', 'ws.EXAMPLE.com')
    assert allowed(
        'same', 'https://ws.example.com', 'ws.example.com', secure=True
    )
    assert allowed(
        'same', 'https://ws.example.com:443', 'ws.example.com:443', secure=True
    )
    assert allowed('same', 'http://127.0.0.1:8880', '127.0.0.1:8880')
    assert allowed('same', 'http://[::1]:8880', '[::1]:8880')
    assert not allowed('same', 'https://ws.example.com', 'ws.example.com')
    assert not allowed(
        'same', 'http://ws.example.com', 'ws.example.com', secure=True
    )
    assert not allowed('same', 'http://ws.example.com:8080', 'ws.example.com')
    assert not allowed('same', 'http://evil.net', 'ws.example.com')
    assert not allowed('same', 'http://ws.example.com', None)
    assert not allowed('same', 'http://ws.example.com', 'bad host!')


def test_missing_origin_and_null():
    assert not allowed('same', None)
    assert allowed('same', None, allow_missing=True)
    assert not allowed('same', 'null')
    assert allowed('same,null', 'null')
    refusal = parse_origin_policy('same').refusal('http://x' * 100, 'h', False)
    assert refusal.startswith("origin 'http://x") and len(refusal) < 260
    assert '\n' not in parse_origin_policy('same').refusal('a\nb', 'h', 0)


@pytest.mark.parametrize(
    'spec',
    [
        'example.com',
        'https://example.com/',
        'https://example.com/path',
        '*example.com',
        'https://a.*.example.com',
        '*.',
        're:(',
        'ftp//x',
        '*.[::1]',
    ],
)
def test_bad_items_are_refused(spec):
    with pytest.raises(PolicyError):
        parse_origin_policy(spec)


def test_off_and_per_resource_policies():
    assert parse_origin_policy(None) is None
    assert parse_origin_policy('  ') is None
    assert parse_origin_policy('off') is None
    same = parse_origin_policy('same')
    wild = parse_origin_policy('*.example.com')
    policies = OriginPolicyMap(
        same, {'/chat': wild, '/chat/open': None, '/api/': wild}
    )
    assert policies.policy_for('/echo') is same
    assert policies.policy_for('/chat') is wild
    assert policies.policy_for('/chat?room=1') is wild
    assert policies.policy_for('/chat/x') is wild
    assert policies.policy_for('/chatty') is same
    assert policies.policy_for('/chat/open/1') is None
    assert policies.policy_for('/api') is wild
    assert not policies.is_off()
    assert OriginPolicyMap(None, {'/x': None}).is_off()
    with pytest.raises(PolicyError):
        OriginPolicyMap(None, {'chat': wild})


# ---- addresses and counting ------------------------------------------


def test_address_keys_group_ipv6_networks():
    assert address_key('127.0.0.1') == '127.0.0.1'
    assert address_key('::ffff:10.1.2.3') == '10.1.2.3'
    assert address_key('2001:db8:1:2:3:4:5:6') == '2001:db8:1:2::/64'
    assert address_key('2001:db8:1:2:ffff::1') == '2001:db8:1:2::/64'
    assert address_key('2001:db8:1:3::1') == '2001:db8:1:3::/64'
    assert address_key('2001:db8::1', 128) == '2001:db8::1/128'
    assert address_key('2001:db8:1:2::1', 48) == '2001:db8:1::/48'
    assert address_key('[::1]') == '::/64'
    assert address_key('fe80::1%eth0') == 'fe80::/64'
    assert address_key('unix socket') == 'unix socket'


def test_counter_caps_and_10000_cycles_back_to_zero():
    counter = ConnectionCounter(max_total=5, max_per_address=3)
    for _ in range(3):
        assert counter.acquire('a') is None
    assert 'this address' in counter.acquire('a')
    assert counter.acquire('b') is None and counter.acquire('b') is None
    assert 'the server' in counter.acquire('c')
    assert counter.total == 5 and counter.count('a') == 3
    for key in 'aaabb':
        counter.release(key)
    counter.release('never counted')
    assert counter.total == 0 and len(counter) == 0
    for i in range(10000):
        key = 'k%d' % (i % 7)
        assert counter.acquire(key) is None
        if i % 3:
            assert counter.acquire(key) is None
            counter.release(key)
        counter.release(key)
    assert counter.total == 0 and len(counter) == 0


def test_token_bucket_arithmetic():
    tokens, stamp, wait = take_token(1.0, 0.0, 0.0, 2.0, 3.0)
    assert (tokens, wait) == (0.0, 0.0)
    tokens, stamp, wait = take_token(tokens, stamp, 0.1, 2.0, 3.0)
    assert wait == pytest.approx(0.4) and tokens == pytest.approx(0.2)
    tokens, stamp, wait = take_token(tokens, stamp, 100.0, 2.0, 3.0)
    assert (tokens, stamp, wait) == (2.0, 100.0, 0.0)  # capped at 3
    # a clock that goes back never adds tokens
    assert take_token(0.0, 5.0, 4.0, 2.0, 3.0)[2] == pytest.approx(0.5)


def test_rate_limiter_burst_refill_and_bounded_table():
    limiter = HandshakeRateLimiter(rate=2.0, burst=3, max_entries=100)
    assert [limiter.check('a', 0.0) for _ in range(3)] == [0.0] * 3
    assert limiter.check('a', 0.0) == pytest.approx(0.5)
    assert limiter.check('b', 0.0) == 0.0  # others unaffected
    assert limiter.check('a', 0.5) == 0.0
    for i in range(1000):
        limiter.check('addr%d' % i, 1.0 + i)
    assert len(limiter) <= 100
    with pytest.raises(PolicyError):
        HandshakeRateLimiter(0, 1)
    with pytest.raises(PolicyError):
        HandshakeRateLimiter(1, 0)


def test_log_throttle_once_per_interval_and_bounded():
    throttle = LogThrottle(interval=60, max_entries=50)
    assert throttle.check('a', 0) == 0
    assert [throttle.check('a', t) for t in (1, 2, 59)] == [None] * 3
    assert throttle.check('b', 1) == 0
    assert throttle.check('a', 60) == 3
    for i in range(500):
        throttle.check('x%d' % i, 100 + i)
    assert len(throttle._last) <= 50


def test_access_limits_rate_then_caps():
    limits = AccessLimits(
        LimitSettings(
            max_connections_per_ip=2, handshake_rate=1, handshake_burst=3
        )
    )
    keys = [limits.admit('10.0.0.1', 0.0) for _ in range(2)]
    with pytest.raises(AccessRefused) as info:
        limits.admit('10.0.0.1', 0.0)
    assert info.value.status == 503
    assert ('Retry-After', '5') in info.value.headers
    assert info.value.log_skipped == 0
    with pytest.raises(AccessRefused) as info:
        limits.admit('10.0.0.1', 0.0)
    assert info.value.status == 429 and info.value.log_skipped is None
    assert ('Retry-After', '1') in info.value.headers
    for key in keys:
        limits.release(key)
    assert limits.admit('10.0.0.1', 1.0) == '10.0.0.1'
    with pytest.raises(PolicyError):
        LimitSettings(max_connections=-1)
    with pytest.raises(PolicyError):
        LimitSettings(ipv6_prefix_length=129)


# ---- Apache options --------------------------------------------------


def test_apache_options(tmp_path):
    base = {'mod_pywebsocket.handler_root': str(tmp_path)}
    config = parse_options(base)
    assert config.server_options.origin_policies is None
    assert config.limit_settings is None
    config = parse_options(
        dict(
            base,
            **{
                'mod_pywebsocket.allowed_origins': 'same, *.example.com',
                'mod_pywebsocket.allow_missing_origin': 'On',
                'mod_pywebsocket.max_connections': '150',
                'mod_pywebsocket.max_connections_per_ip': '10',
                'mod_pywebsocket.ipv6_prefix_length': '56',
                'mod_pywebsocket.handshake_rate': '2.5',
                'mod_pywebsocket.handshake_burst': '4',
                'mod_pywebsocket.limits_dir': str(tmp_path),
            },
        )
    )
    policy = config.server_options.origin_policies.policy_for('/x')
    assert policy.same and policy.allow_missing
    settings = config.limit_settings
    assert (
        settings.max_connections,
        settings.max_connections_per_ip,
        settings.ipv6_prefix_length,
        settings.handshake_rate,
        settings.handshake_burst,
    ) == (150, 10, 56, 2.5, 4)
    assert config.limits_dir == str(tmp_path) and not config.unknown_options
    for name, value, expected in (
        ('allowed_origins', 'example.com', 'not an origin'),
        ('max_connections', '-1', 'an integer >= 0'),
        ('handshake_rate', 'fast', 'a number per second'),
        ('handshake_burst', '0', 'an integer >= 1'),
        ('ipv6_prefix_length', '200', 'from 0 to 128'),
        ('limits_dir', 'relative', 'absolute'),
    ):
        with pytest.raises(OptionError) as info:
            parse_options(dict(base, **{apache_options.PREFIX + name: value}))
        assert name in str(info.value) and expected in str(info.value)


# ---- the table Apache's children share ---------------------------------


def _fork_holder(directory, address):
    """A child process holding one admitted connection until its pipe
    closes: (pid, the pipe's write end)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(ready_r)
            os.close(hold_w)
            limits = SharedLimits(
                LimitSettings(max_connections=4), directory, 'limits-test'
            )
            limits.admit(address, 0.0)
            os.write(ready_w, b'x')
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    ready, _, _ = select.select([ready_r], [], [], 30)
    assert ready and os.read(ready_r, 1) == b'x'
    os.close(ready_r)
    return pid, hold_w


def test_shared_limits_across_processes_and_crashes(tmp_path):
    directory = str(tmp_path / 'limits')
    settings = LimitSettings(max_connections=4, max_connections_per_ip=2)
    limits = SharedLimits(settings, directory, 'limits-test')
    children = [
        _fork_holder(directory, address)
        for address in ('10.0.0.1', '10.0.0.2')
    ]
    try:
        assert limits.snapshot()[0] == 2
        mine = limits.admit('10.0.0.1', 0.0)  # 2nd of 10.0.0.1
        with pytest.raises(AccessRefused) as info:
            limits.admit('10.0.0.1', 0.0)
        assert info.value.status == 503 and 'address' in str(info.value)
        other = limits.admit('10.0.0.3', 0.0)
        with pytest.raises(AccessRefused) as info:
            limits.admit('10.0.0.4', 0.0)
        assert 'server holds its maximum of 4' in str(info.value)
        # a child killed without releasing frees its slot all the same
        os.kill(children[0][0], signal.SIGKILL)
        os.waitpid(children[0][0], 0)
        assert limits.snapshot()[0] == 3
        limits.release(limits.admit('10.0.0.1', 0.0))
        limits.release(mine)
        limits.release(mine)  # idempotent
        limits.release(other)
    finally:
        for _, hold in children:
            os.close(hold)
        os.waitpid(children[1][0], 0)
    assert limits.snapshot() == (0, {})
    assert os.stat(directory).st_mode & 0o777 == 0o700


def test_shared_limits_10000_cycles_and_rate(tmp_path):
    limits = SharedLimits(
        LimitSettings(max_connections_per_ip=3),
        str(tmp_path / 'd'),
        'limits-test',
    )
    for i in range(10000):
        ticket = limits.admit('10.0.%d.1' % (i % 5), 0.0)
        if i % 2:
            limits.release(limits.admit('10.0.%d.1' % (i % 5), 0.0))
        limits.release(ticket)
    assert limits.snapshot() == (0, {})
    size = os.path.getsize(limits.path)
    rate = SharedLimits(
        LimitSettings(handshake_rate=2, handshake_burst=3),
        str(tmp_path / 'd'),
        'limits-test',
    )
    results = []
    for _ in range(5):
        try:
            rate.release(rate.admit('2001:db8::1', 100.0))
            results.append(0)
        except AccessRefused as e:
            results.append((e.status, e.retry_after, e.log_skipped))
    assert results == [0, 0, 0, (429, 1, 0), (429, 1, None)]
    with pytest.raises(AccessRefused):  # the same /64
        rate.admit('2001:db8::2', 100.0)
    rate.release(rate.admit('2001:db8:0:1::1', 100.0))  # another /64
    rate.release(rate.admit('2001:db8::1', 100.5))  # refilled
    for i in range(20000):  # bounded record table
        rate.release(rate.admit('10.%d.%d.1' % (i // 256, i % 256), 200.0))
    assert os.path.getsize(limits.path) == size


def test_private_directory_refuses_unsafe_ones(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(OSError):
        private_directory(str(shared))
    link = tmp_path / 'link'
    link.symlink_to(tmp_path / 'target-dir')
    (tmp_path / 'target-dir').mkdir(mode=0o700)
    with pytest.raises(OSError):
        private_directory(str(link))
