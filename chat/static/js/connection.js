// One room's WebSocket: opens it with the session's pass, reconnects with backoff after a drop,
// asks over REST whether the room still exists before each try, and fetches a fresh pass when
// the server no longer accepts the old one. It remembers the room's epoch and the newest message
// offset it passed on, resumes from there (since/epoch) and passes no offset on twice. It renders
// nothing: what happens is reported to the `on` handlers (hello, frame, dropped, status,
// statusText, end) of whoever owns it.

import { api, detailsPath, roomPath } from "./api.js";
import { CONNECTED, GONE } from "./protocol.js";
import { store } from "./storage.js";

const BACKOFF_BASE_SECONDS = 1;
const MAX_BACKOFF_SECONDS = 30;

export class Connection {
  constructor(roomId, session, on) {
    this.roomId = roomId;
    this.session = session;  // Shared with the room: a fresh pass from rejoin() is its pass too.
    this.on = on;
    this.ws = null;
    this.attempt = 0;
    this.rejoined = false;
    this.everConnected = false;
    this.stopped = false;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.timers = new Set();
    this.epoch = null;  // Known once in the room: from then on every connection is a resume.
    this.offset = 0;  // The newest message offset passed on.
  }

  get open() {
    return this.ws !== null;
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  // The session's ws_url, asking for everything after the newest offset once in the room.
  url() {
    if (this.epoch === null) return this.session.ws_url;
    const url = new URL(this.session.ws_url, location.href);
    url.searchParams.set("since", String(this.offset));
    url.searchParams.set("epoch", this.epoch);
    return url.href;
  }

  connect() {
    if (this.stopped) return;
    this.on.status(this.everConnected ? "warn" : "info", this.everConnected ? "Reconnecting…" : "Connecting…");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    // A socket replaced by a newer one may still report; only the current one counts.
    ws.onmessage = (event) => { if (ws === this.ws) this.onMessage(event.data); };
    ws.onclose = (event) => { if (ws === this.ws) this.onClose(event); };
  }

  // True when the frame went out; false while there is no open socket.
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // For good: no reconnect after this.
  stop(reason) {
    this.stopped = true;
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    if (this.ws) this.ws.close(1000, reason);
  }

  onMessage(data) {
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (frame.type === "system" && frame.message === CONNECTED && frame.connection_id) return this.onHello(frame);
    if (frame.type === "system" && typeof frame.epoch === "string" && frame.recovered === false) {
      // The server lost part of the room's stream while this page stayed connected (its
      // backend restarted empty): messages go on after the offset it gives, in its epoch.
      this.epoch = frame.epoch;
      this.offset = Number.isInteger(frame.offset) ? frame.offset : 0;
    }
    if (frame.type === "message" && Number.isInteger(frame.offset)) {
      // Already passed on (a resume overlapping what arrived): never a duplicate on screen.
      if (frame.offset <= this.offset) return;
      this.offset = frame.offset;
    }
    this.on.frame(frame);
  }

  // recovered (to on.hello): null on entering, else whether the resume lost nothing.
  onHello(frame) {
    const resumed = this.epoch !== null;
    const recovered = frame.recovered === true;
    // Nothing is replayed after a failed resume: live messages go on past the hello's offset.
    if (resumed && !recovered) this.offset = Number.isInteger(frame.offset) ? frame.offset : 0;
    this.epoch = typeof frame.epoch === "string" ? frame.epoch : "";
    this.everConnected = true;
    this.attempt = 0;  // A good connection: the next drop starts the backoff over.
    this.rejoined = false;
    this.on.hello(frame, resumed ? recovered : null);
  }

  onClose(event) {
    this.ws = null;
    this.on.dropped();
    if (this.stopped) return;
    const reason = event.reason || "";
    if (event.code === 1008) {
      if (/full/i.test(reason)) {
        this.on.status("error", "The room is full. Try again when someone leaves.", "Try again", () => this.connect());
        return;
      }
      if (/not found/i.test(reason)) return this.on.end(GONE);
      // Removed by the owner (now, or refused on the way back in): never reconnect.
      if (/removed/i.test(reason)) return this.on.end("You were removed from the room by its owner.", false);
      if (/taken/i.test(reason)) return this.on.end(reason, false);
      if (/token/i.test(reason)) return this.rejoin();
    }
    if (event.code === 1000 && /closed|expired/i.test(reason)) return this.on.end("This room has ended.");
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    // Full jitter under a doubling cap, so a room full of clients does not come back in one
    // burst after a restart.
    const ceiling = Math.min(MAX_BACKOFF_SECONDS, BACKOFF_BASE_SECONDS * 2 ** this.attempt);
    const at = Date.now() + Math.random() * ceiling * 1000;
    this.attempt += 1;
    const text = () => `Connection lost. Reconnecting in ${Math.max(1, Math.ceil((at - Date.now()) / 1000))} s…`;
    this.on.status("warn", text(), "Retry now", () => this.retry());
    const countdown = () => {
      if (this.ws || this.stopped || Date.now() >= at) return;
      this.on.statusText(text());
      this.countdownTimer = this.later(countdown, 1000);
    };
    this.countdownTimer = this.later(countdown, 1000);
    this.retryTimer = this.later(() => this.retry(), at - Date.now());
  }

  async retry() {
    for (const id of [this.retryTimer, this.countdownTimer]) {
      clearTimeout(id);
      this.timers.delete(id);
    }
    if (this.ws || this.stopped) return;
    this.on.status("warn", "Reconnecting…");
    // Ask over REST first: a room that is gone should say so instead of retrying forever.
    try {
      await api("GET", detailsPath(this.roomId, this.session.password));
    } catch (error) {
      if (error.status === 404) return this.on.end(GONE);
      if (error.status === 0 || error.status >= 500) return this.scheduleReconnect();
    }
    this.connect();
  }

  // The server refused the pass (expired, or signed with another key): a member joins again
  // once; an owner's pass cannot be replaced.
  async rejoin() {
    if (this.rejoined || this.session.role === "owner") {
      return this.on.end("Your pass for this room is no longer valid. Join it again from the invite link.", false);
    }
    this.rejoined = true;
    this.on.status("warn", "Rejoining…");
    try {
      const joined = await api("POST", roomPath(this.roomId, "/join"), {
        display_name: this.session.name, password: this.session.password,
      });
      this.session.ws_url = joined.ws_url;
      this.session.expires_at = joined.expires_at;
      store.save(this.roomId, this.session);
      this.connect();
    } catch (error) {
      if (error.status === 404) return this.on.end(GONE);
      if (error.status === 409) {
        this.on.status("error", "The room is full. Try again when someone leaves.", "Try again", () => this.rejoin());
        this.rejoined = false;
        return;
      }
      if (error.status === 401) return this.on.end("The room password has changed. Join again from the invite link.", false);
      this.rejoined = false;
      this.scheduleReconnect();
    }
  }
}
