// node_cluster.js - the Node.js peer server of `tlsresume bench`.
//
// A cluster-module HTTPS server, as Node users run one: the primary forks N
// workers, each creates its own https.Server with the same certificate and
// listens on the same address. Who accepts is NODE_CLUSTER_SCHED_POLICY: `rr`
// (Node's default on Linux), the primary accepts and hands connections to the
// workers in turn; `none`, every worker accepts on the shared socket itself and
// the kernel picks. Node's cluster shares the first worker's ticket keys with the
// others (either policy), so tickets resume on any worker. Every
// request is answered with `worker <pid>` and the connection closes (with
// close_notify), as `tlsresume serve` does.
//
//   node node_cluster.js --cert C --key K [--workers N] [--host H] [--port P]
//
// When every worker listens, the primary prints one line (sched: the policy in force):
//   node-cluster: listening on https://HOST:PORT/ workers=N sched=rr|none node=V openssl=V pids=P1,P2
// SIGTERM or SIGINT stops the workers, then the primary. A worker that dies makes
// the primary stop everything and exit 1: a benchmark must not go on with fewer.
'use strict';

const cluster = require('node:cluster');
const fs = require('node:fs');
const https = require('node:https');

function parseArgs(argv) {
  const opts = { cert: null, key: null, workers: 2, host: '127.0.0.1', port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    if (!['--cert', '--key', '--workers', '--host', '--port'].includes(name) ||
        value === undefined) {
      throw new Error(`unknown option or missing value: ${name}`);
    }
    i++;
    if (name === '--workers' || name === '--port') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0 || (name === '--workers' && n < 1)) {
        throw new Error(`${name} needs a whole number, not ${value}`);
      }
      opts[name.slice(2)] = n;
    } else {
      opts[name.slice(2)] = value;
    }
  }
  if (!opts.cert || !opts.key) {
    throw new Error('--cert and --key are required');
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`node-cluster: error: ${message}\n`);
  process.exit(2);
}

function runPrimary(opts) {
  const pids = [];
  let listening = 0;
  let port = null;
  let stopping = false;

  function stopAll(code) {
    if (stopping) return;
    stopping = true;
    for (const worker of Object.values(cluster.workers)) {
      worker.process.kill('SIGTERM');
    }
    const done = () => process.exit(code);
    if (Object.keys(cluster.workers).length === 0) done();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers).length === 0) done();
    });
    setTimeout(() => {
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
      done();
    }, 3000).unref();
  }

  process.on('SIGTERM', () => stopAll(0));
  process.on('SIGINT', () => stopAll(0));
  cluster.on('listening', (worker, address) => {
    listening++;
    port = address.port;
    if (listening === opts.workers) {
      const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
      const sched = cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none';
      process.stdout.write(
        `node-cluster: listening on https://${host}:${port}/ workers=${opts.workers} ` +
        `sched=${sched} ` +
        `node=${process.version} openssl=${process.versions.openssl} pids=${pids.join(',')}\n`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    process.stderr.write(
      `node-cluster: worker ${worker.process.pid} exited (${signal || code}); stopping\n`);
    stopAll(1);
  });
  for (let i = 0; i < opts.workers; i++) {
    pids.push(cluster.fork().process.pid);
  }
}

function runWorker(opts) {
  let options;
  try {
    options = { cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) };
  } catch (err) {
    fail(`cannot read the certificate or key: ${err.message}`);
  }
  const body = Buffer.from(`worker ${process.pid}\n`);
  const server = https.createServer(options, (req, res) => {
    res.writeHead(200, {
      'Content-Type': 'text/plain',
      'Content-Length': body.length,
      'Connection': 'close',
      'X-Worker': String(process.pid),
    });
    res.end(body);
  });
  // A client that fails its handshake must not take the worker down.
  server.on('tlsClientError', () => {});
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => {}); // the primary decides when workers stop
  server.listen(opts.port, opts.host);
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  fail(err.message);
}
if (cluster.isPrimary ?? cluster.isMaster) {
  runPrimary(opts);
} else {
  runWorker(opts);
}
