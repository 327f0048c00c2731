#!/usr/bin/env node
// Load generator for bench/run.py: one scenario against one echo URL.
//
//   node bench/load.js '{"scenario": "rtt", "url": "ws://127.0.0.1:PORT/echo", ...}'
//
// Talks to run.py over stdio, one line at a time:
//   stdout "MARK <name>"   then waits for one line on stdin (the ack), so
//                          that run.py can sample the server's CPU and
//                          memory at exactly that point;
//   stdout "RESULT <json>" at the end (exit 0);
//   stdout "ERROR <text>"  on failure (exit 1).
// By hand: add "autoAck": "go" (or "client") to the config to answer
// every MARK at once.
// Every loop is bounded by a message/connection count and by a duration.
'use strict';

const crypto = require('crypto');
const readline = require('readline');
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

const cfg = Object.assign({
  duration: 3.0,          // seconds of measured load per phase
  count: 1e9,             // upper bound on messages/connections per phase
  warmup: 200,            // unmeasured round trips first
  size: 32,               // message size (bytes)
  conns: 64,              // connections for `concurrent`
  parallel: 16,           // workers for the parallel handshake phase
  idleTargets: [2000, 5000, 10000],
  openConcurrency: 64,    // handshakes in flight while opening idle ones
  touch: 0,               // connections opened at once to warm up workers
  touchRounds: 1,         // ... that many times
  handshakeTimeout: 5000, // ms
  closeTimeout: 60000,    // ms to wait for every connection to close
}, JSON.parse(process.argv[2]));

// ---- stdio protocol ------------------------------------------------------

const acks = [];
let ackWaiter = null;
if (!cfg.autoAck) readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (ackWaiter) { const w = ackWaiter; ackWaiter = null; w(line); }
  else acks.push(line);
});

function mark(name) {
  process.stdout.write('MARK ' + name + '\n');
  if (cfg.autoAck) return Promise.resolve(cfg.autoAck);   // run by hand
  if (acks.length) return Promise.resolve(acks.shift());
  return new Promise((resolve) => { ackWaiter = resolve; });
}

function finish(result) {
  process.stdout.write('RESULT ' + JSON.stringify(result) + '\n', () => process.exit(0));
}

function fail(err) {
  process.stdout.write('ERROR ' + String((err && err.stack) || err).replace(/\n/g, ' | ') + '\n',
    () => process.exit(1));
}
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

// ---- helpers ---------------------------------------------------------

const now = () => Number(process.hrtime.bigint()) / 1e9;   // seconds

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function open(options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.url, Object.assign({
      perMessageDeflate: false,
      skipUTF8Validation: true,
      maxPayload: 512 * 1024 * 1024,
      handshakeTimeout: cfg.handshakeTimeout,
    }, options || {}));
    ws.binaryType = 'nodebuffer';
    const onError = (err) => { ws.removeListener('open', onOpen); reject(err); };
    const onOpen = () => { ws.removeListener('error', onError); ws.on('error', () => {}); resolve(ws); };
    ws.once('open', onOpen);
    ws.once('error', onError);
  });
}

// An echo channel on one connection: send(), then await the reply.
function echoer(ws) {
  let waiter = null;
  let closed = null;
  ws.on('message', (data) => {
    const w = waiter; waiter = null;
    if (w) w.resolve(data);
  });
  ws.on('close', (code) => {
    closed = code;
    const w = waiter; waiter = null;
    if (w) w.reject(new Error('connection closed (' + code + ') while waiting for an echo'));
  });
  return function roundTrip(payload, binary) {
    if (closed !== null) return Promise.reject(new Error('connection closed (' + closed + ')'));
    return new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      ws.send(payload, { binary });
    });
  };
}

function closeAndWait(ws, code) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve(1006);
    ws.once('close', (c) => resolve(c));
    ws.close(code || 1000);
  });
}

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1));
  return sorted[i];
}

// Compressible text: JSON-ish records from a small vocabulary, seeded.
function compressibleText(size) {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel',
    'india', 'juliet', 'kilo', 'lima', 'mike', 'november', 'oscar', 'papa'];
  let seed = 12345;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const parts = [];
  let length = 0;
  while (length < size) {
    const line = '{"id": ' + rnd(100000) + ', "user": "' + words[rnd(16)] + '-' + rnd(1000) +
      '", "status": "' + words[rnd(16)] + '", "tags": ["' + words[rnd(16)] + '", "' +
      words[rnd(16)] + '"], "score": ' + rnd(1000) / 10 + '}\n';
    parts.push(line);
    length += line.length;
  }
  return parts.join('').slice(0, size);
}

// ---- scenarios -------------------------------------------------------

// Sequential echo on `nconns` connections at once, each with one message
// in flight (callbacks, no promise per message: the client stays lean);
// latencies recorded on the first connection.
async function echoLoad(nconns, payload, binary, connectOptions) {
  const sockets = [];
  for (let i = 0; i < nconns; i++) sockets.push(await open(connectOptions));
  const expected = Buffer.byteLength(payload);
  const trips = sockets.map(echoer);
  for (let i = 0; i < cfg.warmup; i++) {
    const reply = await trips[i % nconns](payload, binary);
    if (reply.length !== expected) throw new Error('echo of ' + expected + ' bytes came back as ' + reply.length);
  }
  for (const ws of sockets) ws.removeAllListeners('message');
  const extensions = sockets[0].extensions;
  await mark('begin');
  const maxLatencies = Math.min(cfg.count, 2000000);
  const latencies = new Float64Array(maxLatencies);
  let nlat = 0;
  let total = 0;
  const t0 = performance.now();
  const c0 = cpuSeconds();
  const deadline = t0 + cfg.duration * 1000;
  const sendOptions = { binary };
  await Promise.all(sockets.map((ws, index) => new Promise((resolve, reject) => {
    let sent = 0;
    const next = () => {
      const t = performance.now();
      if (index === 0 && sent && nlat < maxLatencies) latencies[nlat++] = (t - sent) * 1e3;
      if (total >= cfg.count || t >= deadline) return resolve();
      total++;
      sent = t;
      ws.send(payload, sendOptions);
    };
    ws.on('message', (data) => {
      if (data.length !== expected) return reject(new Error('echo of ' + expected + ' bytes came back as ' + data.length));
      next();
    });
    ws.once('close', (code) => reject(new Error('connection closed (' + code + ') during the load')));
    next();
  })));
  const elapsed = (performance.now() - t0) / 1e3;
  const clientCpu = cpuSeconds() - c0;
  await mark('end');
  await Promise.all(sockets.map((ws) => { ws.removeAllListeners('close'); return closeAndWait(ws); }));
  const lat = Array.from(latencies.subarray(0, nlat)).sort((a, b) => a - b);
  return {
    messages: total, elapsed, bytes: total * expected, client_cpu: clientCpu,
    p50_us: percentile(lat, 50), p99_us: percentile(lat, 99), extensions,
  };
}

async function handshakeLoad(workers) {
  let total = 0;
  let unclean = 0;
  const t0 = now();
  const c0 = cpuSeconds();
  const deadline = t0 + cfg.duration;
  await Promise.all(Array.from({ length: workers }, async () => {
    while (total < cfg.count && now() < deadline) {
      total++;
      const ws = await open();
      const code = await closeAndWait(ws, 1000);
      if (code !== 1000) unclean++;
    }
  }));
  return { connections: total, elapsed: now() - t0, client_cpu: cpuSeconds() - c0, unclean };
}

async function idle() {
  const held = [];
  const stages = [];
  let failure = null;
  let inFlight = 0;
  const t0 = now();
  const targets = cfg.idleTargets.slice().sort((a, b) => a - b);
  const goal = targets[targets.length - 1];
  await mark('begin');
  for (const target of targets) {
    // Open up to `target`, at most openConcurrency handshakes at a time;
    // stop at the first failure (refused, reset or timed out).
    await new Promise((resolve) => {
      let launched = held.length;
      const launch = () => {
        while (!failure && launched < target && inFlight < cfg.openConcurrency) {
          launched++;
          inFlight++;
          open().then((ws) => {
            inFlight--;
            if (failure) ws.terminate(); else held.push(ws);
            launch();
          }, (err) => {
            inFlight--;
            if (!failure) failure = String(err.message || err);
            launch();
          });
        }
        if (inFlight === 0 && (failure || held.length >= target)) resolve();
      };
      launch();
    });
    stages.push({ target, held: held.length, open_s: now() - t0 });
    await mark('stage ' + held.length);
    if (held.length < target) break;
  }
  const openSeconds = now() - t0;
  const order = await mark('held ' + held.length);
  // The ack says who closes: "client" (each connection sends a close
  // frame, all at once) or "server" (run.py SIGTERMs the server now).
  const byClient = order.trim() !== 'server';
  const t1 = now();
  let timedOut = 0;
  const closing = Promise.all(held.map((ws) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve(1006);
    ws.once('close', (c) => resolve(c));
    if (byClient) ws.close(1000);
  })));
  // Bounded: what has not closed after closeTimeout is cut (1006).
  const timer = setTimeout(() => {
    for (const ws of held) if (ws.readyState !== WebSocket.CLOSED) { timedOut++; ws.terminate(); }
  }, cfg.closeTimeout);
  const codes = await closing;
  clearTimeout(timer);
  const closeSeconds = now() - t1;
  const clean = codes.filter((c) => c !== 1006).length;
  if (byClient) await mark('closed');
  return {
    held: held.length, goal, stages, open_s: openSeconds, failure,
    close_by: byClient ? 'client' : 'server', close_s: closeSeconds, clean_closes: clean,
    cut_after_timeout: timedOut,
  };
}

// Loopback baseline without WebSocket: 32-byte ping-pong and 1 MiB echo
// over raw TCP (cfg.port runs servers/tcp_echo.js).
function tcpBaseline() {
  const net = require('net');
  return new Promise((resolve, reject) => {
    const socket = net.connect(cfg.port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.on('error', reject);
    socket.on('connect', () => {
      const result = {};
      const phase = (size, done) => {
        const payload = Buffer.alloc(size, 120);
        let got = 0, n = 0;
        const t0 = now(), c0 = cpuSeconds();
        socket.removeAllListeners('data');
        socket.on('data', (d) => {
          got += d.length;
          if (got < size) return;
          got -= size;
          n++;
          const t = now() - t0;
          if (t >= cfg.duration || n >= cfg.count) {
            socket.removeAllListeners('data');
            return done({ round_trips: n, elapsed: t, client_cpu: cpuSeconds() - c0 });
          }
          socket.write(payload);
        });
        socket.write(payload);
      };
      phase(32, (small) => {
        result.pingpong = small;
        phase(1024 * 1024, (big) => { result.mib = big; socket.end(); resolve(result); });
      });
    });
  });
}

// Warm every worker of a pre-forking server (Apache prefork: one child per
// connection, and a child's first requests are its slowest): open `touch`
// connections at once, then close them; `touchRounds` times.
async function touchWorkers() {
  if (!cfg.touch) return;
  for (let round = 0; round < (cfg.touchRounds || 1); round++) {
    const sockets = await Promise.all(Array.from({ length: cfg.touch }, () => open()));
    await Promise.all(sockets.map((ws) => closeAndWait(ws)));
  }
}

async function main() {
  const s = cfg.scenario;
  let result;
  if (s === 'tcp') return finish(await tcpBaseline());
  await touchWorkers();
  if (s === 'rtt' || s === 'concurrent') {
    const payload = 'x'.repeat(cfg.size);
    result = await echoLoad(s === 'rtt' ? 1 : cfg.conns, payload, false);
  } else if (s === 'throughput') {
    result = await echoLoad(1, crypto.randomBytes(cfg.size), true);
  } else if (s === 'deflate') {
    result = await echoLoad(1, compressibleText(cfg.size), false,
      { perMessageDeflate: { threshold: 0, serverNoContextTakeover: false, clientNoContextTakeover: false } });
    result.negotiated = /permessage-deflate/.test(result.extensions || '');
  } else if (s === 'handshakes') {
    // warm-up, then the sequential and parallel phases
    for (let i = 0; i < Math.min(cfg.warmup, 20); i++) await closeAndWait(await open());
    await mark('begin');
    const sequential = await handshakeLoad(1);
    await mark('middle');
    const parallel = await handshakeLoad(cfg.parallel);
    await mark('end');
    result = { sequential, parallel };
  } else if (s === 'idle') {
    result = await idle();
  } else {
    throw new Error('unknown scenario ' + s);
  }
  finish(result);
}

main().catch(fail);
