#!/usr/bin/env python3
"""Black-box loopback benchmark of WebSocket echo servers.

    .venv/bin/python bench/run.py                  # full run (make bench)
    .venv/bin/python bench/run.py --quick          # one short repetition
    .venv/bin/python bench/run.py --servers ours,websockets-asyncio \\
        --scenarios rtt,throughput --reps 5

Servers (each an echo endpoint, started as a subprocess on a free
127.0.0.1 port for every single measurement and stopped by PID):

  ours                 python -m mod_pywebsocket.standalone (example/echo_wsh.py)
  pywebsocket3         pywebsocket3 4.0.2 from PyPI, its standalone server,
                       in bench/.venv-peers (created on first use)
  websockets-asyncio   bench/servers/websockets_asyncio_echo.py
  websockets-sync      bench/servers/websockets_sync_echo.py (threads)
  ours-apache          ours under Apache 2.4 + mod_python, prefork MPM
                       (test/apache_fixture.py)
  baseline-apache      the same from another checkout (--baseline-tree)

The load comes from bench/load.js (Node, the `ws` package, installed into
bench/node_modules with npm on first use). Scenarios: rtt, concurrent,
throughput, handshakes, idle, deflate (see docs/bench.md). Servers run
interleaved (for each repetition, for each scenario: A, B, C, ..., the
order rotated by one each repetition); the
report gives medians, each server's ratio to `ours`, server CPU per unit
(from /proc: utime+stime of the server and all its threads and child
processes) and the client's CPU beside it.

Writes the raw JSON to bench/out/ and, for a full run, the table to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

from peers import (
    BENCH_DIR,
    LOAD_JS,
    ROOT_DIR,
    DEFAULT_SERVERS,
    SERVER_NAMES,
    SERVERS_DIR,
    ApacheServer,
    ProcessServer,
    SetupError,
    ensure_node,
    ensure_pyspy,
    log,
    make_server,
)
from procfs import (
    cpu_seconds,
    cpu_split,
    loadavg,
    memory_kib,
    open_fds,
    raise_nofile_limit,
)
from hostile import keep_block
from profiling import Profiler, summarize_profile
from report import machine_info, medians, render_markdown

SCENARIOS = [
    'rtt',
    'concurrent',
    'throughput',
    'handshakes',
    'idle',
    'deflate',
]
MIB = 1024 * 1024


# ---- the load generator --------------------------------------------------


class Load:
    """bench/load.js running one scenario; `marks` calls back at each
    MARK line so that server/client CPU and memory are sampled there."""

    def __init__(self, node: str, config: dict) -> None:
        self.proc = subprocess.Popen(
            [node, LOAD_JS, json.dumps(config)],
            cwd=BENCH_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: 'queue.Queue[Optional[str]]' = queue.Queue()
        self.stderr: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def run(self, on_mark: Callable[[str], str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError('load generator timed out')
                try:
                    line = self.lines.get(timeout=left)
                except queue.Empty:
                    raise RuntimeError('load generator timed out')
                if line is None:
                    raise RuntimeError(
                        'load generator exited (%s): %s'
                        % (self.proc.wait(10), ''.join(self.stderr)[-2000:])
                    )
                if line.startswith('MARK '):
                    answer = on_mark(line[5:])
                    self.proc.stdin.write(answer + '\n')
                    self.proc.stdin.flush()
                elif line.startswith('RESULT '):
                    return json.loads(line[7:])
                elif line.startswith('ERROR '):
                    raise RuntimeError('load generator: ' + line[6:])
        finally:
            if self.proc.poll() is None:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)


# ---- scenarios -----------------------------------------------------------


# Connections each Apache child serves before a measurement (see run_one).
APACHE_TOUCH_ROUNDS = 8


def scenario_config(scenario: str, args: argparse.Namespace) -> dict:
    quick = args.quick
    duration = args.duration
    config = {
        'scenario': scenario,
        'duration': duration,
        'warmup': 20 if quick else 200,
        'touch': 0 if scenario == 'idle' else 80,
    }
    if scenario == 'rtt':
        config.update(size=32, count=1000000)
    elif scenario == 'concurrent':
        config.update(size=32, conns=64, count=2000000)
    elif scenario == 'throughput':
        config.update(
            size=MIB, count=20 if quick else 5000, warmup=2 if quick else 10
        )
    elif scenario == 'deflate':
        config.update(
            size=256 * 1024,
            count=40 if quick else 20000,
            warmup=2 if quick else 10,
        )
    elif scenario == 'handshakes':
        config.update(count=100 if quick else 20000, parallel=16)
    elif scenario == 'idle':
        targets = [n for n in (2000, 5000, 10000) if n < args.idle_max]
        config.update(
            idleTargets=targets + [args.idle_max],
            closeTimeout=args.idle_close_timeout * 1000,
        )
    return config


def run_one(
    server, scenario: str, args: argparse.Namespace, node: str, tag: str
) -> dict:
    """Start `server`, run one scenario against it, stop it."""
    config = scenario_config(scenario, args)
    if isinstance(server, ApacheServer):
        # a prefork child's first connection is its slowest (lazy imports
        # on open and on close), and its next few still run Python code
        # the interpreter has not specialised yet: warm every child, idle
        # included, with APACHE_TOUCH_ROUNDS connections each
        config['touch'] = server.workers_for(scenario)
        config['touchRounds'] = APACHE_TOUCH_ROUNDS
    record = {'server': server.name, 'scenario': scenario, 'config': config}
    server.start(tag, scenario)
    profiler = None
    try:
        config['url'] = server.url()
        load = Load(node, config)
        samples: Dict[str, dict] = {}

        def on_mark(name: str) -> str:
            nonlocal profiler
            # profiled: the measured phase (not idle: py-spy cannot sample
            # thousands of threads at any useful rate; use perf there)
            if (
                name == 'begin'
                and args.pyspy
                and scenario != 'idle'
                and profiler is None
                and isinstance(server, ProcessServer)
            ):
                profiler = Profiler(
                    args.pyspy,
                    server.pid,
                    os.path.join(
                        args.out, 'profile-%s-%s.txt' % (server.name, tag)
                    ),
                )
                time.sleep(0.3)  # attached before the load starts
            if profiler is not None and name == 'end':
                profiler.stop()
                record['profile'] = profiler.path
            if name.startswith('stage '):
                time.sleep(args.idle_settle)  # let the server settle
            pids = server.pids()
            user, system = cpu_split(pids)
            sample = {
                't': time.monotonic(),
                'server_cpu': user + system,
                'server_sys': system,
                'client_cpu': cpu_seconds([load.proc.pid]),
                'server_processes': len(pids),
            }
            if scenario == 'idle':
                sample.update(memory_kib(pids))
                sample['server_fds'] = open_fds(pids)
            samples[name] = sample
            if name.startswith('held '):
                if args.idle_close == 'server':
                    server.terminate()
                    return 'server'
                return 'client'
            return 'go'

        timeout = (
            120
            + 6 * args.duration
            + (2 * args.idle_close_timeout + 300 if scenario == 'idle' else 0)
        )
        result = load.run(on_mark, timeout)
        record['load'] = result
        record['samples'] = samples
        record['metrics'] = metrics_for(scenario, result, samples)
        record['ok'] = True
        if scenario == 'idle':
            record['server_emfile'] = server.log_contains(
                'Too many open files'
            )
            record['nofile'] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except Exception as e:  # one failed measurement must not end the run
        record['ok'] = False
        record['error'] = '%s: %s' % (type(e).__name__, e)
        record['server_log'] = server.log_tail()
    finally:
        if profiler is not None:
            profiler.stop()
        try:
            server.stop()
        except Exception as e:
            record.setdefault('error', 'stop failed: %s' % e)
    return record


def _window(samples: dict, first: str, last: str) -> dict:
    a, b = samples[first], samples[last]
    return {
        'wall': b['t'] - a['t'],
        'server_cpu': b['server_cpu'] - a['server_cpu'],
        'server_sys': b['server_sys'] - a['server_sys'],
        'client_cpu': b['client_cpu'] - a['client_cpu'],
    }


def metrics_for(scenario: str, result: dict, samples: dict) -> dict:
    m: Dict[str, float] = {}
    if scenario in ('rtt', 'concurrent', 'throughput', 'deflate'):
        w = _window(samples, 'begin', 'end')
        n, elapsed = result['messages'], result['elapsed']
        if n <= 0 or elapsed <= 0:
            raise RuntimeError('no messages were echoed')
        m['server_cpu_pct'] = 100 * w['server_cpu'] / w['wall']
        m['client_cpu_pct'] = 100 * w['client_cpu'] / w['wall']
        m['server_sys_pct'] = (
            100 * w['server_sys'] / max(w['server_cpu'], 1e-9)
        )
        if scenario in ('rtt', 'concurrent'):
            m['msg_s'] = n / elapsed
            m['server_us_per_msg'] = 1e6 * w['server_cpu'] / n
            m['client_us_per_msg'] = 1e6 * w['client_cpu'] / n
            if scenario == 'rtt':
                m['p50_us'] = result['p50_us']
                m['p99_us'] = result['p99_us']
        else:
            mib = result['bytes'] / MIB
            m['mib_s'] = mib / elapsed
            m['server_ms_per_mib'] = 1e3 * w['server_cpu'] / mib
            m['client_ms_per_mib'] = 1e3 * w['client_cpu'] / mib
            if scenario == 'deflate':
                m['negotiated'] = 1.0 if result.get('negotiated') else 0.0
    elif scenario == 'handshakes':
        for phase, first, last in (
            ('seq', 'begin', 'middle'),
            ('par', 'middle', 'end'),
        ):
            r = result['sequential' if phase == 'seq' else 'parallel']
            w = _window(samples, first, last)
            n = r['connections']
            if n <= 0:
                raise RuntimeError('no connections were made')
            m[phase + '_conn_s'] = n / r['elapsed']
            m[phase + '_server_us_per_conn'] = 1e6 * w['server_cpu'] / n
            m[phase + '_client_us_per_conn'] = 1e6 * w['client_cpu'] / n
            m[phase + '_server_cpu_pct'] = 100 * w['server_cpu'] / w['wall']
            m[phase + '_client_cpu_pct'] = 100 * w['client_cpu'] / w['wall']
            m[phase + '_server_sys_pct'] = (
                100 * w['server_sys'] / max(w['server_cpu'], 1e-9)
            )
            m[phase + '_unclean'] = r['unclean']
    elif scenario == 'idle':
        held = result['held']
        m['held'] = held
        m['close_s'] = result['close_s']
        m['clean_closes'] = result['clean_closes']
        m['open_conn_s'] = held / result['open_s'] if result['open_s'] else 0
        if held and 'closed' in samples:
            held_mark = [k for k in samples if k.startswith('held ')][0]
            w = _window(samples, held_mark, 'closed')
            m['close_server_cpu_s'] = w['server_cpu']
            m['close_server_us_per_conn'] = 1e6 * w['server_cpu'] / held
        stages = sorted(
            (int(k.split()[1]), v)
            for k, v in samples.items()
            if k.startswith('stage ')
        )
        base = samples['begin']
        if held and stages:
            last = stages[-1][1]
            m['kib_per_conn'] = (last['pss_kib'] - base['pss_kib']) / held
            m['rss_kib_per_conn'] = (last['rss_kib'] - base['rss_kib']) / held
            m['server_mib_held'] = last['pss_kib'] / 1024
            m['total_kib_per_conn'] = last['pss_kib'] / held
            m['server_fds'] = last['server_fds']
    return m


def tcp_baseline(args: argparse.Namespace, node: str, log_dir: str) -> dict:
    """Raw TCP echo (servers/tcp_echo.py) with the same client: what the
    loopback and a minimal Python server allow on this machine."""
    server = ProcessServer(
        'tcp-baseline',
        lambda port: [
            sys.executable,
            os.path.join(SERVERS_DIR, 'tcp_echo.py'),
            str(port),
        ],
        cwd=BENCH_DIR,
        log_dir=log_dir,
    )
    server.start('baseline')
    try:
        result = Load(
            node,
            {
                'scenario': 'tcp',
                'port': server.port,
                'duration': min(args.duration, 2.0),
            },
        ).run(lambda name: 'go', 60)
    finally:
        server.stop()
    small, big = result['pingpong'], result['mib']
    return {
        'pingpong_msg_s': small['round_trips'] / small['elapsed'],
        'mib_s': big['round_trips'] / big['elapsed'],
    }


# ---- main ----------------------------------------------------------------


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--reps', type=int, default=3, help='repetitions (default 3)'
    )
    p.add_argument(
        '--quick',
        action='store_true',
        help='one short repetition (0.5 s phases, 200 idle '
        'connections); writes bench/out/ only',
    )
    p.add_argument(
        '--servers',
        default=','.join(DEFAULT_SERVERS),
        help='comma-separated, from: ' + ', '.join(SERVER_NAMES),
    )
    p.add_argument(
        '--scenarios',
        default=','.join(SCENARIOS),
        help='comma-separated, from: ' + ', '.join(SCENARIOS),
    )
    p.add_argument(
        '--duration',
        type=float,
        default=None,
        help='seconds of load per phase (default 3, quick 0.5)',
    )
    p.add_argument(
        '--idle-max',
        type=int,
        default=None,
        help='idle connections to try to hold (default 10000, '
        'quick 200); stages at 2,000 and 5,000 on the way',
    )
    p.add_argument(
        '--idle-reps',
        type=int,
        default=1,
        help='repetitions that include the idle scenario (the '
        'first N; default 1: it takes minutes, and its counts and '
        'memory vary little)',
    )
    p.add_argument(
        '--no-baseline',
        dest='baseline',
        action='store_false',
        help='skip the raw TCP loopback baseline',
    )
    p.add_argument(
        '--idle-close',
        choices=['client', 'server'],
        default='client',
        help='who closes the idle connections: the client '
        '(close frames, all at once; default) or the server '
        '(SIGTERM)',
    )
    p.add_argument(
        '--idle-close-timeout',
        type=float,
        default=60.0,
        help='seconds to wait for the idle connections to close',
    )
    p.add_argument(
        '--idle-settle',
        type=float,
        default=None,
        help='seconds to wait before sampling idle memory '
        '(default 1, quick 0.2)',
    )
    p.add_argument(
        '--apache-workers',
        type=int,
        default=256,
        help='prefork children for ours-apache (one per '
        'connection; default 256)',
    )
    p.add_argument(
        '--ours-args',
        default='',
        help='extra command-line flags for our standalone server',
    )
    p.add_argument(
        '--baseline-tree',
        metavar='DIR',
        default=None,
        help='a checkout (with its C extension built) that the '
        'baseline and baseline-events servers run from: compare '
        'a change with the previous commit in one run',
    )
    p.add_argument(
        '--report-only',
        metavar='JSON',
        default=None,
        help='measure nothing: render the markdown of a raw JSON '
        'file from an earlier run (to --results, else stdout)',
    )
    p.add_argument(
        '--profile',
        action='store_true',
        help='sample the Python servers with py-spy during the '
        'load (installed into bench/.venv-peers if missing); '
        'collapsed stacks and a summary go to OUT/ (figures of '
        'a profiled run are perturbed: do not publish them)',
    )
    p.add_argument(
        '--out',
        default=os.path.join(BENCH_DIR, 'out'),
        help='directory for the raw JSON and server logs',
    )
    p.add_argument(
        '--json',
        default=None,
        help='write the raw JSON here (default: OUT/bench-DATE.json)',
    )
    p.add_argument(
        '--results',
        default=None,
        help='markdown output (default bench/RESULTS.md for a '
        'full run, none for --quick)',
    )
    args = p.parse_args(argv)
    if args.quick:
        args.reps = 1
    if args.duration is None:
        args.duration = 0.5 if args.quick else 3.0
    if args.idle_max is None:
        args.idle_max = 200 if args.quick else 10000
    if args.idle_settle is None:
        args.idle_settle = 0.2 if args.quick else 1.0
    if (
        args.results is None
        and not args.quick
        and not args.profile
        and not args.report_only
    ):
        args.results = os.path.join(BENCH_DIR, 'RESULTS.md')
    args.servers = [s for s in args.servers.split(',') if s]
    args.scenarios = [s for s in args.scenarios.split(',') if s]
    for s in args.servers:
        if s not in SERVER_NAMES:
            p.error('unknown server %r' % s)
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error('unknown scenario %r' % s)
    if args.reps < 1:
        p.error('--reps must be at least 1')
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: stop the servers, keep the data


def report_only(path: str, results: Optional[str]) -> int:
    with open(path) as f:
        data = json.load(f)
    meta, records = data['meta'], data['records']
    names = [s for s in meta['servers'] if s not in meta.get('skipped', {})]
    markdown = render_markdown(meta, records, names, meta['scenarios'])
    if results:
        with open(results, 'w') as f:
            f.write(markdown)
        log('wrote %s' % results)
    else:
        print(markdown)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        return report_only(args.report_only, args.results)
    signal.signal(signal.SIGTERM, _interrupt)
    nofile = raise_nofile_limit()
    if nofile < args.idle_max + 1000 and 'idle' in args.scenarios:
        log('warning: RLIMIT_NOFILE is %d; idle may be capped by it' % nofile)
    try:
        node = ensure_node()
    except SetupError as e:
        log('cannot run the benchmark: %s' % e)
        return 2
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    json_path = args.json or os.path.join(args.out, 'bench-%s.json' % stamp)
    log_dir = os.path.join(args.out, 'logs-%s' % stamp)
    os.makedirs(log_dir, exist_ok=True)
    work_dir = tempfile.mkdtemp(prefix='mpws-bench-')
    meta = machine_info(args, node['version'])
    meta['json'] = os.path.relpath(json_path, ROOT_DIR)
    meta['nofile'] = nofile
    meta['loadavg_start'] = loadavg()
    if meta['loadavg_start'] > (os.cpu_count() or 1):
        log(
            'warning: load average %.1f on %d CPUs: other work will skew '
            'the figures' % (meta['loadavg_start'], os.cpu_count() or 1)
        )

    servers = []
    skipped = {}
    for name in args.servers:
        try:
            servers.append(make_server(name, args, work_dir, log_dir))
        except SetupError as e:
            log('skipping %s: %s' % (name, e))
            skipped[name] = str(e)
    meta['skipped'] = skipped
    args.pyspy = None
    if args.profile:
        try:
            args.pyspy = ensure_pyspy()
        except SetupError as e:
            log('cannot profile: %s' % e)
            return 2
    records: List[dict] = []
    started = time.monotonic()
    interrupted = False
    try:
        if args.baseline:
            try:
                meta['baseline'] = tcp_baseline(args, node['node'], log_dir)
                log('loopback baseline: %s' % meta['baseline'])
            except Exception as e:
                log('loopback baseline failed: %s' % e)
        for rep in range(1, args.reps + 1):
            for scenario in args.scenarios:
                if scenario == 'idle' and rep > args.idle_reps:
                    continue
                # Rotated each repetition: no server always runs first
                # (after a scenario change, the first measurement of a
                # repetition is the noisiest).
                shift = (rep - 1) % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    tag = '%s-%d' % (scenario, rep)
                    t0 = time.monotonic()
                    record = run_one(server, scenario, args, node['node'], tag)
                    record['rep'] = rep
                    record['seconds'] = time.monotonic() - t0
                    record['loadavg'] = loadavg()
                    records.append(record)
                    log(
                        '[%5.0fs] rep %d %-10s %-18s %s'
                        % (
                            time.monotonic() - started,
                            rep,
                            scenario,
                            server.name,
                            _summary(record),
                        )
                    )
    except KeyboardInterrupt:
        interrupted = True
        log('interrupted; writing what was measured')
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception:
                pass
        shutil.rmtree(work_dir, ignore_errors=True)
    meta['seconds'] = time.monotonic() - started
    meta['loadavg_end'] = loadavg()
    meta['interrupted'] = interrupted
    with open(json_path, 'w') as f:
        json.dump(
            {'meta': meta, 'records': records, 'medians': medians(records)},
            f,
            indent=1,
        )
    names = [s.name for s in servers]
    markdown = render_markdown(meta, records, names, args.scenarios)
    if args.results and not interrupted:
        # (the hostile block is bench/hostile.py's: kept)
        markdown = keep_block(args.results, markdown)
        with open(args.results, 'w') as f:
            f.write(markdown)
        log('wrote %s' % args.results)
    elif args.results:
        log('interrupted: %s left as it was' % args.results)
    print(markdown)
    profiles = [r for r in records if r.get('profile')]
    if profiles:
        summary_path = os.path.join(args.out, 'profile-%s.md' % stamp)
        with open(summary_path, 'w') as f:
            for r in profiles:
                f.write(
                    '## %s, %s (rep %s)\n\n```\n%s\n```\n\n'
                    % (
                        r['server'],
                        r['scenario'],
                        r['rep'],
                        summarize_profile(r['profile']),
                    )
                )
        log('profile summaries: %s' % summary_path)
    log('raw JSON: %s' % json_path)
    return 1 if interrupted else 0


def _summary(record: dict) -> str:
    if not record.get('ok'):
        return 'FAILED: ' + record.get('error', '?')[:200]
    return ', '.join(
        '%s=%.4g' % (k, v)
        for k, v in record['metrics'].items()
        if not k.endswith('_pct') and 'client' not in k
    )


if __name__ == '__main__':
    sys.exit(main())
