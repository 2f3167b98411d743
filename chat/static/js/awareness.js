// Who else is typing, and who has seen the newest message: the line above the composer and
// the "Seen by" line under the newest message. Fed by typing and read frames, presence and
// the room's details; it sends nothing itself (see Room.composing / Room.markRead).

import { $ } from "./dom.js";

// Hidden this long after someone's last typing frame (the server relays one per 2 s at most).
export const TYPING_SHOWN_MS = 5000;

export class Awareness {
  constructor() {
    this.typing = new Map();  // connection id -> { name, timer }
    this.read = new Map();  // connection id -> { name, offset }
    this.newest = 0;  // The newest message's offset on screen.
    this.author = null;  // Its sender's connection id: whoever wrote it has seen it.
    this.me = null;
  }

  clear() {
    for (const { timer } of this.typing.values()) clearTimeout(timer);
    this.typing.clear();
    this.read.clear();
    this.newest = 0;
    this.author = null;
    this.render();
  }

  // Someone is composing: shown until TYPING_SHOWN_MS after their last frame, or their message.
  typed(connectionId, name) {
    if (connectionId === this.me) return;
    const known = this.typing.get(connectionId);
    if (known) clearTimeout(known.timer);
    const timer = setTimeout(() => this.stopped(connectionId), TYPING_SHOWN_MS);
    this.typing.set(connectionId, { name, timer });
    this.renderTyping();
  }

  stopped(connectionId) {
    const known = this.typing.get(connectionId);
    if (!known) return;
    clearTimeout(known.timer);
    this.typing.delete(connectionId);
    this.renderTyping();
  }

  // A message on screen: its sender no longer types it, and it is the newest.
  message(connectionId, offset) {
    this.stopped(connectionId);
    if (Number.isInteger(offset) && offset > this.newest) {
      this.newest = offset;
      this.author = connectionId;
      this.renderSeen();
    }
  }

  // Someone has seen up to offset; offsets only go forward.
  readUpTo(connectionId, name, offset) {
    if (!Number.isInteger(offset)) return;
    const known = this.read.get(connectionId);
    if (known && known.offset >= offset) return;
    this.read.set(connectionId, { name, offset });
    this.renderSeen();
  }

  // From the room's details: who had read what before this page was told.
  seed(users, me) {
    this.me = me;
    for (const user of users) {
      if (Number.isInteger(user.read_offset)) this.readUpTo(user.connection_id, user.display_name, user.read_offset);
    }
    this.render();
  }

  left(connectionId) {
    this.stopped(connectionId);
    if (this.read.delete(connectionId)) this.renderSeen();
  }

  render() {
    this.renderTyping();
    this.renderSeen();
  }

  renderTyping() {
    const names = [...this.typing.values()].map((t) => t.name);
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    $("typing").textContent = text;
  }

  renderSeen() {
    const node = $("seen-by");
    const names = this.newest > 0
      ? [...this.read.entries()].filter(([id, r]) => id !== this.me && id !== this.author && r.offset >= this.newest).map(([, r]) => r.name)
      : [];
    node.textContent = names.length ? `Seen by ${names.sort((a, b) => a.localeCompare(b)).join(", ")}` : "";
    node.hidden = names.length === 0;
    const wrap = document.querySelector(".messages-wrap");
    if (!node.hidden && wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 120) wrap.scrollTop = wrap.scrollHeight;
  }
}
