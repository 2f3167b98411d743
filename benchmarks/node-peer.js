// A minimal chat peer in Node (http + ws, rooms in memory), speaking the public API that
// ../shared/bench/loadgen drives: create, join, and a room socket that gets a hello,
// announces each arrival to everyone in the room and relays each message to everyone. No
// validation, limits, history, Redis or tokens that mean anything: what opening a member (and
// a message's fan-out) costs in Node's own stack at the least,
// measured beside our server on the same machine (loadgen-compare's target "node-peer").
// Usage: NODE_PATH=<dir with ws> node benchmarks/node-peer.js PORT
const http = require('http');
const crypto = require('crypto');
const WebSocket = require('ws');

const rooms = new Map();
const port = +process.argv[2];
const wsUrl = (host, roomId, name) => `ws://${host}/rooms/${roomId}/ws?token=${crypto.createHmac('sha256', 'k').update(roomId + name).digest('hex')}`;

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const fields = body ? JSON.parse(body) : {};
    const joining = /^\/rooms\/(\w+)\/join$/.exec(req.url);
    res.setHeader('content-type', 'application/json');
    if (req.method === 'POST' && (req.url === '/rooms/' || req.url === '/rooms')) {
      const roomId = crypto.randomBytes(8).toString('hex');
      rooms.set(roomId, new Map());
      res.writeHead(201);
      res.end(JSON.stringify({ room_id: roomId, name: fields.name, ws_url: wsUrl(req.headers.host, roomId, fields.owner_name) }));
    } else if (req.method === 'POST' && joining && rooms.has(joining[1])) {
      res.writeHead(200);
      res.end(JSON.stringify({ room_id: joining[1], ws_url: wsUrl(req.headers.host, joining[1], fields.display_name) }));
    } else {
      res.writeHead(404);
      res.end('{}');
    }
  });
});

const sockets = new WebSocket.Server({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://peer');
  const path = /^\/rooms\/(\w+)\/ws$/.exec(url.pathname);
  const members = path && rooms.get(path[1]);
  if (!members) { socket.destroy(); return; }
  sockets.handleUpgrade(req, socket, head, (ws) => {
    const roomId = path[1];
    const connectionId = crypto.randomUUID();
    const name = url.searchParams.get('display_name');
    const now = () => new Date().toISOString();
    ws.send(JSON.stringify({ type: 'system', message: 'Connected to room', room_id: roomId, connection_id: connectionId,
      display_name: name, epoch: 'e', offset: 0, timestamp: now() }));
    members.set(connectionId, ws);
    const online = JSON.stringify({ type: 'presence', event: 'user_online', connection_id: connectionId, display_name: name,
      room_id: roomId, timestamp: now(), online_count: members.size, is_owner: false });
    for (const member of members.values()) member.send(online);
    // A member's message goes to everyone as one frame, built once, in the shape of ours.
    ws.on('message', (data) => {
      let text;
      try { text = JSON.parse(data).text; } catch { return; }
      const frame = JSON.stringify({ type: 'message', text, connection_id: connectionId, display_name: name,
        room_id: roomId, timestamp: now() });
      for (const member of members.values()) member.send(frame);
    });
    ws.on('close', () => { members.delete(connectionId); });
  });
});

server.listen(port, '127.0.0.1');
