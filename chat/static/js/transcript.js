// The room's messages and notes, in the order they arrived.

import { $, el } from "./dom.js";
import { clockTime, nameColor } from "./format.js";

// A message from the same person within this window joins the previous one without a header.
const FOLLOW_WINDOW_MS = 3 * 60 * 1000;

export class Transcript {
  constructor() {
    this.lastMessage = null;
  }

  clear() {
    this.lastMessage = null;
    $("messages").replaceChildren();
  }

  // Keeps the view at the newest line unless the reader scrolled up to read older ones.
  append(node) {
    const wrap = document.querySelector(".messages-wrap");
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 80;
    $("messages").append(node);
    if (atBottom || node.classList.contains("mine")) wrap.scrollTop = wrap.scrollHeight;
  }

  // kind: "", "info", "presence", "error" or "ending".
  system(text, kind = "") {
    this.lastMessage = null;
    this.append(el("li", `sys ${kind}`.trim(), text));
  }

  // Shows a message frame; true when it is my own.
  message(frame, me) {
    const mine = frame.connection_id === me;
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
    return mine;
  }
}
