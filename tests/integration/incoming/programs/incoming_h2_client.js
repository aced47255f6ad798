// incoming_h2_client.js: an HTTP/2 cleartext (prior knowledge) client of the incoming end-to-end
// tests, run in the harness's peer netns. It sends every request on ONE HTTP/2 session (curl
// 7.88.1 fails re-using a prior-knowledge connection with "Error in the HTTP2 framing layer", so
// curl cannot show "same connection" here).
//
//   node incoming_h2_client.js http://HOST:PORT PATH[=X-MIRRORD-USER] ...
//
// Requests run one after the other; PATH=VALUE adds the header x-mirrord-user: VALUE. Prints ONE
// JSON object: {"results": [{"path", "status", "served_by", "body"} | {"path", "error"}], "sessions": 1}.
'use strict';
const http2 = require('http2');

const [origin, ...specs] = process.argv.slice(2);
let sessions = 0;
const session = http2.connect(origin);
sessions += 1;
session.on('error', () => {});

function one(spec) {
  return new Promise((resolve) => {
    const eq = spec.indexOf('=');
    const path = eq < 0 ? spec : spec.slice(0, eq);
    const headers = { ':path': path, ':method': 'GET' };
    if (eq >= 0) headers['x-mirrord-user'] = spec.slice(eq + 1);
    const req = session.request(headers);
    let status = 0;
    let servedBy = '';
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => { status = h[':status']; servedBy = h['x-served-by'] || ''; });
    req.on('data', (d) => { body += d; });
    req.on('end', () => resolve({ path, status, served_by: servedBy, body }));
    req.on('error', (e) => resolve({ path, error: `${e.code || ''} ${e.message}` }));
    req.setTimeout(10000, () => { req.close(); resolve({ path, error: 'timeout' }); });
    req.end();
  });
}

(async () => {
  const results = [];
  for (const s of specs) results.push(await one(s));
  console.log(JSON.stringify({ results, sessions }));
  session.close();
})();
