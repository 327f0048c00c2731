"""The broker without Redis: the sans-I/O pieces (envelopes, per-sender
order, outbox, stream window, backoff, broker URLs), the in-process
broker's groups and sends, and groups through the standalone server for
event-style and classic handlers."""

from __future__ import annotations

import random
import time

import pytest

from mod_pywebsocket import broker, client
from mod_pywebsocket.apache_options import OptionError, parse_options
from mod_pywebsocket.broker_core import (
    DURABLE,
    PUBSUB,
    TO_GROUP,
    Backoff,
    Envelope,
    EnvelopeError,
    Outbox,
    SenderOrder,
    StreamWindow,
    parse_broker_url,
    redacted,
)
from mod_pywebsocket.common import ConnectionTerminatedException
from server_fixture import running_server

# ---- sans-I/O ------------------------------------------------------------


@pytest.mark.parametrize('message', ['hé\nllo', '', b'\x00\xff\n', b''])
def test_envelope_round_trip(message):
    envelope = Envelope(TO_GROUP, 'room 1', message, 'node', 7, 'node.3')
    assert Envelope.decode(envelope.encode()) == envelope


@pytest.mark.parametrize(
    'data',
    [
        b'',
        b'no newline',
        b'{"v":2}\nx',
        b'[1]\nx',
        b'{"v":1,"k":"nope"}\n',
        b'\xff\n',
        b'{"v":1,"k":"group"}\n',
    ],
)
def test_envelope_decode_rejects_garbage(data):
    with pytest.raises(EnvelopeError):
        Envelope.decode(data)


def test_sender_order_drops_duplicates_and_counts_gaps():
    order = SenderOrder()
    accepted = [s for s in [1, 2, 2, 3, 1, 6, 7, 5] if order.accept('a', s)]
    assert accepted == [1, 2, 3, 6, 7]
    assert (order.duplicates, order.lost) == (3, 2)
    assert order.accept('b', 40)  # a new sender starts anywhere
    assert order.lost == 2


def test_sender_order_is_bounded():
    order = SenderOrder(max_senders=3)
    for name in 'abcd':
        order.accept(name, 1)
    assert order.accept('a', 1)  # 'a' was forgotten, first again
    assert not order.accept('d', 1)


def test_outbox_expires_by_age_and_bounds_by_count():
    box = Outbox(window=60, limit=3)
    assert [box.push(b'%d' % i, now=float(i)) for i in range(4)] == [
        0,
        0,
        0,
        1,
    ]
    assert box.peek_many(10) == [b'1', b'2', b'3']
    assert box.expire(now=62.5) == 2  # pushed at 1 and 2
    assert box.peek_many(10) == [b'3']
    box.drop_first(5)
    assert len(box) == 0


def test_stream_window_skips_only_entries_older_than_the_window():
    window = StreamWindow(window=60)
    now = 1_000_000.0
    ids = [
        '%d-0' % ((now - 61) * 1000),
        '%d-1' % ((now - 61) * 1000),
        '%d-0' % ((now - 59) * 1000),
        '%d-0' % (now * 1000),
    ]
    old, fresh = window.split(ids, now)
    assert (old, fresh) == (ids[:2], ids[2:])
    assert window.skipped == 2


def test_backoff_doubles_to_a_maximum_and_resets():
    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, base in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        assert base <= delay <= base * 1.2
    backoff.reset()
    assert backoff.next_delay() <= 0.12


def test_broker_url_defaults_and_parameters():
    assert parse_broker_url('local').is_local
    assert parse_broker_url('').is_local
    s = parse_broker_url('redis://h:6380/2')
    assert (s.url, s.mode, s.window, s.retry) == (
        'redis://h:6380/2',
        PUBSUB,
        60.0,
        False,
    )
    s = parse_broker_url(
        'redis://h/1?mode=durable&window=5&retry=on'
        '&ttl=4&heartbeat=0.5&prefix=app&health=x'
    )
    assert (
        s.url,
        s.mode,
        s.window,
        s.retry,
        s.ttl,
        s.heartbeat,
        s.prefix,
    ) == ('redis://h/1?health=x', DURABLE, 5.0, True, 4.0, 0.5, 'app')


@pytest.mark.parametrize(
    'url, words',
    [
        ('http://h', 'expected local'),
        ('redis://h?mode=fast', 'mode'),
        ('redis://h?window=0', 'window'),
        ('redis://h?ttl=x', 'ttl'),
        ('redis://h?ttl=1&heartbeat=2', 'must exceed'),
        ('redis://h?retry=maybe', 'retry'),
    ],
)
def test_broker_url_errors_say_what_is_wrong(url, words):
    with pytest.raises(ValueError, match=words):
        parse_broker_url(url)


def test_redacted_hides_the_password():
    assert redacted('redis://u:secret@h:1/0') == 'redis://u:***@h:1/0'
    assert redacted('redis://h:1/0') == 'redis://h:1/0'


def test_apache_broker_option_is_validated():
    base = {'mod_pywebsocket.handler_root': '/tmp'}
    config = parse_options(
        dict(
            base,
            **{'mod_pywebsocket.broker': 'redis://127.0.0.1:1/0?mode=durable'},
        )
    )
    assert config.broker == 'redis://127.0.0.1:1/0?mode=durable'
    assert config.unknown_options == []
    assert parse_options(base).broker is None
    with pytest.raises(OptionError, match='mod_pywebsocket.broker'):
        parse_options(dict(base, **{'mod_pywebsocket.broker': 'nats://x'}))


# ---- the in-process broker -------------------------------------------------


class FakeConnection:
    def __init__(self, b, resource='/r', closed=False):
        self.id = b.new_id()
        self.resource = self.path = resource
        self.closed = closed
        self.got = []

    def send(self, message):
        if self.closed:
            raise ConnectionTerminatedException('closed')
        self.got.append(message)


def test_local_broker_groups_resources_and_ids():
    b = broker.LocalBroker()
    a, c, d = (FakeConnection(b) for _ in range(3))
    other = FakeConnection(b, resource='/other')
    for conn in (a, c, d, other):
        b.register(conn)
    b.join(a, 'room')
    b.join(other, 'room')
    b.join(a, 'room')  # twice: still one member
    assert b.members('room') == sorted([a.id, other.id])
    assert b.resource_members('/r') == sorted([a.id, c.id, d.id])
    assert b.send_to_group('room', 'g') == 2
    assert b.send_to_resource('/r', 'r', exclude=c.id) == 2
    assert b.send_to_connection(d.id, 'd') == 1
    assert b.send_to_connection('elsewhere.1', 'x') == 0
    assert (a.got, c.got, d.got, other.got) == (
        ['g', 'r'],
        [],
        ['r', 'd'],
        ['g'],
    )
    d.closed = True
    assert b.send_to_resource('/r', 'late') == 2  # d refuses: not counted
    b.leave(a, 'room')
    b.unregister(other)
    assert b.members('room') == []
    assert b.directory.groups_of(a.id) == []


def test_get_broker_is_local_by_default():
    assert broker.get_broker().url == 'local'
    assert broker.configure('local') is broker.get_broker()


# ---- through the standalone server ---------------------------------------

CLASSIC_GROUP_HANDLER = '''
from mod_pywebsocket import broker


def web_socket_transfer_data(request):
    with broker.attach(request) as conn:
        conn.join('lobby')
        conn.send('id ' + conn.id)
        while True:
            line = request.ws_stream.receive_message()
            if line is None:
                return
            conn.send_to_group('lobby', 'classic: ' + line)
'''


def _receive_until(ws, prefix, limit=10):
    for _ in range(limit):
        message = ws.receive()
        if message.startswith(prefix):
            return message
    raise AssertionError('no message starting with %r' % prefix)


def test_groups_for_event_and_classic_handlers(tmp_path):
    (tmp_path / 'classic_wsh.py').write_text(CLASSIC_GROUP_HANDLER)
    from conftest import EXAMPLE_DIR

    (tmp_path / 'chat_wsh.py').write_text(
        open(EXAMPLE_DIR + '/chat_wsh.py').read()
    )
    with running_server(document_root=str(tmp_path)) as server:
        base = 'ws://127.0.0.1:%d' % server.port
        event_a = client.connect(base + '/chat')
        event_b = client.connect(base + '/chat')
        classic = client.connect(base + '/classic')
        classic_id = classic.receive()[3:]
        event_a.send('/join lobby')
        assert event_a.receive() == 'joined lobby'
        event_a.send('/id')
        a_id = event_a.receive()[len('you are ') :]
        event_b.send('/who lobby')
        assert event_b.receive() == 'present: %s' % ' '.join(
            sorted([a_id, classic_id])
        )
        classic.send('hi')  # classic → group
        assert event_a.receive() == 'classic: hi'
        assert classic.receive() == 'classic: hi'
        event_b.send('/to lobby yo')  # event (not a member) → group
        assert event_a.receive() == '[lobby] yo'
        assert classic.receive() == '[lobby] yo'
        broker.send_to_connection(classic_id, 'just you')
        assert classic.receive() == 'just you'
        event_b.send('everyone on /chat')
        assert event_a.receive() == 'everyone on /chat'
        assert event_b.receive() == 'everyone on /chat'
        classic.close()
        deadline = time.monotonic() + 5
        while (
            classic_id in broker.members('lobby')
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert broker.members('lobby') == [a_id]
        event_a.close()
        event_b.close()
