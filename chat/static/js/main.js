// EphemeralChat browser client: plain ES modules, no build step, no network beyond this server.
// Routing: "/" creates a room, "/#room=<id>" (or "/?room=<id>") joins one.

import { bindChatControls } from "./controls.js";
import { $ } from "./dom.js";
import { bindCreateForm, showHome } from "./create.js";
import { bindJoinForm, forgetJoin, showJoin } from "./join.js";
import { bindNotifications } from "./notify.js";
import { readKey } from "./e2e.js";
import { Room } from "./room.js";
import { store } from "./storage.js";

let room = null;

function enterChat(roomId) {
  if (room) room.dispose();
  const session = store.load(roomId);
  if (!session) return showJoin(roomId, keyFromUrl());
  forgetJoin();
  room = new Room(roomId, session);
  document.title = `${session.roomName || "Chat room"} · EphemeralChat`;
  room.start();
}

// An end-to-end room's key, from the fragment only: the part of a link browsers never send.
function keyFromUrl() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  return key && readKey(key) ? key : null;
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
  const session = store.load(roomId);
  const key = keyFromUrl();
  if (session && key && !session.key) store.save(roomId, { ...session, key, keyInLink: true });
  if (session) return enterChat(roomId);
  showJoin(roomId, key);
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
