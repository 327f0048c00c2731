"""The Redis broker under Apache: example/chat_wsh.py across the children
of one Apache (prefork and event MPM), and an Apache mod_proxy_balancer
in front of two standalone servers (one URL, one chat)."""

from __future__ import annotations

import os

import pytest

from apache_fixture import ApacheInstance, apache_missing, make_base_dir
from chat_clients import ChatClient, send_all, wait_received, wait_until
from conftest import require
from redis_fixture import RedisServer, ServerProcess

pytest.importorskip('redis')
from mod_pywebsocket import broker as broker_module  # noqa: E402

pytestmark = [pytest.mark.apache, pytest.mark.timeout(90)]


def _debian_redis() -> bool:
    return os.path.exists('/usr/lib/python3/dist-packages/redis/__init__.py')


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.mark.parametrize('mpm', ['prefork', 'event'])
def test_chat_across_apache_children(mpm, tmp_path, redis_server):
    require(apache_missing() is None, 'Apache + mod_python')
    require(_debian_redis(), "Debian's python3-redis (Apache's Python)")
    apache = ApacheInstance(
        make_base_dir(),
        mpm=mpm,
        options={'mod_pywebsocket.broker': redis_server.url},
    ).start()
    watcher = broker_module.create(redis_server.url)
    clients = []
    try:
        # connections held open at once land in different children (one
        # per prefork child; event: spread over its processes)
        # (event: more than its 25 threads per child)
        count, messages = (8, 20) if mpm == 'prefork' else (30, 10)
        clients = [
            ChatClient(apache.url('/chat'), 'a%d' % i) for i in range(count)
        ]
        assert wait_until(
            lambda: len(watcher.resource_members('/chat')) == count, 30
        ), (watcher.resource_members('/chat'), apache.error_log()[-3000:])
        nodes = {m.split('.')[0] for m in watcher.resource_members('/chat')}
        assert len(nodes) >= 2
        send_all(clients, messages)
        assert wait_received(clients, count * messages, 30), [
            len(c.received) for c in clients
        ]
        for c in clients:
            got = c.by_sender()
            assert sorted(got) == sorted(x.name for x in clients)
            assert all(v == list(range(messages)) for v in got.values())
    finally:
        for c in clients:
            c.close()
        watcher.close()
        apache.stop()
        apache.remove()


def test_apache_balancer_in_front_of_two_standalone_servers(
    tmp_path, redis_server
):
    require(apache_missing() is None, 'Apache + mod_python')
    modules_dir = '/usr/lib/apache2/modules'
    for name in (
        'proxy',
        'proxy_http',
        'proxy_balancer',
        'lbmethod_byrequests',
        'slotmem_shm',
    ):
        require(
            os.path.exists('%s/mod_%s.so' % (modules_dir, name)), 'mod_' + name
        )
    nodes = [
        ServerProcess(tmp_path, redis_server.url, name='node%d' % i).start()
        for i in range(2)
    ]
    base = make_base_dir()
    empty = os.path.join(base, 'no-python.conf')
    with open(empty, 'w') as f:
        f.write('# the proxy alone: no mod_python handler\n')
    os.chmod(empty, 0o644)
    members = ''.join(
        '  BalancerMember http://127.0.0.1:%d upgrade=websocket\n' % n.port
        for n in nodes
    )
    apache = ApacheInstance(
        base,
        include=empty,
        modules=(
            'proxy',
            'proxy_http',
            'proxy_balancer',
            'lbmethod_byrequests',
            'slotmem_shm',
        ),
        extra_conf='<Proxy "balancer://chat">\n%s'
        '  ProxySet lbmethod=byrequests\n</Proxy>\n'
        'ProxyPass "/chat" "balancer://chat/chat"\n' % members,
    ).start()
    watcher = broker_module.create(redis_server.url)
    clients = []
    try:
        clients = [
            ChatClient(apache.url('/chat'), 'b%d' % i) for i in range(6)
        ]
        assert wait_until(
            lambda: len(watcher.resource_members('/chat')) == 6, 15
        )
        # round robin: both servers got some of the connections
        nodes_used = {
            m.split('.')[0] for m in watcher.resource_members('/chat')
        }
        assert len(nodes_used) == 2
        send_all(clients, 50)
        assert wait_received(clients, 300, 30), [
            len(c.received) for c in clients
        ]
        for c in clients:
            got = c.by_sender()
            assert sorted(got) == sorted(x.name for x in clients)
            assert all(v == list(range(50)) for v in got.values())
    finally:
        for c in clients:
            c.close()
        watcher.close()
        apache.stop()
        apache.remove()
        for n in nodes:
            n.stop()


def test_unreachable_broker_under_apache_is_a_500_naming_the_url():
    require(apache_missing() is None, 'Apache + mod_python')
    require(_debian_redis(), "Debian's python3-redis (Apache's Python)")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from conftest import free_port

    url = 'redis://127.0.0.1:%d/0' % free_port()
    apache = ApacheInstance(
        make_base_dir(), options={'mod_pywebsocket.broker': url}
    ).start()
    try:
        with pytest.raises(InvalidStatus) as raised:
            connect(apache.url('/chat'), open_timeout=30)
        assert raised.value.response.status_code == 500
        log = apache.wait_for_log('cannot reach the broker')
        assert 'PythonOption mod_pywebsocket.broker' in log
        assert url in log
    finally:
        apache.stop()
        apache.remove()
