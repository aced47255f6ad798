// incoming_h2.js: the HTTP/2 cleartext (h2c, prior knowledge) server of the incoming end-to-end
// tests (tests/integration/incoming/incoming_filter_test.cpp). The same text is the LOCAL app
// (`node -e TEXT local PORT` under `mirrord exec`) and the POD's server (`node -e TEXT pod PORT`
// in the pod, which cannot see this tree); `node incoming_h2.js TAG PORT` works too: the last two
// arguments are TAG and PORT.
// Every stream is answered 200 with x-served-by: TAG and the body "TAG:PATH:X-MIRRORD-USER" (the
// header's value, empty when absent). "READY TAG PORT" is printed once listen() returned.
'use strict';
const http2 = require('http2');

const args = process.argv.slice(-2);
const tag = args[0];
const port = Number(args[1]);

const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const body = `${tag}:${headers[':path']}:${headers['x-mirrord-user'] || ''}`;
  stream.on('error', () => {});
  // Drain a request body, if any, before answering.
  stream.on('data', () => {});
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-served-by': tag });
    stream.end(body);
  });
});
server.on('error', (e) => {
  console.log(`LISTEN_FAILED ${tag} ${port} ${e.code || ''} ${e.message}`);
  process.exit(3);
});
server.listen(port, '0.0.0.0', () => console.log(`READY ${tag} ${port}`));
