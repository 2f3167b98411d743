// The messages this tab sent that are not in the transcript yet. Each carries a client_id (a
// random prefix per page and a counter); the server acknowledges it with its offset and posts it
// only once however often it arrives, so after a reconnect every unacknowledged one goes again
// under the same id. A message stays on screen as pending until its ack; it takes its place in
// the conversation when its own echo arrives, so the transcript keeps the room's order.

const PREFIX = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
let sent = 0;

export class Outbox {
  constructor(transcript, name) {
    this.transcript = transcript;
    this.name = name;
    this.waiting = new Map();  // client_id -> { text, node, offset: null until acknowledged }
    this.echoed = new Set();  // Offsets of my messages shown before their ack arrived.
  }

  // A newly typed message, shown as pending at once: the frame to send, now or after a reconnect.
  add(text) {
    sent += 1;
    const clientId = `${PREFIX}-${sent}`;
    this.waiting.set(clientId, { text, node: this.transcript.pending(text, this.name), offset: null });
    return { type: "message", text, client_id: clientId };
  }

  // The frames the server has not acknowledged, oldest first, for a new socket.
  unacknowledged() {
    return [...this.waiting].filter(([, m]) => m.offset === null)
      .map(([clientId, m]) => ({ type: "message", text: m.text, client_id: clientId }));
  }

  // shownUpTo: the newest offset the connection passed on (messages up to it are shown or skipped).
  acknowledged(clientId, offset, shownUpTo) {
    const message = this.waiting.get(clientId);
    if (!message || !Number.isInteger(offset)) return;
    if (this.echoed.delete(offset)) return this.settle(clientId, null);
    // Posted, but its echo fell into a gap of a failed resume: it stays where it is.
    if (offset <= shownUpTo) return this.settle(clientId, message.node);
    message.offset = offset;
    this.transcript.acknowledged(message.node);
  }

  // A message of mine in the transcript (live or replayed): its pending copy goes.
  echo(frame) {
    for (const [clientId, m] of this.waiting) {
      if (m.offset === frame.offset) return this.settle(clientId, null);
    }
    // Its ack is still on the way: a socket posts its messages in the order it sent them.
    for (const [clientId, m] of this.waiting) {
      if (m.offset === null && m.text === frame.text) return this.settle(clientId, null);
    }
    if (Number.isInteger(frame.offset)) this.echoed.add(frame.offset);
  }

  // After a failed resume no echo is coming for what was already acknowledged.
  lostEchoes() {
    for (const [clientId, m] of this.waiting) if (m.offset !== null) this.settle(clientId, m.node);
    this.echoed.clear();
  }

  // An error frame naming a client_id: that message is not sent again. True when it was mine.
  refused(clientId, detail) {
    const message = this.waiting.get(clientId);
    if (!message) return false;
    this.waiting.delete(clientId);
    this.transcript.failed(message.node, detail);
    return true;
  }

  // The room ended: nothing pending will go out any more.
  abandon(detail) {
    for (const clientId of [...this.waiting.keys()]) {
      if (this.waiting.get(clientId).offset === null) this.refused(clientId, detail);
      else this.settle(clientId, this.waiting.get(clientId).node);
    }
  }

  // keep: the node to leave in the conversation as sent; null: remove the pending copy.
  settle(clientId, keep) {
    const message = this.waiting.get(clientId);
    this.waiting.delete(clientId);
    if (keep) this.transcript.confirmed(keep);
    else this.transcript.remove(message.node);
  }
}
