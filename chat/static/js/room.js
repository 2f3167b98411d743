// The room on screen: ties its connection to the transcript, the people list, the countdown
// and the status bar, and carries out the member's actions (send, close, leave).

const RECONNECTED_NOTE_MS = 4000;
// A typing frame goes out at most this often while the member composes (the server's pace).
const TYPING_EVERY_MS = 2000;
// Read frames go out at most this often (the newest offset when the wait is over).
const READ_EVERY_MS = 1000;

import { api, detailsPath, roomPath } from "./api.js";
import { Awareness } from "./awareness.js";
import { Connection } from "./connection.js";
import { Countdown } from "./countdown.js";
import { $, show } from "./dom.js";
import { CANNOT_DECRYPT, cipherKey, decode, fingerprint, open, seal } from "./e2e.js";
import { shareLink } from "./format.js";
import { notifyMessage } from "./notify.js";
import { Outbox } from "./outbox.js";
import { People } from "./people.js";
import { CLOSED_BY_OWNER, CLOSED_BY_YOU, ENDINGS, GONE, SHUTTING_DOWN } from "./protocol.js";
import { flashStatus, setStatus, setStatusText } from "./status.js";
import { store } from "./storage.js";
import { Transcript } from "./transcript.js";

export class Room {
  constructor(roomId, session) {
    this.roomId = roomId;
    this.session = session;
    this.me = null;  // This tab's connection id while its socket is open.
    this.mine = new Set();  // Every connection id this tab had: its messages stay its own.
    this.ended = false;
    this.leaving = false;
    this.unread = 0;
    // Replayed history is news after a reconnect (missed meanwhile), not on entering the room.
    this.replaysAreNew = false;
    this.timers = new Set();
    this.transcript = new Transcript();
    this.outbox = new Outbox(this.transcript, session.name);
    this.people = new People();
    this.awareness = new Awareness();
    this.typingSentAt = 0;
    this.readSent = 0;  // The newest offset told to the room as read.
    this.readSentAt = 0;
    this.readTimer = null;
    this.countdown = new Countdown(Date.parse(session.expires_at));
    // End-to-end encrypted (the hello says so): the key from the link or the password, if any.
    this.e2e = false;
    this.myName = session.name;  // As the server stamps my messages (the hello says).
    this.cipher = session.key ? cipherKey(decode(session.key)) : Promise.resolve(null);
    // Decrypting takes a moment: frames wait their turn, so the room's order holds on screen.
    this.queue = Promise.resolve();
    this.sealing = Promise.resolve();
    this.connection = new Connection(roomId, session, {
      hello: (frame, recovered) => this.inTurn(() => this.onHello(frame, recovered)),
      frame: (frame) => this.inTurn(async () => this.onFrame(await this.decrypted(frame))),
      dropped: () => this.onDropped(),
      status: setStatus,
      statusText: setStatusText,
      end: (reason, ended) => this.end(reason, ended),
    });
  }

  start() {
    const s = this.session;
    $("chat-view").classList.remove("ended");
    $("chat-view").classList.add("offline");
    this.transcript.clear();
    this.people.clear();
    this.awareness.clear();
    $("room-name").textContent = s.roomName || "Chat room";
    this.retitle();
    $("room-meta").textContent = s.role === "owner" ? "You are the owner" : `You are ${s.name}`;
    $("share-link").value = shareLink(this.roomId, s.keyInLink ? s.key : null);
    $("room-e2e").hidden = true;
    $("close-room").hidden = s.role !== "owner";
    this.people.allowRemoval(this.roomId, s.role === "owner" ? s.owner_token : null,
      (text) => this.transcript.system(text, "presence"));
    $("message-input").disabled = false;
    $("send").disabled = false;  // Typed while offline, a message waits and goes on reconnecting.
    this.countdown.render();
    show("chat");
    if (s.fresh) {
      this.transcript.system(
        s.keyInLink
          ? "Room created, end-to-end encrypted. The invite link carries its key: share it only with people who may read."
          : "Room created. Share the invite link so others can join.",
        "info");
      store.save(this.roomId, { ...s, fresh: false });
    }
    this.connection.connect();
    $("message-input").focus();
  }

  inTurn(step) {
    this.queue = this.queue.then(step).catch((error) => console.error(error));
  }

  // A message envelope as its text, or as a line saying it cannot be read (wrong or no key).
  async decrypted(frame) {
    if (frame.type !== "message" || typeof frame.ciphertext !== "string") return frame;
    const text = await open(await this.cipher, frame);
    return { ...frame, text: text ?? CANNOT_DECRYPT, undecryptable: text === null };
  }

  later(fn, ms) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  dispose() {
    this.leaving = true;
    this.countdown.stop();
    this.clearTimers();
    this.connection.stop("Left");
  }

  clearTimers() {
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
  }

  // --- what the connection reports ---

  // recovered: null on entering; after a reconnect, whether every missed message follows.
  onHello(frame, recovered) {
    this.me = frame.connection_id;
    if (typeof frame.display_name === "string") this.myName = frame.display_name;
    if (frame.e2e === true && !this.e2e) {
      this.e2e = true;
      this.describeE2e();
    }
    this.mine.add(this.me);
    this.awareness.me = this.me;
    this.readSent = 0;  // A new socket: the server keeps the offset, but tell it again.
    this.replaysAreNew = recovered !== null;
    if (frame.timestamp) this.countdown.skewMs = Date.parse(frame.timestamp) - Date.now();
    this.people.reset();
    $("chat-view").classList.remove("offline");
    if (recovered === null) {
      setStatus(null);
    } else if (recovered) {
      flashStatus("info", "Reconnected", RECONNECTED_NOTE_MS);
    } else {
      this.outbox.lostEchoes();
      this.transcript.system("Some messages may be missing here.", "presence");
      setStatus("warn", "Reconnected — some messages may be missing", "OK", () => setStatus(null));
    }
    // The server posts a client_id once: whatever the last socket took but never acknowledged
    // goes again, and at most one copy reaches the room.
    for (const message of this.outbox.unacknowledged()) this.post(message);
    this.seedOnline();
  }

  async describeE2e() {
    const note = $("room-e2e");
    note.hidden = false;
    note.textContent = this.session.key
      ? `End-to-end encrypted · key ${await fingerprint(decode(this.session.key))}`
      : "End-to-end encrypted · you have no key: you can neither read nor send here";
    note.title = this.session.key
      ? "Compare this fingerprint with the others': the same key shows the same fingerprint."
      : "Open the full invite link, with its key, to read this room.";
    note.classList.toggle("keyless", !this.session.key);
  }

  onDropped() {
    this.me = null;
    $("chat-view").classList.add("offline");
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
      this.retitle();
      $("max-users").textContent = String(details.max_users);
      this.countdown.expiresAt = Date.parse(details.expires_at);
      this.people.seed(details.online_users, this.me);
      this.awareness.seed(details.online_users, this.me);
    } catch (error) {
      if (error.status === 404) this.end(GONE);
    }
  }

  onFrame(frame) {
    if (frame.type === "system") {
      if (ENDINGS[frame.message]) return this.end(this.ending(frame.message));
      if (frame.message === SHUTTING_DOWN) {
        this.transcript.system("The server is restarting. Reconnecting shortly…", "presence");
        return;
      }
      return this.transcript.system(frame.message);
    }
    if (frame.type === "message") return this.message(frame);
    if (frame.type === "presence") return this.presence(frame);
    if (frame.type === "typing") return this.awareness.typed(frame.connection_id, String(frame.display_name || "Anonymous"));
    if (frame.type === "read") {
      return this.awareness.readUpTo(frame.connection_id, String(frame.display_name || "Anonymous"), frame.offset);
    }
    if (frame.type === "ack") return this.outbox.acknowledged(frame.client_id, frame.offset, this.connection.offset);
    if (frame.type === "error") {
      const detail = frame.detail || "The server refused that message.";
      if (!this.outbox.refused(frame.client_id, detail)) this.transcript.system(detail, "error");
    }
  }

  message(frame) {
    const mine = this.mine.has(frame.connection_id);
    if (mine) this.outbox.echo(frame);
    this.transcript.message(frame, mine);
    this.awareness.message(frame.connection_id, frame.offset);
    if (document.hidden && !mine && (!frame.replayed || this.replaysAreNew)) {
      this.unread += 1;
      this.retitle();
      const text = frame.undecryptable ? "(encrypted message)" : String(frame.text || "");
      notifyMessage(String(frame.display_name || "Anonymous"), text, $("room-name").textContent, this.roomId);
    }
    this.markRead();
  }

  // The tab's title: the room, and while the tab is hidden how many messages came meanwhile.
  retitle() {
    const unread = this.unread > 0 ? `(${this.unread}) ` : "";
    document.title = `${unread}${$("room-name").textContent} · EphemeralChat`;
  }

  // The tab is in sight again: what came meanwhile is read now.
  visible() {
    this.unread = 0;
    this.retitle();
    this.markRead();
  }

  // The room's words for how it ended, told from this member's side.
  ending(message) {
    return message === CLOSED_BY_OWNER && this.session.role === "owner" ? CLOSED_BY_YOU : ENDINGS[message];
  }

  presence(frame) {
    const id = frame.connection_id;
    const name = String(frame.display_name || "Anonymous");
    if (frame.event === "user_online") {
      this.people.arrived(id, name, frame.is_owner === true);
      if (id !== this.me) this.transcript.system(`${name} joined`, "presence");
    } else if (frame.event === "user_offline") {
      this.people.left(id);
      this.awareness.left(id);
      this.transcript.system(`${name} left`, "presence");
    }
    this.people.update(Number(frame.online_count), this.me);
  }

  // ended: the room is over (false: only this tab's way into it is).
  end(reason, ended = true) {
    if (this.ended) return;
    this.ended = true;
    store.drop(this.roomId);
    this.clearTimers();
    this.outbox.abandon("the room has ended");
    this.transcript.system(reason, "ending");
    $("chat-view").classList.add("ended", "offline");
    setStatus("ended", reason, "Start a new room", () => { location.hash = ""; });
    $("message-input").disabled = true;
    $("send").disabled = true;
    $("close-room").hidden = true;
    this.countdown.end(ended ? "ended" : "--:--");
    this.people.clear();
    this.awareness.clear();
    this.connection.stop("Room ended");
  }

  // --- actions ---

  // The member is writing: the others see "… is typing", at most one frame per TYPING_EVERY_MS.
  composing(text) {
    if (!text.trim() || !this.me || this.ended) return;
    const now = Date.now();
    if (now - this.typingSentAt < TYPING_EVERY_MS) return;
    if (this.connection.send({ type: "typing" })) this.typingSentAt = now;
  }

  // Tells the room the member has seen the newest message: only while the page is visible,
  // at most once per READ_EVERY_MS (then the newest), and only what is new.
  markRead() {
    if (document.hidden || !this.me || this.ended || this.readTimer !== null) return;
    const wait = READ_EVERY_MS - (Date.now() - this.readSentAt);
    if (wait > 0) {
      this.readTimer = this.later(() => { this.readTimer = null; this.markRead(); }, wait);
      return;
    }
    const offset = this.connection.offset;
    if (offset <= this.readSent) return;
    if (this.connection.send({ type: "read", offset })) {
      this.readSent = offset;
      this.readSentAt = Date.now();
    }
  }

  // True when the text was taken: sent now, or as soon as the socket is back.
  send(text) {
    if (!text.trim() || this.ended) return false;
    if (this.e2e && !this.session.key) {
      this.transcript.system("Not sent: this room is end-to-end encrypted and you have no key.", "error");
      return false;
    }
    const message = this.outbox.add(text);
    if (this.me) this.post(message);
    return true;
  }

  // A message to the socket: in an end-to-end room sealed for this connection first, in order.
  post(message) {
    if (!this.e2e) return this.connection.send(message);
    const me = this.me;
    const name = this.myName;
    this.sealing = this.sealing.then(async () => {
      const cipher = await this.cipher;
      if (!cipher) return this.outbox.refused(message.client_id, "this room is end-to-end encrypted and you have no key");
      const envelope = await seal(cipher, this.roomId, me, name, message.text);
      // A socket replaced meanwhile sends it from its own hello, sealed for itself.
      if (this.me === me) this.connection.send({ type: "message", client_id: message.client_id, ...envelope });
    }).catch((error) => console.error(error));
  }

  async close() {
    const button = $("close-room");
    button.disabled = true;
    try {
      await api("POST", roomPath(this.roomId, "/close"), {}, { Authorization: `Bearer ${this.session.owner_token}` });
      // The socket brings the closing notice; end() here covers a socket that is down right now.
      this.later(() => this.end(CLOSED_BY_YOU), 1500);
    } catch (error) {
      if (error.status === 404) return this.end(GONE);
      this.transcript.system(error.status === 403 ? "Only the owner can close this room." : error.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  leave() {
    this.leaving = true;
    api("POST", roomPath(this.roomId, "/leave"), { display_name: this.session.name }).catch(() => {});
    store.drop(this.roomId);
    this.connection.stop("Left");
    location.hash = "";
  }
}
