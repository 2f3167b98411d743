// Who is online: the side panel's list and the counters in the header and the panel.

import { $, el } from "./dom.js";
import { initials, nameColor } from "./format.js";

export class People {
  constructor() {
    this.online = new Map();  // connection id -> display name
    this.departed = new Set();
    this.seeded = false;
    this.count = 0;
  }

  // A new socket: the list is rebuilt from presence frames and the next snapshot.
  reset() {
    this.online.clear();
    this.departed.clear();
    this.seeded = false;
  }

  arrived(connectionId, name) {
    this.departed.delete(connectionId);
    this.online.set(connectionId, name);
  }

  left(connectionId) {
    this.departed.add(connectionId);
    this.online.delete(connectionId);
  }

  // The room's details: presence frames that arrived while the request was in flight are
  // newer than this snapshot, so someone who left meanwhile stays gone.
  seed(users, me) {
    for (const user of users) {
      if (!this.departed.has(user.connection_id)) this.online.set(user.connection_id, user.display_name);
    }
    this.seeded = true;
    this.setCount(this.online.size);
    this.render(me);
  }

  // After a presence frame: before the snapshot arrives, only the server's count is complete.
  update(serverCount, me) {
    this.setCount(this.seeded ? this.online.size : serverCount || this.online.size);
    this.render(me);
  }

  clear() {
    this.online.clear();
    this.setCount(0);
    this.render(null);
  }

  setCount(count) {
    this.count = count;
    $("online-count").textContent = String(count);
    $("online-count-side").textContent = `(${count})`;
  }

  // Me first, then everyone else by name.
  render(me) {
    const people = [...this.online.entries()].sort((a, b) => {
      if (a[0] === me) return -1;
      if (b[0] === me) return 1;
      return a[1].localeCompare(b[1]);
    });
    $("online-list").replaceChildren(...people.map(([connectionId, name]) => {
      const item = el("li");
      item.dataset.connectionId = connectionId;
      const avatar = el("span", "avatar", initials(name));
      avatar.style.background = nameColor(name);
      avatar.setAttribute("aria-hidden", "true");
      item.append(avatar, el("span", "person", name));
      if (connectionId === me) item.append(el("span", "tag", "you"));
      return item;
    }));
  }
}
