// One room's WebSocket: opens it with the session's pass, reconnects with backoff after a drop,
// asks over REST whether the room still exists before each try, and fetches a fresh pass when
// the server no longer accepts the old one. It renders nothing: what happens is reported to
// the `on` handlers (hello, frame, dropped, status, statusText, end) of whoever owns it.

import { api, detailsPath, roomPath } from "./api.js";
import { CONNECTED, GONE } from "./protocol.js";
import { store } from "./storage.js";

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
    this.timers = new Set();
  }

  get open() {
    return this.ws !== null;
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  connect() {
    if (this.stopped) return;
    this.on.status(this.everConnected ? "warn" : "info", this.everConnected ? "Reconnecting…" : "Connecting…");
    let ws;
    try {
      ws = new WebSocket(this.session.ws_url);
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
    this.on.frame(frame);
  }

  onHello(frame) {
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.attempt = 0;
    this.rejoined = false;
    this.on.hello(frame, reconnected);
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
      if (/token/i.test(reason)) return this.rejoin();
    }
    if (event.code === 1000 && /closed|expired/i.test(reason)) return this.on.end("This room has ended.");
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const base = Math.min(MAX_BACKOFF_SECONDS, 2 ** this.attempt);
    // Jitter, so a room full of clients does not return in one burst after a restart.
    const seconds = Math.max(1, Math.round(base * (0.75 + Math.random() * 0.5)));
    this.attempt += 1;
    let left = seconds;
    const text = () => `Connection lost. Reconnecting in ${left} s…`;
    this.on.status("warn", text(), "Retry now", () => this.retry());
    const countdown = () => {
      left -= 1;
      if (this.ws || this.stopped) return;
      if (left <= 0) return this.retry();
      this.on.statusText(text());
      this.retryTimer = this.later(countdown, 1000);
    };
    this.retryTimer = this.later(countdown, 1000);
  }

  async retry() {
    clearTimeout(this.retryTimer);
    this.timers.delete(this.retryTimer);
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
