// The home view: the form that creates a room and takes its owner in.

import { api } from "./api.js";
import { $, show, showError } from "./dom.js";
import { encode, newKey, newSalt, passwordKeys } from "./e2e.js";
import { lastName, store } from "./storage.js";

export function showHome() {
  document.title = "EphemeralChat";
  show("home");
  const name = $("create-owner-name");
  if (!name.value) name.value = lastName.get();
  showError($("create-error"), "");
  $("create-submit").disabled = false;
  (name.value ? $("create-room-name") : name).focus();
}

async function create(event) {
  event.preventDefault();
  const ownerName = $("create-owner-name").value.trim();
  const roomName = $("create-room-name").value.trim();
  const password = $("create-password").value;
  const maxUsers = Number.parseInt($("create-max-users").value, 10);
  if (!ownerName) {
    showError($("create-error"), "Please enter your name.");
    $("create-owner-name").focus();
    return;
  }
  if (!Number.isInteger(maxUsers) || maxUsers < 1 || maxUsers > 1000) {
    showError($("create-error"), "Max people must be a whole number between 1 and 1000.");
    $("create-max-users").focus();
    return;
  }
  const body = {
    owner_name: ownerName,
    expiry_seconds: Number.parseInt($("create-expiry").value, 10),
    max_users: maxUsers,
    preferences: { destroy_on_owner_offline: $("create-destroy").checked },
  };
  if (roomName) body.name = roomName;
  if (password) body.password = password;
  $("create-submit").disabled = true;
  try {
    // An end-to-end room's key: random and carried in the invite link, or from the password,
    // of which the server then gets only a derived secret.
    let key = null;
    let sent = password || null;
    if ($("create-e2e").checked) {
      body.e2e = true;
      if (password) {
        body.e2e_salt = newSalt();
        const derived = await passwordKeys(password, body.e2e_salt);
        key = derived.key;
        sent = body.password = derived.join;
      } else {
        key = newKey();
      }
    }
    const created = await api("POST", "/rooms/", body);
    lastName.set(ownerName);
    $("create-password").value = "";
    store.save(created.room_id, {
      role: "owner",
      name: ownerName,
      roomName: roomName || null,
      ws_url: created.ws_url,
      owner_token: created.owner_token,
      expires_at: created.expires_at,
      password: sent,
      destroy: body.preferences.destroy_on_owner_offline,
      fresh: true,
      key: key && encode(key),
      keyInLink: Boolean(key) && !password,
    });
    // Routing takes the owner into the room, the same way a share link does.
    const fragment = key && !password ? `&key=${encode(key)}` : "";
    location.hash = `room=${encodeURIComponent(created.room_id)}${fragment}`;
  } catch (error) {
    showError($("create-error"), error.status === 422 ? `Please check the form: ${error.message}` : error.message);
  } finally {
    $("create-submit").disabled = false;
  }
}

export function bindCreateForm() {
  $("create-form").addEventListener("submit", create);
}
