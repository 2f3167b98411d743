// The room's messages and notes in the room's order, and below them my messages on their way.

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

  // Keeps the view at the newest line unless the reader scrolled up to read older ones. Messages
  // on their way stay last: the conversation goes on above them until each finds its place.
  append(node) {
    const wrap = document.querySelector(".messages-wrap");
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 80;
    const list = $("messages");
    const onTheirWay = node.classList.contains("unconfirmed") ? null : list.querySelector(":scope > .unconfirmed");
    list.insertBefore(node, onTheirWay);
    if (atBottom || node.classList.contains("mine")) wrap.scrollTop = wrap.scrollHeight;
  }

  // kind: "", "info", "presence", "error" or "ending".
  system(text, kind = "") {
    this.lastMessage = null;
    this.append(el("li", `sys ${kind}`.trim(), text));
  }

  // A message I typed, dimmed until the server acknowledges it.
  pending(text, name) {
    const item = el("li", "msg mine unconfirmed pending");
    const meta = el("div", "meta");
    meta.append(el("span", "author", `${name || "Anonymous"} (you)`), el("span", "state", "Sending…"));
    item.append(meta, el("div", "bubble", text));
    this.append(item);
    return item;
  }

  // Stored in the room: its echo will take its place.
  acknowledged(node) {
    node.classList.remove("pending");
    node.querySelector(".state").textContent = "Sent";
  }

  // Sent, with no echo to come: it joins the conversation as it is.
  confirmed(node) {
    node.classList.remove("pending", "unconfirmed");
    node.querySelector(".state").textContent = "Sent";
    node.remove();
    this.lastMessage = null;
    this.append(node);
  }

  failed(node, detail) {
    node.classList.remove("pending", "unconfirmed");
    node.classList.add("failed");
    node.querySelector(".state").textContent = `Not sent: ${detail}`;
    node.remove();
    this.lastMessage = null;
    this.append(node);
  }

  remove(node) {
    node.remove();
  }

  // Shows a message frame.
  message(frame, mine) {
    const name = String(frame.display_name || "Anonymous");
    const at = Date.parse(frame.timestamp) || Date.now();
    const follow = this.lastMessage && this.lastMessage.connectionId === frame.connection_id &&
      at - this.lastMessage.at < FOLLOW_WINDOW_MS;
    const item = el("li", `msg${mine ? " mine" : ""}${follow ? " follow" : ""}${frame.replayed ? " earlier" : ""}`);
    item.dataset.connectionId = String(frame.connection_id || "");
    const meta = el("div", "meta");
    const author = el("span", "author", mine ? `${name} (you)` : name);
    if (!mine) author.style.color = nameColor(name);
    const time = el("time", "", clockTime(frame.timestamp));
    if (frame.timestamp) time.dateTime = frame.timestamp;
    meta.append(author, time);
    // An envelope this page cannot open says so, never shows garbage.
    item.append(meta, el("div", frame.undecryptable ? "bubble undecryptable" : "bubble", String(frame.text ?? "")));
    item.title = new Date(at).toLocaleString();
    this.lastMessage = { connectionId: frame.connection_id, at };
    this.append(item);
  }
}
