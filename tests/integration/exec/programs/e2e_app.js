// e2e_app.js: the Node.js "local app" of the exec end-to-end tests (tests/integration/exec/).
// Run as `node e2e_app.js` under `mirrord exec` in the harness's laptop netns. It reads pod files
// (sync: open64/read/syscall(close), statx via syscall(), scandir; async: the libuv threadpool),
// resolves the service name (getaddrinfo in the threadpool), GETs the service over HTTP, runs
// children (child_process) and many requests at once, then prints ONE JSON object; each check is
// a key holding the result or {exception, code}.
'use strict';
const fs = require('fs');
const dns = require('dns');
const http = require('http');
const cp = require('child_process');

function attempt(fn) {
  try {
    return fn();
  } catch (e) {
    return { exception: String(e), code: e.code || null };
  }
}

async function attemptAsync(fn) {
  try {
    return await fn();
  } catch (e) {
    return { exception: String(e), code: e.code || null };
  }
}

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms)),
  ]);
}

function lookupAll(name) {
  return new Promise((resolve, reject) => {
    dns.lookup(name, { all: true }, (err, addrs) => {
      if (err) reject(err);
      else resolve(addrs.map((a) => a.address).sort());
    });
  });
}

function httpGet(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body, remote: res.socket.remoteAddress || null }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function main() {
  const out = {};
  out.hello = attempt(() => fs.readFileSync('/app/hello.txt', 'utf8'));
  out.readdir = attempt(() => fs.readdirSync('/app/dir').sort());
  out.stat_big = attempt(() => {
    const st = fs.statSync('/app/big.bin');
    return { size: st.size, isFile: st.isFile() };
  });
  out.stat_dir = attempt(() => fs.statSync('/app/dir').isDirectory());
  out.exists_hello = attempt(() => fs.existsSync('/app/hello.txt'));
  out.big_len = attempt(() => fs.readFileSync('/app/big.bin').length);
  out.promises_hello = await attemptAsync(() =>
    withTimeout(fs.promises.readFile('/app/hello.txt', 'utf8'), 5000, 'fs.promises.readFile'));
  out.lookup = await attemptAsync(() => withTimeout(lookupAll('echo'), 5000, 'dns.lookup'));
  out.http = await attemptAsync(() => withTimeout(httpGet('http://echo/hello.txt'), 5000, 'http.get'));
  // Children (libuv spawn: fork + exec) keep the pod context.
  out.child = attempt(() => cp.execFileSync('/bin/cat', ['/app/hello.txt'], { encoding: 'utf8', timeout: 10000 }));
  out.child_shell = attempt(() => cp.execSync('curl -sS --max-time 5 http://echo/hello.txt',
    { encoding: 'utf8', timeout: 10000 }));
  // Many requests at once: the threadpool (fs, getaddrinfo) and the event loop (sockets).
  out.concurrent = await attemptAsync(async () => {
    const jobs = [];
    for (let i = 0; i < 30; i++) {
      jobs.push(fs.promises.readFile('/app/hello.txt', 'utf8'), lookupAll('echo'),
        httpGet('http://echo/hello.txt').then((r) => r.body));
    }
    const rs = await withTimeout(Promise.allSettled(jobs), 15000, 'concurrent jobs');
    return {
      rejected: rs.filter((r) => r.status === 'rejected').map((r) => String(r.reason)).slice(0, 5),
      fulfilled: rs.filter((r) => r.status === 'fulfilled').length,
      values: [...new Set(rs.filter((r) => r.status === 'fulfilled').map((r) => JSON.stringify(r.value)))].sort(),
    };
  });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(() => process.exit(0), (e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e) }) + '\n');
  process.exit(1);
});
