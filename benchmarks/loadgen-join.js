// REST join throughput, for benchmarks/create-ab: one room, `conc` clients join it back to back for `secs`
// (no sockets opened), in the style of ../shared/bench/loadgen.js (Node 20: its own fetch, no modules).
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf('--' + k); return i >= 0 ? args[i + 1] : d; };
const base = opt('url', 'http://127.0.0.1:8000'), conc = +opt('conc', 16), secs = +opt('secs', 5);
const { performance } = require('perf_hooks');
async function post(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status >= 300) throw new Error(`${path} -> ${r.status} ${await r.text()}`);
  return r.json();
}
(async () => {
  const room = await post('/rooms/', { name: 'j', owner_name: 'owner', max_users: 100, expiry_seconds: 600 });
  let n = 0, errors = 0; const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async (_, w) => {
    while (performance.now() - t0 < secs * 1000) {
      try { await post(`/rooms/${room.room_id}/join`, { display_name: 'm' + w }); n++; } catch (e) { errors++; }
    }
  }));
  const el = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ scenario: 'join', conc, secs, joins: n, errors, joins_per_s: Math.round(n / el) }));
})().then(() => process.exit(0)).catch(e => { console.error(e); process.exit(1); });
