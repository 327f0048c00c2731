"""The benchmark harness runs: one short repetition of every scenario of
bench/run.py against our standalone server only (the peers are `make
bench`'s business). It checks that numbers come out, never how big they
are: no timed assertions.

Needs Node and npm (bench/load.js drives the load with the `ws` package,
which bench/run.py installs into bench/node_modules on first use): skipped
without them, failed in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT_DIR, require

BENCH_DIR = os.path.join(ROOT_DIR, 'bench')
RUN_PY = os.path.join(BENCH_DIR, 'run.py')

SCENARIOS = [
    'rtt',
    'concurrent',
    'throughput',
    'handshakes',
    'idle',
    'deflate',
]

# metrics that must be positive after one short repetition
EXPECTED = {
    'rtt': ['msg_s', 'p50_us', 'p99_us', 'server_us_per_msg'],
    'concurrent': ['msg_s', 'server_us_per_msg'],
    'throughput': ['mib_s', 'server_ms_per_mib'],
    'handshakes': [
        'seq_conn_s',
        'seq_server_us_per_conn',
        'par_conn_s',
        'par_server_us_per_conn',
    ],
    'idle': ['held', 'kib_per_conn', 'close_s', 'clean_closes'],
    'deflate': ['mib_s', 'server_ms_per_mib', 'negotiated'],
}


def _quick_run(tmp_path, *args: str) -> list:
    """The records of `bench/run.py --quick ARGS` (no loopback baseline),
    which must succeed."""
    raw = tmp_path / 'bench.json'
    result = subprocess.run(
        [sys.executable, RUN_PY, '--quick', '--no-baseline']
        + ['--out', str(tmp_path), '--json', str(raw), *args],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(raw.read_text())['records']


def test_quick_benchmark_of_our_server(tmp_path):
    require(shutil.which('node') is not None, 'node (Node.js 18+)')
    require(
        shutil.which('npm') is not None
        or os.path.isdir(os.path.join(BENCH_DIR, 'node_modules', 'ws')),
        'npm (installs the ws package for bench/load.js)',
    )
    results = tmp_path / 'RESULTS.md'
    records = _quick_run(
        tmp_path,
        '--servers',
        'ours',
        '--scenarios',
        ','.join(SCENARIOS),
        '--idle-max',
        '100',
        '--results',
        str(results),
    )
    assert [r['scenario'] for r in records] == SCENARIOS
    for record in records:
        assert record['server'] == 'ours'
        assert record['ok'], (
            record['scenario'],
            record.get('error'),
            record.get('server_log'),
        )
        for metric in EXPECTED[record['scenario']]:
            assert record['metrics'][metric] > 0, (
                record['scenario'],
                metric,
                record,
            )
    assert records[SCENARIOS.index('idle')]['metrics']['held'] == 100
    table = results.read_text()
    assert '| rtt: msg/s' in table and 'nproc' in table


def test_hostile_scenario_reports_and_keeps_its_block(tmp_path):
    # No Node needed: bench/hostile.py is its own client.
    results = tmp_path / 'RESULTS.md'
    results.write_text('# Benchmark results\n\nother text\n')
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(BENCH_DIR, 'hostile.py'),
            '--servers',
            'ours',
            '--attacks',
            'pings,halves',
            '--flood-seconds',
            '0.5',
            '--hold-seconds',
            '0',
            '--settle-seconds',
            '0',
            '--out',
            str(tmp_path),
            '--results',
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT_DIR,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert text.startswith('# Benchmark results\n\nother text\n'), text
    rows = [
        line
        for line in text.splitlines()
        if line.startswith(('| pings | ours |', '| halves | ours |'))
    ]
    assert len(rows) == 2, text
    (raw,) = tmp_path.glob('hostile-*.json')
    records = json.loads(raw.read_text())['records']
    assert all(
        r['peak_mib'] > 0 and r['retained_mib'] > 0 and r['alive']
        for r in records
    ), records
    assert records[0]['pings_sent'] > 0, records
    # bench/run.py rewrites RESULTS.md: the hostile block stays
    sys.path.insert(0, BENCH_DIR)
    try:
        from hostile import keep_block
    finally:
        sys.path.remove(BENCH_DIR)
    kept = keep_block(str(results), '# new results\n')
    assert kept.startswith('# new results\n')
    assert '| pings | ours |' in kept


RECORDING_ECHO = '''\
"""Echo that notes each handshake (the bench test's marker)."""

import os

MARKER = os.path.join(os.path.dirname(__file__), 'handshakes.log')


def web_socket_do_extra_handshake(request):
    with open(MARKER, 'a') as f:
        f.write('x')


def web_socket_transfer_data(request):
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        binary = not isinstance(message, str)
        request.ws_stream.send_message(message, binary=binary)
'''


def test_baseline_apache_serves_the_other_checkout(tmp_path):
    """`--servers baseline-apache --baseline-tree DIR`: Apache serves the
    package and example/ handlers of DIR, in the same run as ours."""
    import apache_fixture

    require(shutil.which('node') is not None, 'node (Node.js 18+)')
    missing = apache_fixture.apache_missing()
    require(missing is None, 'Apache + mod_python (%s)' % missing)
    tree = apache_fixture.make_base_dir('mpws-bench-tree-')
    try:
        os.symlink(
            os.path.join(ROOT_DIR, 'mod_pywebsocket'),
            os.path.join(tree, 'mod_pywebsocket'),
        )
        example = apache_fixture.make_dir(os.path.join(tree, 'example'))
        with open(os.path.join(example, 'echo_wsh.py'), 'w') as f:
            f.write(RECORDING_ECHO)
        os.chmod(example, 0o777)  # (the children note handshakes there)
        (record,) = _quick_run(
            tmp_path,
            '--servers',
            'baseline-apache',
            '--baseline-tree',
            tree,
            '--scenarios',
            'handshakes',
            '--apache-workers',
            '8',
        )
        assert record['server'] == 'baseline-apache'
        assert record['ok'], (record.get('error'), record.get('server_log'))
        assert record['metrics']['seq_conn_s'] > 0
        with open(os.path.join(example, 'handshakes.log')) as f:
            noted = len(f.read())
        assert noted >= record['load']['sequential']['connections']
    finally:
        shutil.rmtree(tree, ignore_errors=True)
