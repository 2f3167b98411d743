// The join view: what a share link opens. Looks the room up, asks for a name (and password).

import { api, roomPath } from "./api.js";
import { $, show, showError } from "./dom.js";
import { encode, passwordKeys } from "./e2e.js";
import { duration } from "./format.js";
import { GONE } from "./protocol.js";
import { lastName, store } from "./storage.js";

// The room the join view is showing; a lookup answering for another room is stale.
let joining = null;
// Its end-to-end key from the link, and the salt of a key that comes from its password.
let linkKey = null;
let e2eSalt = null;

export function forgetJoin() {
  joining = null;
}

export async function showJoin(roomId, key = null) {
  joining = roomId;
  linkKey = key;
  e2eSalt = null;
  document.title = "Join room · EphemeralChat";
  show("join");
  $("join-title").textContent = "Join room";
  $("join-info").textContent = "Looking up the room…";
  $("join-form").hidden = false;
  $("join-home").textContent = "Start a new room instead";
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
      e2eSalt = (error.data && error.data.e2e_salt) || null;
      $("join-info").textContent = e2eSalt
        ? "This room is protected by a password and end-to-end encrypted: the password is also its key."
        : "This room is protected by a password.";
      $("join-password-row").hidden = false;
    } else if (error.status === 404) {
      return roomGone();
    } else {
      showError($("join-error"), error.message);
    }
  }
  (name.value && !$("join-password-row").hidden ? $("join-password") : name).focus();
}

// A link to a room that is not there: the message and a way on, no form that cannot work.
function roomGone() {
  $("join-title").textContent = "Room not found";
  $("join-info").textContent = GONE;
  $("join-form").hidden = true;
  $("join-home").textContent = "Start a new room";
  $("join-home").focus();
}

function describeRoom(details) {
  $("join-title").textContent = details.name ? `Join “${details.name}”` : "Join room";
  const left = duration(Date.parse(details.expires_at) - Date.now());
  $("join-info").textContent =
    `Hosted by ${details.owner_name} · ${details.online_users_count} of ${details.max_users} online · ` +
    `closes in ${left}`;
  $("join-password-row").hidden = !details.has_password;
  if (details.e2e) {
    $("join-info").textContent += linkKey
      ? " · end-to-end encrypted"
      : " · end-to-end encrypted, and this link has no key: you will not be able to read or send messages";
  }
  if (details.is_full) showError($("join-error"), "The room is full right now. Try again when someone leaves.");
}

// enter(roomId): takes the new member into the room once the server has given them a pass.
export function bindJoinForm(enter) {
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
      // A key from the password: the server gets only the secret derived beside it.
      let key = linkKey;
      let sent = password || null;
      if (e2eSalt && password) {
        const derived = await passwordKeys(password, e2eSalt);
        key = encode(derived.key);
        sent = derived.join;
      }
      const joined = await api("POST", roomPath(roomId, "/join"), { display_name: name, password: sent });
      lastName.set(name);
      $("join-password").value = "";
      store.save(roomId, {
        role: "member", name, ws_url: joined.ws_url, expires_at: joined.expires_at, password: sent,
        key, keyInLink: Boolean(linkKey),
      });
      enter(roomId);
    } catch (error) {
      if (error.status === 404) return roomGone();
      const messages = {
        401: password ? "Wrong password. Please try again." : "This room needs a password.",
        // Full, or a name already taken: the server says which.
        409: /full/i.test(error.message) ? "The room is full. Try again when someone leaves." : error.message,
      };
      showError($("join-error"), messages[error.status] || error.message);
      if (error.status === 401) {
        $("join-password-row").hidden = false;
        $("join-password").select();
        $("join-password").focus();
      }
      $("join-submit").disabled = false;
    }
  });
}
