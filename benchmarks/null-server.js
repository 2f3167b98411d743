// A server that spends nothing on a room: every request is answered at once with the same
// room-creation answer, as large and with the same headers as ours. What the generator's own
// cost allows on this machine: the ceiling of `loadgen create` for any server.
// Usage: node benchmarks/null-server.js PORT
'use strict';
const net = require('net');
const port = Number(process.argv[2]);
const token = 'eyJyIjoiOGI5YzI4N2JjYjMxMjI3NyIsIm4iOiJib2IiLCJvIjoib3duZXIiLCJlIjoxNzk2MzQwNjkzLjk0M30.' +
  'XyF1Vm7denIpzxxdzpv0IPYWH6GAoGxgIEXKZeJUikU';
const body = JSON.stringify({
  room_id: '8b9c287bcb312277',
  ws_url: `ws://127.0.0.1:${port}/rooms/8b9c287bcb312277/ws?token=${token}`,
  expires_at: '2026-12-03T23:31:33.942Z',
  owner_token: token,
});
const answer = Buffer.from(
  'HTTP/1.1 200 \r\ncontent-type: application/json\r\n' +
  `content-length: ${Buffer.byteLength(body)}\r\n` +
  'x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n' +
  'date: Thu, 03 Dec 2026 23:21:33 GMT\r\nserver: hypercorn-h11\r\n\r\n' + body);

net.createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on('error', () => {});
  socket.on('data', (data) => {
    pending = Buffer.concat([pending, data]);
    for (;;) {  // each whole request (head, then its content-length of body) gets the answer
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = /content-length: *(\d+)/i.exec(pending.subarray(0, end).toString('latin1'));
      const size = end + 4 + (length ? Number(length[1]) : 0);
      if (pending.length < size) return;
      pending = pending.subarray(size);
      socket.write(answer);
    }
  });
}).listen(port, '127.0.0.1');
