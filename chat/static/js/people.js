// Who is online: the side panel's list and the counters in the header and the panel; for the
// room's owner, a remove button by each other member (the owner's hand).

import { api, roomPath } from "./api.js";
import { $, confirmButton, el } from "./dom.js";
import { initials, nameColor } from "./format.js";

export class People {
  constructor() {
    this.online = new Map();  // connection id -> display name
    this.owners = new Set();  // connection ids of the owner's sockets: never removable
    this.departed = new Set();
    this.hand = null;  // The owner's: { roomId, token, report(text) }; null for members.
    this.me = null;
    this.seeded = false;
    this.count = 0;
  }

  // A new socket: the list is rebuilt from presence frames and the next snapshot.
  reset() {
    this.online.clear();
    this.owners.clear();
    this.departed.clear();
    this.seeded = false;
  }

  // The owner may remove members: ``report`` tells the user when a removal fails.
  allowRemoval(roomId, token, report) {
    this.hand = token ? { roomId, token, report } : null;
  }

  arrived(connectionId, name, isOwner = false) {
    this.departed.delete(connectionId);
    this.online.set(connectionId, name);
    if (isOwner) this.owners.add(connectionId);
  }

  left(connectionId) {
    this.departed.add(connectionId);
    this.online.delete(connectionId);
    this.owners.delete(connectionId);
  }

  // The room's details: presence frames that arrived while the request was in flight are
  // newer than this snapshot, so someone who left meanwhile stays gone.
  seed(users, me) {
    for (const user of users) {
      if (!this.departed.has(user.connection_id)) this.arrived(user.connection_id, user.display_name, user.is_owner);
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
    this.owners.clear();
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
    this.me = me;
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
      else if (this.owners.has(connectionId)) item.append(el("span", "tag", "owner"));
      else if (this.hand) item.append(this.removeButton(connectionId, name));
      return item;
    }));
  }

  removeButton(connectionId, name) {
    const button = el("button", "remove-member", "Remove");
    button.type = "button";
    button.title = `Remove ${name} from the room`;
    button.setAttribute("aria-label", `Remove ${name}`);
    // Two clicks, as closing the room takes: a stray one removes nobody.
    confirmButton(button, "Click again to remove", async () => {
      const hand = this.hand;
      if (!hand) return;
      button.disabled = true;
      try {
        const path = roomPath(hand.roomId, `/members/${encodeURIComponent(connectionId)}/remove`);
        await api("POST", path, {}, { Authorization: `Bearer ${hand.token}` });
        // The room's system line and the member's departure follow over the socket.
      } catch (error) {
        button.disabled = false;
        hand.report(`Could not remove ${name}: ${error.message}`);
      }
    });
    return button;
  }
}
