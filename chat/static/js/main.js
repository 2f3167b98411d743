// EphemeralChat browser client: plain ES modules, no build step, no network beyond this server.
// Routing: "/" creates a room, "/#room=<id>" (or "/?room=<id>") joins one.

import { bindChatControls } from "./controls.js";
import { $ } from "./dom.js";
import { bindCreateForm, showHome } from "./create.js";
import { bindJoinForm, forgetJoin, showJoin } from "./join.js";
import { bindNotifications } from "./notify.js";
import { Room } from "./room.js";
import { store } from "./storage.js";

let room = null;

function enterChat(roomId) {
  if (room) room.dispose();
  const session = store.load(roomId);
  if (!session) return showJoin(roomId);
  forgetJoin();
  room = new Room(roomId, session);
  document.title = `${session.roomName || "Chat room"} · EphemeralChat`;
  room.start();
}

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

bindCreateForm();
bindJoinForm(enterChat);
bindChatControls(() => room);
bindNotifications();
$("brand").addEventListener("click", (event) => {
  if (room && !room.ended) return;  // Inside a live room the brand link is just a link away.
  event.preventDefault();
  location.hash = "";
});
window.addEventListener("hashchange", route);
route();
