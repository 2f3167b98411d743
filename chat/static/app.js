// EphemeralChat browser client: plain JS, no build step, no network beyond this server.
// Every piece of user data reaches the page through textContent or a form value, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // The server's own words (chat/protocol.py); a system frame carrying one of these ends the room.
  const CONNECTED = "Connected to room";
  const SHUTTING_DOWN = "Server is shutting down; reconnect to continue";
  const ENDINGS = {
    "Room has been closed by owner": "The owner closed this room.",
    "Room owner went offline shutting down room": "The owner went offline, so the room was shut down.",
    "Room has expired": "This room has expired.",
  };
  const GONE = "This room no longer exists: it expired or was closed.";
  const MAX_BACKOFF_SECONDS = 30;
  const FOLLOW_WINDOW_MS = 3 * 60 * 1000;

  // ---------- small helpers ----------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(view) {
    for (const name of ["home", "join", "chat"]) $(`${name}-view`).hidden = name !== view;
  }

  function hue(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function nameColor(name) {
    return `hsl(${hue(name)} 55% 45%)`;
  }

  function initials(name) {
    const parts = name.trim().split(/\s+/).filter(Boolean);
    const letters = parts.length > 1 ? [parts[0], parts[parts.length - 1]] : [parts[0] || "?"];
    return letters.map((p) => Array.from(p)[0] || "").join("").toUpperCase();
  }

  function clockTime(iso) {
    const date = iso ? new Date(iso) : new Date();
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function duration(ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  }

  function showError(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  function shareLink(roomId) {
    return `${location.origin}/#room=${encodeURIComponent(roomId)}`;
  }

  // Per-tab memory of the rooms this tab is in, so a reload reconnects (as owner, for the owner).
  const store = {
    key: (roomId) => `ephemeralchat:room:${roomId}`,
    load(roomId) {
      try { return JSON.parse(sessionStorage.getItem(this.key(roomId))); } catch { return null; }
    },
    save(roomId, session) {
      try { sessionStorage.setItem(this.key(roomId), JSON.stringify(session)); } catch { /* private mode */ }
    },
    drop(roomId) {
      try { sessionStorage.removeItem(this.key(roomId)); } catch { /* private mode */ }
    },
  };

  const lastName = {
    get() { try { return localStorage.getItem("ephemeralchat:name") || ""; } catch { return ""; } },
    set(name) { try { localStorage.setItem("ephemeralchat:name", name); } catch { /* private mode */ } },
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(method, path, body, headers = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: body === undefined ? headers : { "Content-Type": "application/json", ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "Cannot reach the server. Check your connection and try again.");
    }
    let data = null;
    try { data = await response.json(); } catch { /* not JSON */ }
    if (!response.ok) throw new ApiError(response.status, (data && data.detail) || response.statusText);
    return data;
  }

  function roomPath(roomId, suffix = "") {
    return `/rooms/${encodeURIComponent(roomId)}${suffix}`;
  }

  function detailsPath(roomId, password) {
    return roomPath(roomId) + (password ? `?password=${encodeURIComponent(password)}` : "");
  }

  // A two-click button: the first click arms it, the second (within a few seconds) acts.
  function confirmButton(button, armedLabel, action, needsConfirm = () => true) {
    const label = button.textContent;
    let timer = null;
    const disarm = () => {
      clearTimeout(timer);
      button.classList.remove("armed");
      button.textContent = label;
    };
    button.addEventListener("click", () => {
      if (!button.classList.contains("armed") && needsConfirm()) {
        button.classList.add("armed");
        button.textContent = armedLabel;
        timer = setTimeout(disarm, 4000);
        return;
      }
      disarm();
      action();
    });
    return disarm;
  }

  // ---------- create ----------

  function showHome() {
    document.title = "EphemeralChat";
    show("home");
    const name = $("create-owner-name");
    if (!name.value) name.value = lastName.get();
    showError($("create-error"), "");
    $("create-submit").disabled = false;
    (name.value ? $("create-room-name") : name).focus();
  }

  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const ownerName = $("create-owner-name").value.trim();
    const roomName = $("create-room-name").value.trim();
    const password = $("create-password").value;
    const maxUsers = Number.parseInt($("create-max-users").value, 10);
    if (!ownerName) {
      showError($("create-error"), "Please enter your name.");
      $("create-owner-name").focus();
      return;
    }
    if (!Number.isInteger(maxUsers) || maxUsers < 1 || maxUsers > 1000) {
      showError($("create-error"), "Max people must be a whole number between 1 and 1000.");
      $("create-max-users").focus();
      return;
    }
    const body = {
      owner_name: ownerName,
      expiry_seconds: Number.parseInt($("create-expiry").value, 10),
      max_users: maxUsers,
      preferences: { destroy_on_owner_offline: $("create-destroy").checked },
    };
    if (roomName) body.name = roomName;
    if (password) body.password = password;
    $("create-submit").disabled = true;
    try {
      const created = await api("POST", "/rooms/", body);
      lastName.set(ownerName);
      $("create-password").value = "";
      store.save(created.room_id, {
        role: "owner",
        name: ownerName,
        roomName: roomName || null,
        ws_url: created.ws_url,
        owner_token: created.owner_token,
        expires_at: created.expires_at,
        password: password || null,
        destroy: body.preferences.destroy_on_owner_offline,
        fresh: true,
      });
      location.hash = `room=${encodeURIComponent(created.room_id)}`;
    } catch (error) {
      showError($("create-error"), error.status === 422 ? `Please check the form: ${error.message}` : error.message);
    } finally {
      $("create-submit").disabled = false;
    }
  });

  // ---------- join ----------

  let joining = null;

  async function showJoin(roomId) {
    joining = roomId;
    document.title = "Join room · EphemeralChat";
    show("join");
    $("join-title").textContent = "Join room";
    $("join-info").textContent = "Looking up the room…";
    $("join-password-row").hidden = true;
    $("join-submit").disabled = false;
    showError($("join-error"), "");
    const name = $("join-name");
    if (!name.value) name.value = lastName.get();
    try {
      const details = await api("GET", roomPath(roomId));
      if (joining !== roomId) return;
      describeRoom(details);
    } catch (error) {
      if (joining !== roomId) return;
      if (error.status === 401) {
        $("join-info").textContent = "This room is protected by a password.";
        $("join-password-row").hidden = false;
      } else if (error.status === 404) {
        $("join-title").textContent = "Room not found";
        $("join-info").textContent = GONE;
        $("join-submit").disabled = true;
        return;
      } else {
        showError($("join-error"), error.message);
      }
    }
    (name.value && !$("join-password-row").hidden ? $("join-password") : name).focus();
  }

  function describeRoom(details) {
    $("join-title").textContent = details.name ? `Join “${details.name}”` : "Join room";
    const left = duration(Date.parse(details.expires_at) - Date.now());
    $("join-info").textContent =
      `Hosted by ${details.owner_name} · ${details.online_users_count} of ${details.max_users} online · ` +
      `closes in ${left}`;
    $("join-password-row").hidden = !details.has_password;
    if (details.is_full) showError($("join-error"), "The room is full right now. Try again when someone leaves.");
  }

  $("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const roomId = joining;
    const name = $("join-name").value.trim();
    const password = $("join-password").value;
    if (!name) {
      showError($("join-error"), "Please enter your name.");
      $("join-name").focus();
      return;
    }
    $("join-submit").disabled = true;
    try {
      const joined = await api("POST", roomPath(roomId, "/join"), { display_name: name, password: password || null });
      lastName.set(name);
      $("join-password").value = "";
      store.save(roomId, {
        role: "member", name, ws_url: joined.ws_url, expires_at: joined.expires_at, password: password || null,
      });
      enterChat(roomId);
    } catch (error) {
      const messages = {
        401: password ? "Wrong password. Please try again." : "This room needs a password.",
        404: GONE,
        409: "The room is full. Try again when someone leaves.",
      };
      showError($("join-error"), messages[error.status] || error.message);
      if (error.status === 401) {
        $("join-password-row").hidden = false;
        $("join-password").select();
        $("join-password").focus();
      }
      $("join-submit").disabled = error.status === 404;
    }
  });

  // ---------- chat ----------

  class Room {
    constructor(roomId, session) {
      this.roomId = roomId;
      this.session = session;
      this.ws = null;
      this.me = null;
      this.online = new Map();
      this.departed = new Set();
      this.seeded = false;
      this.count = 0;
      this.attempt = 0;
      this.ended = false;
      this.leaving = false;
      this.rejoined = false;
      this.everConnected = false;
      this.skewMs = 0;
      this.expiresAt = Date.parse(session.expires_at);
      this.unread = 0;
      this.lastMessage = null;
      this.timers = new Set();
      this.tick = setInterval(() => this.renderCountdown(), 1000);
    }

    start() {
      const s = this.session;
      $("chat-view").classList.remove("ended");
      $("chat-view").classList.add("offline");
      $("messages").replaceChildren();
      $("online-list").replaceChildren();
      $("room-name").textContent = s.roomName || "Chat room";
      $("room-meta").textContent = s.role === "owner" ? "You are the owner" : `You are ${s.name}`;
      $("share-link").value = shareLink(this.roomId);
      $("close-room").hidden = s.role !== "owner";
      $("message-input").disabled = false;
      $("send").disabled = true;
      this.setCount(0);
      this.renderCountdown();
      show("chat");
      if (s.fresh) {
        this.system("Room created. Share the invite link so others can join.", "info");
        store.save(this.roomId, { ...s, fresh: false });
      }
      this.connect();
      $("message-input").focus();
    }

    later(fn, ms) {
      const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
      this.timers.add(id);
      return id;
    }

    dispose() {
      this.leaving = true;
      clearInterval(this.tick);
      for (const id of this.timers) clearTimeout(id);
      this.timers.clear();
      if (this.ws) this.ws.close(1000, "Left");
    }

    // --- connection ---

    connect() {
      if (this.ended || this.leaving) return;
      this.setStatus(this.everConnected ? "warn" : "info", this.everConnected ? "Reconnecting…" : "Connecting…");
      let ws;
      try {
        ws = new WebSocket(this.session.ws_url);
      } catch {
        this.scheduleReconnect();
        return;
      }
      this.ws = ws;
      ws.onmessage = (event) => { if (ws === this.ws) this.onFrame(event.data); };
      ws.onclose = (event) => { if (ws === this.ws) this.onClose(event); };
    }

    onHello(frame) {
      const reconnected = this.everConnected;
      this.me = frame.connection_id;
      this.everConnected = true;
      this.attempt = 0;
      this.rejoined = false;
      // The countdown follows the server's clock, not a phone's that is a few minutes off.
      if (frame.timestamp) this.skewMs = Date.parse(frame.timestamp) - Date.now();
      this.online.clear();
      this.departed.clear();
      this.seeded = false;
      this.setStatus(null);
      $("chat-view").classList.remove("offline");
      $("send").disabled = false;
      if (reconnected) this.system("Reconnected.", "presence");
      this.seedOnline();
    }

    async seedOnline() {
      const connection = this.me;
      try {
        const details = await api("GET", detailsPath(this.roomId, this.session.password));
        if (connection !== this.me || this.ended) return;
        if (details.name && !this.session.roomName) {
          this.session.roomName = details.name;
          store.save(this.roomId, this.session);
        }
        $("room-name").textContent = details.name || `${details.owner_name}'s room`;
        $("max-users").textContent = String(details.max_users);
        this.expiresAt = Date.parse(details.expires_at);
        // Presence frames that arrived while the request was in flight are newer than the snapshot.
        for (const user of details.online_users) {
          if (!this.departed.has(user.connection_id)) this.online.set(user.connection_id, user.display_name);
        }
        this.seeded = true;
        this.setCount(this.online.size);
        this.renderOnline();
      } catch (error) {
        if (error.status === 404) this.end(GONE);
      }
    }

    onFrame(data) {
      let frame;
      try { frame = JSON.parse(data); } catch { return; }
      if (frame.type === "system") {
        if (frame.message === CONNECTED && frame.connection_id) return this.onHello(frame);
        if (ENDINGS[frame.message]) return this.end(ENDINGS[frame.message]);
        if (frame.message === SHUTTING_DOWN) {
          this.system("The server is restarting. Reconnecting shortly…", "presence");
          return;
        }
        return this.system(frame.message);
      }
      if (frame.type === "message") return this.message(frame);
      if (frame.type === "presence") return this.presence(frame);
      if (frame.type === "error") return this.system(frame.detail || "The server refused that message.", "error");
    }

    onClose(event) {
      this.ws = null;
      this.me = null;
      $("chat-view").classList.add("offline");
      $("send").disabled = true;
      if (this.ended || this.leaving) return;
      const reason = event.reason || "";
      if (event.code === 1008) {
        if (/full/i.test(reason)) {
          this.setStatus("error", "The room is full. Try again when someone leaves.", "Try again", () => this.connect());
          return;
        }
        if (/not found/i.test(reason)) return this.end(GONE);
        if (/token/i.test(reason)) return this.rejoin();
      }
      if (event.code === 1000 && /closed|expired/i.test(reason)) return this.end("This room has ended.");
      this.scheduleReconnect();
    }

    scheduleReconnect() {
      if (this.ended || this.leaving) return;
      const base = Math.min(MAX_BACKOFF_SECONDS, 2 ** this.attempt);
      // Jitter, so a room full of clients does not return in one burst after a restart.
      const seconds = Math.max(1, Math.round(base * (0.75 + Math.random() * 0.5)));
      this.attempt += 1;
      let left = seconds;
      const text = () => `Connection lost. Reconnecting in ${left} s…`;
      this.setStatus("warn", text(), "Retry now", () => this.retry());
      const countdown = () => {
        left -= 1;
        if (this.ws || this.ended || this.leaving) return;
        if (left <= 0) return this.retry();
        $("status-text").textContent = text();
        this.retryTimer = this.later(countdown, 1000);
      };
      this.retryTimer = this.later(countdown, 1000);
    }

    async retry() {
      clearTimeout(this.retryTimer);
      this.timers.delete(this.retryTimer);
      if (this.ws || this.ended || this.leaving) return;
      this.setStatus("warn", "Reconnecting…");
      // Ask over REST first: a room that is gone should say so instead of retrying forever.
      try {
        await api("GET", detailsPath(this.roomId, this.session.password));
      } catch (error) {
        if (error.status === 404) return this.end(GONE);
        if (error.status === 0 || error.status >= 500) return this.scheduleReconnect();
      }
      this.connect();
    }

    async rejoin() {
      if (this.rejoined || this.session.role === "owner") {
        return this.end("Your pass for this room is no longer valid. Join it again from the invite link.", false);
      }
      this.rejoined = true;
      this.setStatus("warn", "Rejoining…");
      try {
        const joined = await api("POST", roomPath(this.roomId, "/join"), {
          display_name: this.session.name, password: this.session.password,
        });
        this.session.ws_url = joined.ws_url;
        this.session.expires_at = joined.expires_at;
        store.save(this.roomId, this.session);
        this.connect();
      } catch (error) {
        if (error.status === 404) return this.end(GONE);
        if (error.status === 409) {
          this.setStatus("error", "The room is full. Try again when someone leaves.", "Try again", () => this.rejoin());
          this.rejoined = false;
          return;
        }
        if (error.status === 401) return this.end("The room password has changed. Join again from the invite link.", false);
        this.rejoined = false;
        this.scheduleReconnect();
      }
    }

    end(reason, ended = true) {
      if (this.ended) return;
      this.ended = true;
      store.drop(this.roomId);
      clearInterval(this.tick);
      for (const id of this.timers) clearTimeout(id);
      this.timers.clear();
      this.system(reason, "ending");
      $("chat-view").classList.add("ended", "offline");
      this.setStatus("ended", reason, "Start a new room", () => { location.hash = ""; });
      $("message-input").disabled = true;
      $("send").disabled = true;
      $("close-room").hidden = true;
      $("countdown").textContent = ended ? "ended" : "--:--";
      $("countdown").className = "pill over";
      this.online.clear();
      this.setCount(0);
      this.renderOnline();
      if (this.ws) this.ws.close(1000, "Room ended");
    }

    // --- actions ---

    send() {
      const input = $("message-input");
      const text = input.value;
      if (!text.trim() || !this.ws || this.ws.readyState !== WebSocket.OPEN || !this.me) return;
      this.ws.send(JSON.stringify({ type: "message", text }));
      input.value = "";
      autosize();
    }

    async close() {
      const button = $("close-room");
      button.disabled = true;
      try {
        await api("POST", roomPath(this.roomId, "/close"), {}, { Authorization: `Bearer ${this.session.owner_token}` });
        // The socket brings the closing notice; end() here covers a socket that is down right now.
        this.later(() => this.end(ENDINGS["Room has been closed by owner"]), 1500);
      } catch (error) {
        if (error.status === 404) return this.end(GONE);
        this.system(error.status === 403 ? "Only the owner can close this room." : error.message, "error");
      } finally {
        button.disabled = false;
      }
    }

    leave() {
      this.leaving = true;
      api("POST", roomPath(this.roomId, "/leave"), { display_name: this.session.name }).catch(() => {});
      store.drop(this.roomId);
      if (this.ws) this.ws.close(1000, "Left");
      location.hash = "";
    }

    // --- rendering ---

    setStatus(kind, text, actionLabel, action) {
      const bar = $("status");
      const button = $("status-action");
      if (!kind) {
        bar.hidden = true;
        return;
      }
      bar.className = `status ${kind}`;
      $("status-text").textContent = text;
      bar.hidden = false;
      button.hidden = !actionLabel;
      if (actionLabel) {
        button.textContent = actionLabel;
        button.onclick = action;
      }
    }

    setCount(count) {
      this.count = count;
      $("online-count").textContent = String(count);
      $("online-count-side").textContent = `(${count})`;
    }

    renderCountdown() {
      if (this.ended) return;
      const left = this.expiresAt - (Date.now() + this.skewMs);
      const pill = $("countdown");
      pill.textContent = left > 0 ? `${duration(left)} left` : "expiring…";
      pill.className = left <= 0 ? "pill over" : left <= 60_000 ? "pill soon" : "pill";
      pill.title = `The room expires at ${clockTime(new Date(this.expiresAt - this.skewMs).toISOString())}`;
    }

    renderOnline() {
      const list = $("online-list");
      const people = [...this.online.entries()].sort((a, b) => {
        if (a[0] === this.me) return -1;
        if (b[0] === this.me) return 1;
        return a[1].localeCompare(b[1]);
      });
      list.replaceChildren(...people.map(([connectionId, name]) => {
        const item = el("li");
        item.dataset.connectionId = connectionId;
        const avatar = el("span", "avatar", initials(name));
        avatar.style.background = nameColor(name);
        avatar.setAttribute("aria-hidden", "true");
        item.append(avatar, el("span", "person", name));
        if (connectionId === this.me) item.append(el("span", "tag", "you"));
        return item;
      }));
    }

    append(node) {
      const wrap = document.querySelector(".messages-wrap");
      const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 80;
      $("messages").append(node);
      if (atBottom || node.classList.contains("mine")) wrap.scrollTop = wrap.scrollHeight;
    }

    system(text, kind = "") {
      this.lastMessage = null;
      this.append(el("li", `sys ${kind}`.trim(), text));
    }

    message(frame) {
      const mine = frame.connection_id === this.me;
      const name = String(frame.display_name || "Anonymous");
      const at = Date.parse(frame.timestamp) || Date.now();
      const follow = this.lastMessage && this.lastMessage.connectionId === frame.connection_id &&
        at - this.lastMessage.at < FOLLOW_WINDOW_MS;
      const item = el("li", `msg${mine ? " mine" : ""}${follow ? " follow" : ""}`);
      item.dataset.connectionId = String(frame.connection_id || "");
      const meta = el("div", "meta");
      const author = el("span", "author", mine ? `${name} (you)` : name);
      if (!mine) author.style.color = nameColor(name);
      const time = el("time", "", clockTime(frame.timestamp));
      if (frame.timestamp) time.dateTime = frame.timestamp;
      meta.append(author, time);
      item.append(meta, el("div", "bubble", String(frame.text ?? "")));
      item.title = new Date(at).toLocaleString();
      this.lastMessage = { connectionId: frame.connection_id, at };
      this.append(item);
      if (document.hidden && !mine) {
        this.unread += 1;
        document.title = `(${this.unread}) ${$("room-name").textContent} · EphemeralChat`;
      }
    }

    presence(frame) {
      const id = frame.connection_id;
      const name = String(frame.display_name || "Anonymous");
      if (frame.event === "user_online") {
        this.departed.delete(id);
        this.online.set(id, name);
        if (id !== this.me) this.system(`${name} joined`, "presence");
      } else if (frame.event === "user_offline") {
        this.departed.add(id);
        this.online.delete(id);
        this.system(`${name} left`, "presence");
      }
      // Before the snapshot arrives, only the server's count is complete.
      this.setCount(this.seeded ? this.online.size : Number(frame.online_count) || this.online.size);
      this.renderOnline();
    }
  }

  let room = null;

  function enterChat(roomId) {
    if (room) room.dispose();
    const session = store.load(roomId);
    if (!session) return showJoin(roomId);
    joining = null;
    room = new Room(roomId, session);
    document.title = `${session.roomName || "Chat room"} · EphemeralChat`;
    room.start();
  }

  // ---------- chat controls (bound once; they act on the current room) ----------

  function autosize() {
    const input = $("message-input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight + 2, 160)}px`;
  }

  $("message-input").addEventListener("input", autosize);
  $("message-input").addEventListener("keydown", (event) => {
    // isComposing: Enter that confirms an IME candidate must not send a half-typed message.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (room) room.send();
    }
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (room) room.send();
    $("message-input").focus();
  });
  confirmButton($("close-room"), "Click again to close", () => room && room.close());
  // An owner whose room dies with them is one click away from ending it for everyone.
  confirmButton($("leave-room"), "Leave and end room", () => room && room.leave(),
    () => Boolean(room && !room.ended && room.session.role === "owner" && room.session.destroy !== false));
  $("copy-link").addEventListener("click", async () => {
    const input = $("share-link");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch {
      // The Clipboard API needs https or localhost; plain http on a LAN falls back to selection.
      input.select();
      document.execCommand("copy");
    }
    $("copy-link").textContent = "Copied";
    setTimeout(() => { $("copy-link").textContent = "Copy"; }, 1500);
  });
  $("people-toggle").addEventListener("click", () => {
    const open = $("people").classList.toggle("open");
    $("people-toggle").setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("people").classList.remove("open");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && room) {
      room.unread = 0;
      document.title = `${$("room-name").textContent} · EphemeralChat`;
    }
  });
  window.addEventListener("online", () => { if (room && !room.ws) room.retry(); });
  window.addEventListener("beforeunload", (event) => {
    // Reloading drops the owner's socket, and with this preference that ends the room.
    if (room && !room.ended && !room.leaving && room.session.role === "owner" && room.session.destroy !== false) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // ---------- routing: "/" creates, "/#room=<id>" (or "/?room=<id>") joins ----------

  function roomFromUrl() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("room");
    const fromQuery = new URLSearchParams(location.search).get("room");
    return fromHash || fromQuery || null;
  }

  function route() {
    const roomId = roomFromUrl();
    if (new URLSearchParams(location.search).has("room")) {
      history.replaceState(null, "", roomId ? `/#room=${encodeURIComponent(roomId)}` : "/");
    }
    if (room && room.roomId === roomId && !room.ended) return;
    if (room) {
      room.dispose();
      room = null;
    }
    if (!roomId) return showHome();
    if (store.load(roomId)) return enterChat(roomId);
    showJoin(roomId);
  }

  $("brand").addEventListener("click", (event) => {
    if (room && !room.ended) return;  // Inside a live room the brand link is just a link away.
    event.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", route);
  route();
})();
