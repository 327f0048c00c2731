"""The README's code blocks: each is marked (`<!-- snippet: KIND -->`);
handlers are served and talked to, the embedding and client examples are
run, fragments (shell commands, Apache configuration, partial code) must
at least be marked, and Python fragments compile."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from conftest import ROOT_DIR
from mod_pywebsocket import client, events
from mod_pywebsocket.common import HandshakeException
from server_fixture import running_server

BLOCK = re.compile(r'(<!-- snippet: (\w+) -->\n)?```(\w*)\n(.*?)```', re.S)


def _blocks():
    with open(os.path.join(ROOT_DIR, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    return [
        (m.group(2), m.group(3), m.group(4)) for m in BLOCK.finditer(readme)
    ]


def _python(kind):
    return [
        code for k, lang, code in _blocks() if lang == 'python' and k == kind
    ]


def test_every_block_is_marked():
    unmarked = [code[:60] for kind, _, code in _blocks() if kind is None]
    assert not unmarked
    kinds = {kind for kind, _, _ in _blocks()}
    assert kinds <= {'handler', 'fragment', 'embedding', 'client'}


def test_python_fragments_compile():
    for code in _python('fragment'):
        compile(code, '<README fragment>', 'exec')


def test_the_classic_handler_runs(tmp_path):
    classic, _ = _python('handler')
    (tmp_path / 'readme_wsh.py').write_text(classic, encoding='utf-8')
    with running_server(document_root=str(tmp_path)) as server:
        url = 'ws://127.0.0.1:%d/readme' % server.port
        # The console page's origin is let in, with the chosen protocol.
        with client.connect(
            url, origin='http://127.0.0.1:8880', protocols=['chat']
        ) as ws:
            assert ws.protocol == 'chat'
            ws.send('echo me')
            assert ws.receive() == 'echo me'
            ws.send(b'\x00bytes')
            assert ws.receive() == b'\x00bytes'
        with pytest.raises(HandshakeException) as info:
            client.connect(url, origin='https://evil.example')
        assert info.value.status == 403


def test_the_event_handler_runs(tmp_path):
    _, event_handler = _python('handler')
    (tmp_path / 'room_wsh.py').write_text(event_handler, encoding='utf-8')
    with running_server(document_root=str(tmp_path)) as server:
        url = 'ws://127.0.0.1:%d/room' % server.port
        with (
            client.connect(url, protocols=['chat']) as a,
            client.connect(url) as b,
        ):
            assert a.protocol == 'chat'
            deadline = time.monotonic() + 10  # both in the room
            while len(events.local_members('/room')) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            a.send('to everyone')
            assert a.receive() == 'to everyone'
            assert b.receive() == 'to everyone'


def test_the_embedding_example_runs():
    (embedding,) = _python('embedding')
    code = embedding.replace(
        "'example'", repr(os.path.join(ROOT_DIR, 'example'))
    )
    scope = {'print': lambda *args: started.set()}
    started = threading.Event()
    thread = threading.Thread(target=exec, args=(code, scope), daemon=True)
    thread.start()
    assert started.wait(10)
    server = scope['server']
    try:
        with client.connect('ws://127.0.0.1:%d/echo' % server.port) as ws:
            ws.send('embedded')
            assert ws.receive() == 'embedded'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_client_example_runs():
    (example,) = _python('client')
    printed = []
    with running_server() as server:
        code = example.replace('8880', str(server.port))
        exec(code, {'print': printed.append})
    assert printed == ['hello']


def _github_anchors(markdown):
    """The anchors GitHub gives the headings (duplicates get -1, -2...)."""
    anchors, seen = set(), {}
    for heading in re.findall(r'^#+ (.+)$', markdown, re.M):
        anchor = re.sub(r'[^\w\- ]', '', heading.strip().lower())
        anchor = anchor.replace(' ', '-')
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if not count else '%s-%d' % (anchor, count))
    return anchors


def test_links_within_the_readme_lead_somewhere():
    with open(os.path.join(ROOT_DIR, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    readme_without_code = re.sub(r'```.*?```', '', readme, flags=re.S)
    anchors = _github_anchors(readme_without_code)
    links = set(re.findall(r'\]\(#([^)]+)\)', readme))
    assert links and not links - anchors, sorted(links - anchors)
    for path in re.findall(r'\]\(((?:docs|bench|example)/[^)#]+)', readme):
        assert os.path.exists(os.path.join(ROOT_DIR, path)), path
