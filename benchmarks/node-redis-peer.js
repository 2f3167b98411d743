// A chat peer in Node with its rooms in Redis (http + ws + ioredis): the original design's
// Redis work done the way a Node server would do it, measured beside our RedisBus on the same
// machine (loadgen-compare's target "node-redis-peer"). Creation writes the room's record with
// its expiry; a join reads it (and checks the password); a socket reads the record and the
// member count, takes a seat (the member's set entry and record, with the room's expiry),
// subscribes the room on this instance's one subscriber connection when it is its first member
// here, gets its hello and announces itself through Redis, as the original design does; a
// message is published to the room's channel and relayed to every member from there. Each
// step's commands go out in one pipeline. No validation, limits, history or tokens that mean
// anything: what opening a member with Redis costs in Node's stack at the least.
// Usage: NODE_PATH=<dir with ws and ioredis> node benchmarks/node-redis-peer.js PORT REDIS_PORT
const http = require('http');
const crypto = require('crypto');
const WebSocket = require('ws');
const Redis = require('ioredis');

const port = +process.argv[2];
const redis = new Redis({ port: +process.argv[3], host: '127.0.0.1' });
const subscriber = new Redis({ port: +process.argv[3], host: '127.0.0.1' });
const local = new Map(); // room id -> Map(connection id -> socket), this instance's members
const meta = (roomId) => `peer:room:${roomId}`;
const users = (roomId) => `peer:users:${roomId}`;
const channel = (roomId) => `peer:channel:${roomId}`;
const wsUrl = (host, roomId) => `ws://${host}/rooms/${roomId}/ws`;
const now = () => new Date().toISOString();

subscriber.on('message', (name, frame) => {
  const members = local.get(name.slice('peer:channel:'.length));
  if (members) for (const member of members.values()) member.send(frame);
});

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', async () => {
    const fields = body ? JSON.parse(body) : {};
    const joining = /^\/rooms\/(\w+)\/join$/.exec(req.url);
    res.setHeader('content-type', 'application/json');
    if (req.method === 'POST' && (req.url === '/rooms/' || req.url === '/rooms')) {
      const roomId = crypto.randomBytes(8).toString('hex');
      const expiry = fields.expiry_seconds || 600;
      const expiresAt = new Date(Date.now() + expiry * 1000).toISOString();
      await redis.pipeline()
        .hset(meta(roomId), 'name', fields.name || '', 'owner_name', fields.owner_name, 'password', fields.password || '',
          'max_users', fields.max_users || 20, 'expires_at', expiresAt)
        .expire(meta(roomId), expiry)
        .exec();
      res.writeHead(200);
      res.end(JSON.stringify({ room_id: roomId, ws_url: wsUrl(req.headers.host, roomId), expires_at: expiresAt }));
      return;
    }
    const room = joining && req.method === 'POST' ? await redis.hgetall(meta(joining[1])) : {};
    if (!room.owner_name) { res.writeHead(404); res.end('{"detail": "Room not found"}'); return; }
    if (room.password && room.password !== fields.password) { res.writeHead(401); res.end('{}'); return; }
    res.writeHead(200);
    res.end(JSON.stringify({ ws_url: wsUrl(req.headers.host, joining[1]), expires_at: room.expires_at }));
  });
});

const sockets = new WebSocket.Server({ noServer: true, perMessageDeflate: false });
server.on('upgrade', async (req, socket, head) => {
  const url = new URL(req.url, 'http://peer');
  const path = /^\/rooms\/(\w+)\/ws$/.exec(url.pathname);
  if (!path) { socket.destroy(); return; }
  const roomId = path[1];
  const [[, room], [, count]] = await redis.pipeline().hgetall(meta(roomId)).scard(users(roomId)).exec();
  if (!room.owner_name || count >= +room.max_users) { socket.destroy(); return; }
  sockets.handleUpgrade(req, socket, head, async (ws) => {
    const connectionId = crypto.randomUUID();
    const name = url.searchParams.get('display_name');
    const ttl = Math.max(1, Math.round((Date.parse(room.expires_at) - Date.now()) / 1000));
    const [, , , , [, online]] = await redis.pipeline()
      .sadd(users(roomId), connectionId).expire(users(roomId), ttl)
      .hset(`peer:conn:${connectionId}`, 'display_name', name, 'connected_at', now(), 'room_id', roomId)
      .expire(`peer:conn:${connectionId}`, ttl)
      .scard(users(roomId))
      .exec();
    let members = local.get(roomId);
    if (!members) {
      members = new Map();
      local.set(roomId, members);
      await subscriber.subscribe(channel(roomId));
    }
    members.set(connectionId, ws);
    ws.send(JSON.stringify({ type: 'system', message: 'Connected to room', room_id: roomId, connection_id: connectionId,
      display_name: name, timestamp: now() }));
    redis.publish(channel(roomId), JSON.stringify({ type: 'presence', event: 'user_online', connection_id: connectionId,
      display_name: name, room_id: roomId, timestamp: now(), online_count: online }));
    ws.on('message', (data) => {
      let text;
      try { text = JSON.parse(data).text; } catch { return; }
      redis.publish(channel(roomId), JSON.stringify({ type: 'message', text, connection_id: connectionId,
        display_name: name, room_id: roomId, timestamp: now() }));
    });
    ws.on('close', () => {
      members.delete(connectionId);
      redis.pipeline().srem(users(roomId), connectionId).del(`peer:conn:${connectionId}`).exec();
    });
  });
});

server.listen(port, '127.0.0.1');
